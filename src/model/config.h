// ModelConfig: the HF config.json of an `olmo_hybrid` or `olmo3` checkpoint, with the keys that
// change the math read verbatim (field names are the HF key names) and every unsupported value
// rejected by name.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace olmo {

enum class ModelType { olmo_hybrid, olmo3 };
// HF layer_types values. linear_attention = Gated DeltaNet.
enum class LayerType { full_attention, sliding_attention, linear_attention };

const char* layer_type_name(LayerType t);

// Rotary embedding of one attention layer type (spec §2.4.4, §10.6). enabled == false is NoPE.
struct RopeConfig {
    bool enabled = false;
    std::string rope_type = "default";  // "default" or "yarn"
    double rope_theta = 0;
    // yarn only
    double factor = 1;
    double original_max_position_embeddings = 0;
    double beta_fast = 32, beta_slow = 1;
    double attention_factor = 1;  // resolved (default 0.1·ln f + 1)
    bool truncate = true;

    // inv_freq[head_dim/2] in f32 as HF computes it, and the cos/sin multiplier.
    std::vector<float> inv_freq(int64_t head_dim) const;
    float attention_scaling() const { return rope_type == "yarn" ? float(attention_factor) : 1.0f; }
};

struct ModelConfig {
    ModelType model_type = ModelType::olmo_hybrid;
    int64_t vocab_size = 0;
    int64_t hidden_size = 0;
    int64_t intermediate_size = 0;
    int64_t num_hidden_layers = 0;
    int64_t num_attention_heads = 0;
    int64_t num_key_value_heads = 0;
    int64_t head_dim = 0;  // hidden_size / num_attention_heads unless the config gives it
    int64_t max_position_embeddings = 0;
    double rms_norm_eps = 1e-6;
    bool tie_word_embeddings = false;
    std::vector<LayerType> layer_types;
    int64_t sliding_window = 0;  // 0 = none
    RopeConfig rope_full, rope_sliding;

    // Gated DeltaNet (olmo_hybrid only).
    int64_t linear_num_key_heads = 0;
    int64_t linear_num_value_heads = 0;
    int64_t linear_key_head_dim = 0;
    int64_t linear_value_head_dim = 0;
    int64_t linear_conv_kernel_dim = 4;
    bool linear_allow_neg_eigval = true;

    std::vector<int64_t> eos_token_ids;
    std::optional<int64_t> pad_token_id, bos_token_id;

    // Initialisation (spec §7.1); not used by inference.
    double initializer_range = 0.02;
    double linear_a_log_min = 0, linear_a_log_max = 16;
    double linear_dt_min = 0.001, linear_dt_max = 0.1, linear_dt_init_floor = 1e-4;

    nlohmann::json raw;  // the file as read, written back with saved checkpoints

    static ModelConfig from_json(const nlohmann::json& j,
                                 const std::string& source = "config.json");
    static ModelConfig from_file(const std::string& path);  // a config.json or a folder holding one
    nlohmann::json to_json() const;

    // Derived sizes (NOTATION.md letters).
    int64_t key_dim() const { return linear_num_key_heads * linear_key_head_dim; }  // H_k·D_k
    int64_t value_dim() const { return linear_num_value_heads * linear_value_head_dim; }  // H·D_v
    int64_t conv_dim() const { return 2 * key_dim() + value_dim(); }
    bool is_attention(int64_t layer) const {
        return layer_types[layer] != LayerType::linear_attention;
    }
    int64_t num_gdn_layers() const;
    static int64_t num_attention_layers_in(const std::vector<LayerType>& types) {
        int64_t n = 0;
        for (LayerType t : types) n += t != LayerType::linear_attention;
        return n;
    }
    int64_t num_attention_layers() const { return num_hidden_layers - num_gdn_layers(); }
    const RopeConfig& rope_for(int64_t layer) const {
        return layer_types[layer] == LayerType::sliding_attention ? rope_sliding : rope_full;
    }
    int64_t window_for(int64_t layer) const {
        return layer_types[layer] == LayerType::sliding_attention ? sliding_window : 0;
    }
    bool is_eos(int64_t id) const;
    std::string summary() const;
};

}  // namespace olmo
