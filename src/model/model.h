// The Olmo Hybrid / Olmo 3 model: config + weights + the forward pass, written once against
// src/ops.
//
// The same forward serves prefill, decode and training: tokens [B, T] of B sequences held in slots
// of an InferenceState (each slot at its own length), or, with no state, a fresh batch (training).
// Layers read like spec §2: pre-norm Gated DeltaNet layers, post-norm attention layers, SwiGLU
// MLPs.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/arena.h"
#include "model/config.h"
#include "model/weights.h"

namespace olmo {

class Model {
  public:
    // Loads config.json and the safetensors of a folder onto `device`, weights stored as `dtype`.
    static Model load(const std::string& dir, Device device = Device::cpu,
                      DType dtype = DType::f32);
    Model(ModelConfig config, ModelWeights weights);

    const ModelConfig& config() const { return config_; }
    const Weights& w() const { return weights_.w; }
    ModelWeights& weights() { return weights_; }
    const ModelWeights& weights() const { return weights_; }
    Device device() const { return weights_.device(); }
    DType dtype() const { return weights_.dtype(); }
    // RoPE inverse frequencies for a layer (empty tensor when the layer has no RoPE).
    const Tensor& inv_freq(int64_t layer) const;

  private:
    ModelConfig config_;
    ModelWeights weights_;
    OwnedTensor inv_freq_full_, inv_freq_sliding_;
};

// Per-sequence decoding state, `slots` sequences of up to `max_len` tokens (spec §4.1):
// attention layers: K and V caches [S, L, Hkv, D]; GDN layers: conv states [S, W−1, channels] for
// q, k, v (pre-conv projections, oldest first) and the recurrent state [S, H, Dk, Dv] in f32.
class InferenceState {
  public:
    InferenceState(const Model& model, int64_t slots, int64_t max_len);

    struct Layer {
        OwnedTensor k, v;                    // attention
        OwnedTensor conv_q, conv_k, conv_v;  // GDN
        OwnedTensor recurrent;               // GDN, f32
    };

    int64_t slots() const { return int64_t(length.size()); }
    int64_t max_len() const { return max_len_; }
    void reset();                // every slot back to empty
    void reset_slot(int64_t s);  // one slot back to empty
    // Copies slot `src` of `from` into slot `dst` here (same model and max_len).
    void copy_slot(int64_t dst, const InferenceState& from, int64_t src);

    std::vector<Layer> layers;
    std::vector<int64_t> length;  // tokens consumed per slot

  private:
    int64_t max_len_;
};

// What a forward pass should produce besides updating the state.
struct ForwardOutputs {
    // logits [B, T, V] for every position, or [B, V] for the last position only (last_only).
    Tensor logits;
    bool last_only = false;
    // If set, receives hidden_states.0 .. hidden_states.L in the HF convention (spec §10.4), each
    // [B, T, C] (called once per index; the tensor is only valid during the call).
    std::function<void(int64_t index, const Tensor& hidden)> on_hidden;
};

// Runs ids[B, T] (host, i32 or i64; validated against the vocabulary) for slots [slot0, slot0 + B)
// of `state` (each slot continues from its own length), or a fresh batch when state is null.
// Intermediates come from `arena` (rewound on return).
void forward(const Model& model, InferenceState* state, int64_t slot0, const Tensor& ids,
             const ForwardOutputs& out, Arena& arena);

struct BatchInfo;
// The device work of forward() for a batch whose index tensors (bt) and token ids (ids [N] i32) are
// already on the model's device: no host synchronisation, no validation, state lengths not updated.
// A decode step built on it can be captured in a CUDA graph.
void forward_batch(const Model& model, InferenceState* state, int64_t slot0, const BatchInfo& bt,
                   const Tensor& ids, const ForwardOutputs& out, Arena& arena);

// Writes config.json and model.safetensors (HF layout, weights as file_dtype) into `dir`, creating
// it.
void save_model(const Model& model, const std::string& dir, DType file_dtype);

// Checks every id lies in [0, vocab); returns them as i32. Errors name the offending position.
std::vector<int32_t> validate_ids(const Tensor& ids, int64_t vocab_size);

}  // namespace olmo
