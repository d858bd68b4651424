// The weights table: one entry per parameter, mapping the model field to its HF tensor name, shape,
// initialisation rule and weight-decay flag. It drives loading (with the aliases of the different
// HF writers, spec §5 and §10), saving, random initialisation, gradient buffers and the optimiser.
//
// All parameters live in one flat buffer, in table order, so that gradients and optimiser moments
// are flat buffers of the same layout. Order is chosen so that tensors used together are adjacent
// (q|k|v of a layer, gate|up of an MLP), which lets a backend fuse their matrix products later.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace olmo {

struct AttentionWeights {
    Tensor q_proj, k_proj, v_proj;  // [Hq·D, C], [Hkv·D, C], [Hkv·D, C]
    Tensor o_proj;                  // [C, Hq·D]
    Tensor q_norm, k_norm;          // [Hq·D], [Hkv·D]  (QK-norm over the whole projection)
    Tensor post_attention_layernorm, post_feedforward_layernorm;  // [C]
};

struct GdnWeights {
    Tensor input_layernorm, post_attention_layernorm;  // [C] pre-mixer, pre-MLP norms
    Tensor q_proj, k_proj;                             // [Hk·Dk, C]
    Tensor v_proj;                                     // [H·Dv, C]
    Tensor a_proj, b_proj;                             // [H, C]
    Tensor g_proj;                                     // [H·Dv, C] output gate z
    Tensor o_proj;                                     // [C, H·Dv]
    Tensor conv1d;                  // [Hk·Dk·2 + H·Dv, W] fused q|k|v conv (HF in memory)
    Tensor conv_q, conv_k, conv_v;  // views into conv1d: [Hk·Dk, W], [Hk·Dk, W], [H·Dv, W]
    Tensor A_log, dt_bias;          // [H]
    Tensor o_norm;                  // [Dv]
};

struct MlpWeights {
    Tensor gate_proj, up_proj;  // [F, C]
    Tensor down_proj;           // [C, F]
};

struct LayerWeights {
    LayerType type = LayerType::full_attention;
    AttentionWeights attn;  // attention layers
    GdnWeights gdn;         // linear_attention layers
    MlpWeights mlp;
};

struct Weights {
    Tensor embed_tokens;  // [V, C]
    std::vector<LayerWeights> layers;
    Tensor norm;     // [C]
    Tensor lm_head;  // [V, C] (a view of embed_tokens when tied)
};

enum class InitRule { normal, ones, a_log, dt_bias };

struct ParamSpec {
    std::string name;  // in-memory HF parameter name
    std::vector<int64_t> shape;
    InitRule init = InitRule::normal;
    bool weight_decay = true;
    std::function<Tensor&(Weights&)> field;
};

// The ordered table for a config. Its order is the memory layout and the initialisation order.
std::vector<ParamSpec> parameter_table(const ModelConfig& config);

// Owns one flat buffer holding every parameter, and the views into it.
class ModelWeights {
  public:
    ModelWeights() = default;
    ModelWeights(const ModelConfig& config, Device device, DType dtype);

    Weights w;
    const std::vector<ParamSpec>& table() const { return table_; }
    const std::vector<Tensor>& params() const { return params_; }  // in table order
    const Tensor& flat() const {
        return flat_;
    }                                       // [P] all parameters, each aligned, zero between them
    int64_t offset_of(size_t index) const;  // element offset of parameter `index` in flat()
    int64_t num_params() const;             // parameters (without the alignment gaps)
    const Tensor& param(const std::string& name) const;  // error if absent
    DType dtype() const { return flat_.dtype; }
    Device device() const { return flat_.device; }

    // Loads every parameter from HF safetensors (single file, sharded, or a folder), converting
    // dtypes. Missing, extra or mis-shaped tensors are errors naming the tensor.
    void load(const std::string& path);
    // Random initialisation of spec §7.1, deterministic in (seed, parameter index, element index).
    void init_random(uint64_t seed);
    // Writes model.safetensors with the names the released checkpoints use (separate q/k/v convs,
    // input_layernorm / post_attention_layernorm), loadable by HF transformers.
    void save(const std::string& path, DType file_dtype) const;

  private:
    void bind();
    ModelConfig config_;
    std::vector<ParamSpec> table_;
    std::vector<Tensor> params_;
    Tensor flat_;
    std::shared_ptr<void> storage_;
};

// Writes a randomly initialised checkpoint (same values as ModelWeights::init_random with the same
// seed) tensor by tensor, without holding the model in memory: for real-size checkpoints.
void write_random_checkpoint(const ModelConfig& config, const std::string& path, uint64_t seed,
                             DType dtype, bool show_progress = false);

// Copies a whole ModelWeights to another device/dtype (same config).
ModelWeights convert_weights(const ModelWeights& src, const ModelConfig& config, Device device,
                             DType dtype);

}  // namespace olmo
