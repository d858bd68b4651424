#include "model/config.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/check.h"

namespace olmo {

using json = nlohmann::json;

const char* layer_type_name(LayerType t) {
    switch (t) {
        case LayerType::full_attention:
            return "full_attention";
        case LayerType::sliding_attention:
            return "sliding_attention";
        case LayerType::linear_attention:
            return "linear_attention";
    }
    return "?";
}

std::vector<float> RopeConfig::inv_freq(int64_t head_dim) const {
    // As HF computes it, in f32: inv = 1 / θ^(2i/d); YaRN blends interpolated and extrapolated
    // frequencies with a linear ramp over the correction range (spec §10.6).
    const int64_t half = head_dim / 2;
    std::vector<float> inv(half);
    for (int64_t i = 0; i < half; ++i) {
        const float expo = float(2 * i) / float(head_dim);
        const float pos_freq = std::pow(float(rope_theta), expo);
        inv[i] = 1.0f / pos_freq;
    }
    if (rope_type != "yarn") return inv;
    const double d = double(head_dim);
    auto corr = [&](double rotations) {
        return d * std::log(original_max_position_embeddings / (rotations * 2 * M_PI)) /
               (2 * std::log(rope_theta));
    };
    double lo = corr(beta_fast), hi = corr(beta_slow);
    if (truncate) {
        lo = std::floor(lo);
        hi = std::ceil(hi);
    }
    lo = std::max(lo, 0.0);
    hi = std::min(hi, d - 1);
    float flo = float(lo), fhi = float(hi);
    if (flo == fhi) fhi += 0.001f;
    for (int64_t i = 0; i < half; ++i) {
        const float ramp = std::clamp((float(i) - flo) / (fhi - flo), 0.0f, 1.0f);
        const float extrap = 1.0f - ramp;
        const float pos_freq = 1.0f / inv[i];
        const float interp = 1.0f / (float(factor) * pos_freq);
        inv[i] = interp * (1.0f - extrap) + inv[i] * extrap;
    }
    return inv;
}

namespace {

struct Reader {
    const json& j;
    std::string source;

    [[noreturn]] void bad(const std::string& key, const std::string& why) const {
        fail("[config] ", source, ": \"", key, "\" ", why);
    }
    bool has(const std::string& key) const { return j.contains(key) && !j[key].is_null(); }
    int64_t integer(const std::string& key) const {
        if (!has(key)) bad(key, "is missing");
        const json& v = j[key];
        if (!v.is_number_integer()) bad(key, "must be an integer, got " + v.dump());
        return v.get<int64_t>();
    }
    int64_t positive(const std::string& key) const {
        const int64_t v = integer(key);
        if (v <= 0) bad(key, "must be positive, got " + std::to_string(v));
        return v;
    }
    int64_t positive_or(const std::string& key, int64_t dflt) const {
        return has(key) ? positive(key) : dflt;
    }
    double number_or(const std::string& key, double dflt) const {
        if (!has(key)) return dflt;
        if (!j[key].is_number()) bad(key, "must be a number, got " + j[key].dump());
        return j[key].get<double>();
    }
    bool boolean_or(const std::string& key, bool dflt) const {
        if (!has(key)) return dflt;
        if (!j[key].is_boolean()) bad(key, "must be true or false, got " + j[key].dump());
        return j[key].get<bool>();
    }
    std::string string_or(const std::string& key, const std::string& dflt) const {
        if (!has(key)) return dflt;
        if (!j[key].is_string()) bad(key, "must be a string, got " + j[key].dump());
        return j[key].get<std::string>();
    }
};

// One rope dict ({"rope_type", "rope_theta", yarn keys}); null θ means no RoPE.
RopeConfig parse_rope(const json& d, const std::string& where, int64_t max_pos) {
    RopeConfig r;
    if (d.is_null()) return r;
    if (!d.is_object()) fail("[config] ", where, " must be an object or null, got ", d.dump());
    Reader rd{d, where};
    r.rope_type = rd.has("rope_type") ? rd.string_or("rope_type", "default")
                                      : rd.string_or("type", "default");
    if (r.rope_type != "default" && r.rope_type != "yarn")
        fail("[config] ", where, ": unsupported rope_type \"", r.rope_type,
             "\" (supported: default, yarn)");
    if (rd.has("partial_rotary_factor") && rd.number_or("partial_rotary_factor", 1) != 1.0)
        fail("[config] ", where, ": unsupported partial_rotary_factor ",
             d["partial_rotary_factor"].dump());
    if (!rd.has("rope_theta")) return r;  // null or absent θ: NoPE (released Olmo Hybrid)
    r.rope_theta = rd.number_or("rope_theta", 0);
    if (!(r.rope_theta > 1))
        fail("[config] ", where, ": rope_theta must be > 1, got ", r.rope_theta);
    r.enabled = true;
    if (r.rope_type == "yarn") {
        r.original_max_position_embeddings =
            rd.number_or("original_max_position_embeddings", double(max_pos));
        if (!(r.original_max_position_embeddings > 0))
            fail("[config] ", where, ": original_max_position_embeddings must be positive");
        r.factor = rd.has("factor") ? rd.number_or("factor", 1)
                                    : double(max_pos) / r.original_max_position_embeddings;
        if (!(r.factor > 0))
            fail("[config] ", where, ": yarn factor must be positive, got ", r.factor);
        r.beta_fast = rd.number_or("beta_fast", 32);
        r.beta_slow = rd.number_or("beta_slow", 1);
        if (r.beta_fast == 0) r.beta_fast = 32;  // HF: `get("beta_fast") or 32`
        if (r.beta_slow == 0) r.beta_slow = 1;
        r.truncate = rd.boolean_or("truncate", true);
        auto mscale = [](double scale, double m) {
            return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
        };
        if (rd.has("attention_factor")) {
            r.attention_factor = rd.number_or("attention_factor", 1);
        } else {
            const double m = rd.number_or("mscale", 0), mall = rd.number_or("mscale_all_dim", 0);
            r.attention_factor = (m != 0 && mall != 0)
                                     ? mscale(r.factor, m) / mscale(r.factor, mall)
                                     : mscale(r.factor, 1);
        }
    }
    return r;
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& source) {
    if (!j.is_object()) fail("[config] ", source, ": expected a JSON object");
    Reader rd{j, source};
    ModelConfig c;
    c.raw = j;
    const std::string mt = rd.string_or("model_type", "");
    if (mt == "olmo_hybrid" || mt == "olmo3_5_hybrid") {
        c.model_type = ModelType::olmo_hybrid;
        if (!rd.boolean_or("linear_use_gate", true))
            rd.bad("linear_use_gate",
                   "must be true (no other value exists in released checkpoints)");
    } else if (mt == "olmo3") {
        c.model_type = ModelType::olmo3;
    } else {
        fail("[config] ", source, ": unsupported model_type \"", mt,
             "\" (supported: olmo_hybrid, olmo3)");
    }
    const bool hybrid = c.model_type == ModelType::olmo_hybrid;

    c.vocab_size = rd.positive("vocab_size");
    c.hidden_size = rd.positive("hidden_size");
    c.intermediate_size = rd.positive("intermediate_size");
    c.num_hidden_layers = rd.positive("num_hidden_layers");
    c.num_attention_heads = rd.positive("num_attention_heads");
    c.num_key_value_heads = rd.positive_or("num_key_value_heads", c.num_attention_heads);
    if (c.num_attention_heads % c.num_key_value_heads != 0)
        rd.bad("num_key_value_heads", "(" + std::to_string(c.num_key_value_heads) +
                                          ") must divide num_attention_heads (" +
                                          std::to_string(c.num_attention_heads) + ")");
    if (rd.has("head_dim")) {
        c.head_dim = rd.positive("head_dim");
    } else {
        if (c.hidden_size % c.num_attention_heads != 0)
            rd.bad("hidden_size",
                   "must be a multiple of num_attention_heads when head_dim is absent");
        c.head_dim = c.hidden_size / c.num_attention_heads;
    }
    c.max_position_embeddings = rd.positive_or("max_position_embeddings", hybrid ? 65536 : 2048);
    c.rms_norm_eps = rd.number_or("rms_norm_eps", 1e-6);
    if (!(c.rms_norm_eps > 0)) rd.bad("rms_norm_eps", "must be positive");
    c.tie_word_embeddings = rd.boolean_or("tie_word_embeddings", false);
    if (rd.string_or("hidden_act", "silu") != "silu")
        rd.bad("hidden_act",
               "\"" + rd.string_or("hidden_act", "") + "\" is not supported (only silu)");
    if (rd.boolean_or("attention_bias", false)) rd.bad("attention_bias", "true is not supported");
    if (rd.boolean_or("mlp_bias", false)) rd.bad("mlp_bias", "true is not supported");

    // Layer pattern; HF defaults when absent.
    if (rd.has("layer_types")) {
        if (!j["layer_types"].is_array()) rd.bad("layer_types", "must be an array");
        if (int64_t(j["layer_types"].size()) != c.num_hidden_layers)
            rd.bad("layer_types", "has " + std::to_string(j["layer_types"].size()) +
                                      " entries but num_hidden_layers is " +
                                      std::to_string(c.num_hidden_layers));
        for (const auto& t : j["layer_types"]) {
            const std::string s = t.is_string() ? t.get<std::string>() : t.dump();
            if (s == "full_attention") {
                c.layer_types.push_back(LayerType::full_attention);
            } else if (s == "sliding_attention" && !hybrid) {
                c.layer_types.push_back(LayerType::sliding_attention);
            } else if (s == "linear_attention" && hybrid) {
                c.layer_types.push_back(LayerType::linear_attention);
            } else {
                rd.bad("layer_types", "contains unsupported value " +
                                          (t.is_string() ? "\"" + s + "\"" : s) +
                                          " for model_type " + mt);
            }
        }
    } else {
        for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
            if (hybrid)
                c.layer_types.push_back(i % 4 == 3 ? LayerType::full_attention
                                                   : LayerType::linear_attention);
            else
                c.layer_types.push_back((i + 1) % 4 != 0 ? LayerType::sliding_attention
                                                         : LayerType::full_attention);
        }
        // HF makes the last layer attention when the pattern would have none.
        if (hybrid && c.num_attention_layers_in(c.layer_types) == 0)
            c.layer_types.back() = LayerType::full_attention;
    }
    const bool any_sliding =
        std::count(c.layer_types.begin(), c.layer_types.end(), LayerType::sliding_attention) > 0;
    if (any_sliding) {
        c.sliding_window = rd.has("sliding_window") ? rd.positive("sliding_window") : 0;
        if (c.sliding_window == 0)
            rd.bad("sliding_window", "is required by sliding_attention layers");
    }

    // RoPE: rope_parameters (one dict, or one per layer type), or the legacy rope_theta +
    // rope_scaling.
    if (j.contains("rope_parameters")) {
        const json& rp = j["rope_parameters"];
        const bool per_type =
            rp.is_object() && (rp.contains("full_attention") || rp.contains("sliding_attention"));
        if (per_type && hybrid)
            rd.bad("rope_parameters",
                   "must be one dict for olmo_hybrid (HF applies a single RoPE to its "
                   "full-attention layers), got per-layer-type dicts");
        if (per_type) {
            c.rope_full =
                parse_rope(rp.value("full_attention", json()),
                           source + ": rope_parameters.full_attention", c.max_position_embeddings);
            c.rope_sliding = parse_rope(rp.value("sliding_attention", json()),
                                        source + ": rope_parameters.sliding_attention",
                                        c.max_position_embeddings);
        } else {
            c.rope_full = c.rope_sliding =
                parse_rope(rp, source + ": rope_parameters", c.max_position_embeddings);
        }
    } else if (rd.has("rope_theta")) {
        json base = {{"rope_type", "default"}, {"rope_theta", j["rope_theta"]}};
        c.rope_sliding = parse_rope(base, source + ": rope_theta", c.max_position_embeddings);
        json full = base;
        if (rd.has("rope_scaling")) {
            if (!j["rope_scaling"].is_object()) rd.bad("rope_scaling", "must be an object or null");
            full = j["rope_scaling"];
            full["rope_theta"] = j["rope_theta"];
        }
        // Olmo 3 applies rope_scaling to its full-attention layers only; sliding layers use plain
        // RoPE.
        c.rope_full = parse_rope(full, source + ": rope_scaling", c.max_position_embeddings);
    } else if (!hybrid) {
        fail("[config] ", source, ": olmo3 needs \"rope_parameters\" or \"rope_theta\"");
    }
    for (const RopeConfig* r : {&c.rope_full, &c.rope_sliding})
        if (r->enabled && c.head_dim % 2 != 0) rd.bad("head_dim", "must be even for RoPE");

    if (hybrid) {
        // HF defaults: heads = num_attention_heads, D_k = int(0.75·hidden / key heads), D_v =
        // 2·D_k.
        c.linear_num_key_heads = rd.positive_or("linear_num_key_heads", c.num_attention_heads);
        c.linear_num_value_heads = rd.positive_or("linear_num_value_heads", c.num_attention_heads);
        c.linear_key_head_dim =
            rd.positive_or("linear_key_head_dim",
                           int64_t(0.75 * double(c.hidden_size) / double(c.linear_num_key_heads)));
        c.linear_value_head_dim =
            rd.positive_or("linear_value_head_dim", 2 * c.linear_key_head_dim);
        if (c.linear_key_head_dim <= 0) rd.bad("linear_key_head_dim", "must be positive");
        c.linear_conv_kernel_dim = rd.positive_or("linear_conv_kernel_dim", 4);
        c.linear_allow_neg_eigval = rd.boolean_or("linear_allow_neg_eigval", true);
        if (c.linear_num_value_heads % c.linear_num_key_heads != 0)
            rd.bad("linear_num_value_heads", "(" + std::to_string(c.linear_num_value_heads) +
                                                 ") must be a multiple of linear_num_key_heads (" +
                                                 std::to_string(c.linear_num_key_heads) + ")");
        c.linear_a_log_min = rd.number_or("linear_a_log_min", 0);
        c.linear_a_log_max = rd.number_or("linear_a_log_max", 16);
        c.linear_dt_min = rd.number_or("linear_dt_min", 0.001);
        c.linear_dt_max = rd.number_or("linear_dt_max", 0.1);
        c.linear_dt_init_floor = rd.number_or("linear_dt_init_floor", 1e-4);
    }
    c.initializer_range = rd.number_or("initializer_range", 0.02);

    if (!j.contains("eos_token_id") && hybrid) c.eos_token_ids.push_back(100257);  // HF default
    if (rd.has("eos_token_id")) {
        const json& e = j["eos_token_id"];
        if (e.is_number_integer()) {
            c.eos_token_ids.push_back(e.get<int64_t>());
        } else if (e.is_array()) {
            for (const auto& x : e) {
                if (!x.is_number_integer())
                    rd.bad("eos_token_id", "must be an integer or a list of integers");
                c.eos_token_ids.push_back(x.get<int64_t>());
            }
        } else {
            rd.bad("eos_token_id", "must be an integer or a list of integers");
        }
    }
    if (rd.has("pad_token_id")) c.pad_token_id = rd.integer("pad_token_id");
    if (rd.has("bos_token_id")) c.bos_token_id = rd.integer("bos_token_id");
    return c;
}

ModelConfig ModelConfig::from_file(const std::string& path_in) {
    namespace fs = std::filesystem;
    fs::path path(path_in);
    std::error_code ec;
    if (fs::is_directory(path, ec)) path /= "config.json";
    std::ifstream in(path);
    if (!in) fail("[config] cannot read ", path.string());
    json j;
    try {
        j = json::parse(in);
    } catch (const json::exception& e) {
        fail("[config] ", path.string(), ": invalid JSON: ", e.what());
    }
    return from_json(j, path.string());
}

json ModelConfig::to_json() const {
    return raw;
}

int64_t ModelConfig::num_gdn_layers() const {
    return std::count(layer_types.begin(), layer_types.end(), LayerType::linear_attention);
}

bool ModelConfig::is_eos(int64_t id) const {
    return std::find(eos_token_ids.begin(), eos_token_ids.end(), id) != eos_token_ids.end();
}

std::string ModelConfig::summary() const {
    std::string s =
        cat("model_type ", model_type == ModelType::olmo_hybrid ? "olmo_hybrid" : "olmo3",
            ", hidden ", hidden_size, ", layers ", num_hidden_layers, ", vocab ", vocab_size,
            ", MLP ", intermediate_size, "\n");
    s += cat("attention: ", num_attention_heads, " heads x ", head_dim, ", kv heads ",
             num_key_value_heads, ", rope ",
             rope_full.enabled
                 ? rope_full.rope_type + " theta " + std::to_string(rope_full.rope_theta)
                 : std::string("none"));
    if (sliding_window) s += cat(", sliding window ", sliding_window);
    s += "\n";
    if (model_type == ModelType::olmo_hybrid)
        s += cat("gated deltanet: ", linear_num_key_heads, " key heads x ", linear_key_head_dim,
                 ", ", linear_num_value_heads, " value heads x ", linear_value_head_dim, ", conv ",
                 linear_conv_kernel_dim, ", negative eigenvalues ",
                 linear_allow_neg_eigval ? "on" : "off", "\n");
    s += "layers: ";
    for (int64_t i = 0; i < num_hidden_layers; ++i)
        s += layer_types[i] == LayerType::linear_attention    ? 'G'
             : layer_types[i] == LayerType::sliding_attention ? 'S'
                                                              : 'A';
    s += "  (G = gated deltanet, A = full attention, S = sliding attention)";
    return s;
}

}  // namespace olmo
