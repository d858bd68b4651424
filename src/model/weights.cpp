#include "model/weights.h"

#include <cmath>
#include <map>
#include <set>

#include "core/progress.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "ops/ops.h"

namespace olmo {

namespace {

std::string layer_prefix(int64_t i) {
    return "model.layers." + std::to_string(i) + ".";
}

}  // namespace

std::vector<ParamSpec> parameter_table(const ModelConfig& c) {
    std::vector<ParamSpec> t;
    const int64_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
    auto add = [&](std::string name, std::vector<int64_t> shape, InitRule init, bool decay,
                   std::function<Tensor&(Weights&)> field) {
        t.push_back({std::move(name), std::move(shape), init, decay, std::move(field)});
    };
    // OLMo-core exempts only the input embedding from weight decay (spec §7.2, §8.9).
    add("model.embed_tokens.weight", {V, C}, InitRule::normal, false,
        [](Weights& w) -> Tensor& { return w.embed_tokens; });
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
        const std::string p = layer_prefix(i);
        auto L = [i](Weights& w) -> LayerWeights& { return w.layers[i]; };
        if (c.layer_types[i] == LayerType::linear_attention) {
            const std::string a = p + "linear_attn.";
            const int64_t Kd = c.key_dim(), Vd = c.value_dim(), H = c.linear_num_value_heads;
            add(p + "input_layernorm.weight", {C}, InitRule::ones, true,
                [L](Weights& w) -> Tensor& { return L(w).gdn.input_layernorm; });
            add(a + "q_proj.weight", {Kd, C}, InitRule::normal, true,
                [L](Weights& w) -> Tensor& { return L(w).gdn.q_proj; });
            add(a + "k_proj.weight", {Kd, C}, InitRule::normal, true,
                [L](Weights& w) -> Tensor& { return L(w).gdn.k_proj; });
            add(a + "v_proj.weight", {Vd, C}, InitRule::normal, true,
                [L](Weights& w) -> Tensor& { return L(w).gdn.v_proj; });
            add(a + "a_proj.weight", {H, C}, InitRule::normal, true,
                [L](Weights& w) -> Tensor& { return L(w).gdn.a_proj; });
            add(a + "b_proj.weight", {H, C}, InitRule::normal, true,
                [L](Weights& w) -> Tensor& { return L(w).gdn.b_proj; });
            add(a + "g_proj.weight", {Vd, C}, InitRule::normal, true,
                [L](Weights& w) -> Tensor& { return L(w).gdn.g_proj; });
            add(a + "conv1d.weight", {c.conv_dim(), 1, c.linear_conv_kernel_dim}, InitRule::normal,
                true, [L](Weights& w) -> Tensor& { return L(w).gdn.conv1d; });
            add(a + "A_log", {H}, InitRule::a_log, true,
                [L](Weights& w) -> Tensor& { return L(w).gdn.A_log; });
            add(a + "dt_bias", {H}, InitRule::dt_bias, true,
                [L](Weights& w) -> Tensor& { return L(w).gdn.dt_bias; });
            add(a + "o_norm.weight", {c.linear_value_head_dim}, InitRule::ones, true,
                [L](Weights& w) -> Tensor& { return L(w).gdn.o_norm; });
            add(a + "o_proj.weight", {C, Vd}, InitRule::normal, true,
                [L](Weights& w) -> Tensor& { return L(w).gdn.o_proj; });
            add(p + "post_attention_layernorm.weight", {C}, InitRule::ones, true,
                [L](Weights& w) -> Tensor& { return L(w).gdn.post_attention_layernorm; });
        } else {
            const std::string a = p + "self_attn.";
            const int64_t Dq = c.num_attention_heads * c.head_dim,
                          Dkv = c.num_key_value_heads * c.head_dim;
            add(a + "q_proj.weight", {Dq, C}, InitRule::normal, true,
                [L](Weights& w) -> Tensor& { return L(w).attn.q_proj; });
            add(a + "k_proj.weight", {Dkv, C}, InitRule::normal, true,
                [L](Weights& w) -> Tensor& { return L(w).attn.k_proj; });
            add(a + "v_proj.weight", {Dkv, C}, InitRule::normal, true,
                [L](Weights& w) -> Tensor& { return L(w).attn.v_proj; });
            add(a + "q_norm.weight", {Dq}, InitRule::ones, true,
                [L](Weights& w) -> Tensor& { return L(w).attn.q_norm; });
            add(a + "k_norm.weight", {Dkv}, InitRule::ones, true,
                [L](Weights& w) -> Tensor& { return L(w).attn.k_norm; });
            add(a + "o_proj.weight", {C, Dq}, InitRule::normal, true,
                [L](Weights& w) -> Tensor& { return L(w).attn.o_proj; });
            add(p + "post_attention_layernorm.weight", {C}, InitRule::ones, true,
                [L](Weights& w) -> Tensor& { return L(w).attn.post_attention_layernorm; });
        }
        add(p + "mlp.gate_proj.weight", {F, C}, InitRule::normal, true,
            [L](Weights& w) -> Tensor& { return L(w).mlp.gate_proj; });
        add(p + "mlp.up_proj.weight", {F, C}, InitRule::normal, true,
            [L](Weights& w) -> Tensor& { return L(w).mlp.up_proj; });
        add(p + "mlp.down_proj.weight", {C, F}, InitRule::normal, true,
            [L](Weights& w) -> Tensor& { return L(w).mlp.down_proj; });
        if (c.layer_types[i] != LayerType::linear_attention)
            add(p + "post_feedforward_layernorm.weight", {C}, InitRule::ones, true,
                [L](Weights& w) -> Tensor& { return L(w).attn.post_feedforward_layernorm; });
    }
    add("model.norm.weight", {C}, InitRule::ones, true,
        [](Weights& w) -> Tensor& { return w.norm; });
    if (!c.tie_word_embeddings)
        add("lm_head.weight", {V, C}, InitRule::normal, true,
            [](Weights& w) -> Tensor& { return w.lm_head; });
    return t;
}

namespace {
void zero_fill(const Tensor& t) {
    ops::fill(t, 0.0f);
}

// Every parameter starts at a multiple of this many elements in the flat buffer (256 bytes in bf16,
// 512 in f32), so that matrix products see aligned operands. The gaps are zero.
constexpr int64_t kParamAlign = 128;
int64_t aligned(int64_t n) {
    return (n + kParamAlign - 1) / kParamAlign * kParamAlign;
}
int64_t count(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}
}  // namespace

ModelWeights::ModelWeights(const ModelConfig& config, Device device, DType dtype)
    : config_(config), table_(parameter_table(config)) {
    int64_t total = 0;
    for (const ParamSpec& s : table_) total += aligned(count(s.shape));
    storage_ = allocate_bytes(device, size_t(total) * dtype_size(dtype));
    flat_ = Tensor(storage_.get(), dtype, device, {total});
    zero_fill(flat_);
    bind();
}

int64_t ModelWeights::num_params() const {
    int64_t n = 0;
    for (const Tensor& p : params_) n += p.numel();
    return n;
}

int64_t ModelWeights::offset_of(size_t index) const {
    return (static_cast<const char*>(params_[index].data) - static_cast<const char*>(flat_.data)) /
           int64_t(dtype_size(flat_.dtype));
}

void ModelWeights::bind() {
    w = Weights{};
    w.layers.resize(config_.num_hidden_layers);
    for (int64_t i = 0; i < config_.num_hidden_layers; ++i)
        w.layers[i].type = config_.layer_types[i];
    params_.clear();
    int64_t offset = 0;
    for (ParamSpec& s : table_) {
        const int64_t n = count(s.shape);
        Tensor view = flat_.narrow0(offset, n).reshape(std::span<const int64_t>(s.shape));
        params_.push_back(view);
        s.field(w) = view;
        offset += aligned(n);
    }
    if (config_.tie_word_embeddings) w.lm_head = w.embed_tokens;
    for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
        GdnWeights& g = w.layers[i].gdn;
        if (config_.layer_types[i] != LayerType::linear_attention) continue;
        const int64_t W = config_.linear_conv_kernel_dim, Kd = config_.key_dim(),
                      Vd = config_.value_dim();
        Tensor conv = g.conv1d.reshape({config_.conv_dim(), W});
        g.conv_q = conv.narrow0(0, Kd);
        g.conv_k = conv.narrow0(Kd, Kd);
        g.conv_v = conv.narrow0(2 * Kd, Vd);
    }
}

const Tensor& ModelWeights::param(const std::string& name) const {
    for (size_t i = 0; i < table_.size(); ++i)
        if (table_[i].name == name) return params_[i];
    fail("[weights] no parameter named \"", name, "\"");
}

namespace {

std::string replace_suffix(const std::string& name, const std::string& from,
                           const std::string& to) {
    if (name.size() < from.size() ||
        name.compare(name.size() - from.size(), from.size(), from) != 0)
        return "";
    return name.substr(0, name.size() - from.size()) + to;
}

// Other spellings of a parameter written by the different HF / OLMo-core exporters (spec §5,
// §10.1).
std::vector<std::string> aliases(const std::string& name) {
    std::vector<std::string> out;
    for (auto [from, to] :
         {std::pair{"input_layernorm.weight", "attention_layer_norm.weight"},
          std::pair{"post_attention_layernorm.weight", "feedforward_layer_norm.weight"},
          std::pair{"linear_attn.o_proj.weight", "linear_attn.out_proj.weight"},
          std::pair{"linear_attn.o_norm.weight", "linear_attn.norm.weight"}}) {
        std::string a = replace_suffix(name, from, to);
        if (!a.empty()) out.push_back(a);
    }
    return out;
}

bool same_shape(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
    return a == b;
}

std::string shape_str(const std::vector<int64_t>& s) {
    return Tensor(nullptr, DType::f32, Device::cpu, s).shape_str();
}

}  // namespace

void ModelWeights::load(const std::string& path) {
    SafetensorsReader r = SafetensorsReader::open(path);
    std::set<std::string> used;
    auto take = [&](const SafetensorsEntry& e, const std::vector<int64_t>& shape,
                    const Tensor& dst) {
        if (!same_shape(e.shape, shape))
            fail("[weights] ", r.source(), ": tensor \"", e.name, "\" has shape ",
                 shape_str(e.shape), ", expected ", shape_str(shape));
        if (e.dtype != DType::f32 && e.dtype != DType::bf16 && e.dtype != DType::f16 &&
            e.dtype != DType::f64)
            fail("[weights] ", r.source(), ": tensor \"", e.name, "\" has dtype ",
                 dtype_name(e.dtype), ", expected a float type");
        copy_convert(dst, e.view());
        used.insert(e.name);
    };
    for (size_t i = 0; i < table_.size(); ++i) {
        const ParamSpec& s = table_[i];
        const std::string conv_suffix = "linear_attn.conv1d.weight";
        if (s.name.size() > conv_suffix.size() &&
            s.name.compare(s.name.size() - conv_suffix.size(), conv_suffix.size(), conv_suffix) ==
                0) {
            if (const SafetensorsEntry* fused = r.find(s.name)) {
                take(*fused, s.shape, params_[i]);
                continue;
            }
            // Separate q/k/v convs of any split (HF 5.x writes equal thirds; releases the true
            // sizes): concatenate, check the total, and the model splits it as [Kd, Kd, Vd] (spec
            // §10.2).
            const std::string base =
                s.name.substr(0, s.name.size() - std::string("conv1d.weight").size());
            int64_t row = 0;
            const int64_t W = s.shape[2];
            for (const char* part : {"q_conv1d.weight", "k_conv1d.weight", "v_conv1d.weight"}) {
                const SafetensorsEntry* e = r.find(base + part);
                if (!e)
                    fail("[weights] ", r.source(), ": missing tensor \"", base + part,
                         "\" (or a fused \"", s.name, "\")");
                if (e->shape.size() != 3 || e->shape[1] != 1 || e->shape[2] != W)
                    fail("[weights] ", r.source(), ": tensor \"", e->name, "\" has shape ",
                         shape_str(e->shape), ", expected [channels, 1, ", W, "]");
                if (row + e->shape[0] > s.shape[0])
                    fail("[weights] ", r.source(), ": q/k/v conv weights of \"", base,
                         "\" hold more than the expected ", s.shape[0],
                         " channels (2·key_dim + value_dim)");
                take(*e, e->shape, params_[i].narrow0(row, e->shape[0]));
                row += e->shape[0];
            }
            if (row != s.shape[0])
                fail("[weights] ", r.source(), ": q/k/v conv weights of \"", base, "\" hold ", row,
                     " channels, expected ", s.shape[0], " (2·key_dim + value_dim)");
            continue;
        }
        const SafetensorsEntry* found = r.find(s.name);
        for (const std::string& a : aliases(s.name)) {
            if (const SafetensorsEntry* e = r.find(a)) {
                if (found)
                    fail("[weights] ", r.source(), ": both \"", found->name, "\" and \"", a,
                         "\" are present; they name the same parameter");
                found = e;
            }
        }
        if (!found) fail("[weights] ", r.source(), ": missing tensor \"", s.name, "\"");
        take(*found, s.shape, params_[i]);
    }
    for (const SafetensorsEntry& e : r.entries()) {
        if (used.count(e.name)) continue;
        const bool ignorable = replace_suffix(e.name, "rotary_emb.inv_freq", "x") != "" ||
                               (config_.tie_word_embeddings && e.name == "lm_head.weight");
        if (!ignorable)
            fail(
                "[weights] ", r.source(), ": unexpected tensor \"", e.name, "\" (not part of this ",
                config_.model_type == ModelType::olmo_hybrid ? "olmo_hybrid" : "olmo3", " config)");
    }
}

namespace {

// Fills out[n] (f32) with the initial values of parameter `index` of the table (spec §7.1).
void init_values(const ParamSpec& s, size_t index, uint64_t seed, const ModelConfig& c, float* out,
                 int64_t n) {
    const Rng rng(seed, uint64_t(index) + 1);
    switch (s.init) {
        case InitRule::ones:
            for (int64_t i = 0; i < n; ++i) out[i] = 1.0f;
            break;
        case InitRule::normal:
            ops::fill_trunc_normal(Tensor(out, DType::f32, Device::cpu, {n}), seed,
                                   uint64_t(index) + 1, c.initializer_range);
            break;
        case InitRule::a_log:  // A ~ U(a_log_min, a_log_max), stored as log A
            for (int64_t i = 0; i < n; ++i) {
                const double u =
                    c.linear_a_log_min + (c.linear_a_log_max - c.linear_a_log_min) * rng.uniform(i);
                out[i] = float(std::log(u));
            }
            break;
        case InitRule::dt_bias:  // dt log-uniform in [dt_min, dt_max], floored; store
                                 // softplus⁻¹(dt)
            for (int64_t i = 0; i < n; ++i) {
                const double lo = std::log(c.linear_dt_min), hi = std::log(c.linear_dt_max);
                double dt = std::exp(rng.uniform(i) * (hi - lo) + lo);
                dt = std::max(dt, c.linear_dt_init_floor);
                out[i] = float(dt + std::log(-std::expm1(-dt)));
            }
            break;
    }
}

}  // namespace

void ModelWeights::init_random(uint64_t seed) {
    for (size_t i = 0; i < table_.size(); ++i) {
        if (table_[i].init == InitRule::normal) {  // the bulk: drawn where the weights live
            ops::fill_trunc_normal(params_[i], seed, uint64_t(i) + 1, config_.initializer_range);
            continue;
        }
        OwnedTensor host(DType::f32, params_[i].dims());
        init_values(table_[i], i, seed, config_, host.f32(), host->numel());
        copy_convert(params_[i], host);
    }
}

void ModelWeights::save(const std::string& path, DType file_dtype) const {
    std::vector<StreamedTensor> out;
    for (size_t i = 0; i < table_.size(); ++i) {
        const ParamSpec& s = table_[i];
        const Tensor src = params_[i];
        const std::string conv_suffix = "conv1d.weight";
        if (s.name.find("linear_attn.conv1d.weight") != std::string::npos) {
            const std::string base = s.name.substr(0, s.name.size() - conv_suffix.size());
            const int64_t Kd = config_.key_dim(), Vd = config_.value_dim(), W = s.shape[2];
            const int64_t rows[3] = {Kd, Kd, Vd}, starts[3] = {0, Kd, 2 * Kd};
            const char* names[3] = {"q_conv1d.weight", "k_conv1d.weight", "v_conv1d.weight"};
            for (int part = 0; part < 3; ++part) {
                Tensor piece = src.narrow0(starts[part], rows[part]);
                out.push_back({base + names[part],
                               file_dtype,
                               {rows[part], 1, W},
                               [piece, file_dtype](void* dst) {
                                   copy_convert(Tensor(dst, file_dtype, Device::cpu, piece.dims()),
                                                piece);
                               }});
            }
            continue;
        }
        out.push_back({s.name, file_dtype, s.shape, [src, file_dtype](void* dst) {
                           copy_convert(Tensor(dst, file_dtype, Device::cpu, src.dims()), src);
                       }});
    }
    write_safetensors_streamed(path, out, {{"format", "pt"}});
}

ModelWeights convert_weights(const ModelWeights& src, const ModelConfig& config, Device device,
                             DType dtype) {
    ModelWeights out(config, device, dtype);
    copy_convert(out.flat(), src.flat());
    return out;
}

void write_random_checkpoint(const ModelConfig& config, const std::string& path, uint64_t seed,
                             DType dtype, bool show_progress) {
    const std::vector<ParamSpec> table = parameter_table(config);
    std::vector<StreamedTensor> out;
    for (size_t i = 0; i < table.size(); ++i) {
        const ParamSpec s = table[i];
        auto fill_part = [s, i, seed, config, dtype](int64_t start, int64_t rows, void* dst) {
            int64_t n = 1;
            for (int64_t d : s.shape) n *= d;
            OwnedTensor host(DType::f32, {n});
            init_values(s, i, seed, config, host.f32(), n);
            const int64_t row = n / s.shape[0];
            copy_convert(Tensor(dst, dtype, Device::cpu, {rows * row}),
                         host->narrow0(start * row, rows * row));
        };
        if (s.name.find("linear_attn.conv1d.weight") != std::string::npos) {
            const std::string base =
                s.name.substr(0, s.name.size() - std::string("conv1d.weight").size());
            const int64_t Kd = config.key_dim(), Vd = config.value_dim(), W = s.shape[2];
            const int64_t rows[3] = {Kd, Kd, Vd}, starts[3] = {0, Kd, 2 * Kd};
            const char* names[3] = {"q_conv1d.weight", "k_conv1d.weight", "v_conv1d.weight"};
            for (int part = 0; part < 3; ++part) {
                const int64_t st = starts[part], r = rows[part];
                out.push_back({base + names[part], dtype, {r, 1, W}, [fill_part, st, r](void* dst) {
                                   fill_part(st, r, dst);
                               }});
            }
            continue;
        }
        out.push_back(
            {s.name, dtype, s.shape, [fill_part, s](void* dst) { fill_part(0, s.shape[0], dst); }});
    }
    double total = 0;
    for (const StreamedTensor& t : out)
        total += double(Tensor(nullptr, t.dtype, Device::cpu, t.shape).nbytes());
    auto progress = std::make_shared<Progress>("init " + path, total, "B", show_progress);
    for (StreamedTensor& t : out) {
        const double bytes = double(Tensor(nullptr, t.dtype, Device::cpu, t.shape).nbytes());
        t.fill = [inner = t.fill, progress, bytes](void* dst) {
            inner(dst);
            progress->add(bytes);
        };
    }
    write_safetensors_streamed(path, out, {{"format", "pt"}});
    progress->finish();
}

}  // namespace olmo
