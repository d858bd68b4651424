// The two decoder layer kinds (spec §2.2), forward and backward, written once against src/ops.
//
// Each layer's intermediates live in an *Acts struct. For inference they alias one another so that
// work happens in place and nothing is kept (plan with keep = false); for training every
// intermediate the backward pass reads is its own tensor (keep = true). The forward code is the
// same either way.
#pragma once

#include <vector>

#include "core/arena.h"
#include "model/model.h"
#include "ops/sum_squares.h"

namespace olmo {

constexpr float kGdnNormEps = 1e-5f;  // gated output RMSNorm, hard-coded in HF (spec §2.6.8)
constexpr float kL2NormEps = 1e-6f;   // q/k L2 norm inside the GDN kernel (spec §2.6.6)

// A document inside a training row (document masking, spec §3.6): tokens [start, start + len) of
// row b, which see nothing of the row before them. kv_len is a [1] i32 tensor holding len.
struct Segment {
    int64_t b = 0, start = 0, len = 0;
    Tensor kv_len;
};

// Token layout of one forward pass.
struct BatchInfo {
    int64_t B = 0, T = 0, N = 0;  // N = B·T rows
    Tensor positions;  // [N] i32 absolute positions (RoPE; restart at each document if masked)
    Tensor start;      // [B] i32 tokens already in each slot (KV-cache write offset)
    Tensor kv_lens;    // [B] i32 start + T
    // Document masking: the rows' documents, in order (empty: every row is one sequence). The
    // sequence mixers (conv, attention, GDN) then run per document with fresh state.
    std::vector<Segment> segments;
};

// Splits every row of ids [B, T] (host) after each `separator` token into documents and restarts
// the positions there (training without state).
void mask_documents(BatchInfo& bt, const std::vector<int32_t>& ids, int32_t separator,
                    Arena& arena);

// x[B, T, ...] restricted to one document: [1, len, ...].
Tensor segment_view(const Tensor& x, const Segment& s);

struct MlpActs {
    Tensor gate, up;  // [N, F] pre-activation projections
    Tensor act;       // [N, F] silu(gate) ⊙ up (aliases gate when not kept)
};

struct AttnActs {
    Tensor q_raw, k_raw;  // [N, Hq·D], [N, Hkv·D] projections before QK-norm
    Tensor q, k, v;       // [B, T, H, D] after QK-norm and RoPE
    Tensor attn;          // [B, T, Hq, D] attention output
    Tensor o_raw;         // [N, C] o_proj output before the post-attention norm
    Tensor o;             // [N, C] after the norm
    Tensor h_mid;         // [N, C] residual stream after the attention half
    MlpActs mlp;
    Tensor m_raw, m;  // [N, C] MLP output before / after the post-feedforward norm
};

struct GdnActs {
    Tensor x;                       // [N, C] input_layernorm output
    Tensor q_pre, k_pre, v_pre;     // [B, T, Kd|Vd] projections before the conv
    Tensor a, b, z;                 // [N, H], [N, H], [N, Vd]
    Tensor q_conv, k_conv, v_conv;  // [B, T, Kd|Vd] after conv + SiLU
    Tensor q, k;                    // [B, T, Hk, Dk] L2-normalised (q also scaled)
    Tensor q_rep, k_rep;  // [B, T, H, Dk] heads repeated for GVA (alias q, k when H == Hk)
    Tensor g, beta;       // [B, T, H] f32
    Tensor o;             // [B, T, H, Dv] delta-rule output
    Tensor y;             // [N·H, Dv] gated RMSNorm output
    Tensor out;           // [N, C] o_proj output
    Tensor h_mid;         // [N, C] residual after the mixer half
    Tensor x2;            // [N, C] post_attention_layernorm output (MLP input)
    MlpActs mlp;
    Tensor m;  // [N, C] MLP output
};

AttnActs plan_attention_acts(Arena& arena, const ModelConfig& c, int64_t B, int64_t T, DType dt,
                             bool keep);
GdnActs plan_gdn_acts(Arena& arena, const ModelConfig& c, int64_t B, int64_t T, DType dt,
                      bool keep);

// h_out[N, C] = layer(h_in); h_out may alias h_in (inference). With a state, attention appends to
// the KV cache of slots [slot0, slot0 + B) and GDN continues from and updates their conv and
// recurrent states. h_sumsq (inference, optional): on entry what h_in's producer left for the
// layer's first norm (ops/sum_squares.h), on return what the layer left of h_out for the RMSNorm
// of weight out_norm_w that reads it next (count 0: nothing); the GDN layer's pre-norms then run
// inside the products around them.
void attention_layer_forward(const Tensor& h_out, const Tensor& h_in, const AttnActs& a,
                             int64_t layer, const Model& model, InferenceState* state,
                             int64_t slot0, const BatchInfo& bt, SumSquares* h_sumsq = nullptr);
void gdn_layer_forward(const Tensor& h_out, const Tensor& h_in, const GdnActs& a, int64_t layer,
                       const Model& model, InferenceState* state, int64_t slot0,
                       const BatchInfo& bt, Arena& arena, SumSquares* h_sumsq = nullptr,
                       const Tensor& out_norm_w = Tensor());

// Backward of a layer run by the forward above with keep = true and no state: given d_out =
// dL/dh_out [N, C], writes d_in = dL/dh_in (may alias d_out) and adds parameter gradients into
// `grads`.
void attention_layer_backward(const Tensor& d_in, const Tensor& d_out, const Tensor& h_in,
                              const AttnActs& a, int64_t layer, const Model& model,
                              const BatchInfo& bt, Weights& grads, Arena& arena);
void gdn_layer_backward(const Tensor& d_in, const Tensor& d_out, const Tensor& h_in,
                        const GdnActs& a, int64_t layer, const Model& model, const BatchInfo& bt,
                        Weights& grads, Arena& arena);

// Builds the positions / start / kv_lens of a batch in `arena` (all slots from `lengths`, or 0).
BatchInfo make_batch_info(Arena& arena, int64_t B, int64_t T, const std::vector<int64_t>* lengths,
                          int64_t slot0);

}  // namespace olmo
