// The op API: one function per op, the contract both backends implement.
//
// Every op is an out-variant: outputs first, then inputs, then scalars. The caller allocates every
// output; ops never allocate device memory, never synchronise and read no global state (the CPU
// reference may use small host temporaries). Shapes use the letters of docs/NOTATION.md and are
// checked here once (src/ops/ops.cpp) before dispatch to cpu:: or cuda::, by the device of the
// first output. Unless an op says otherwise, float tensors of one call share one dtype (f32 on the
// CPU; f32 or bf16 on CUDA), "N" is any number of rows (e.g. B*T), and `out` may alias an input of
// the same shape (in-place) where the op is elementwise per row. The CPU also runs every op in f64
// (all float operands f64, including those documented as f32 such as GDN gates and states), for
// gradient checks. Operands whose layout follows another one (outputs, gradients, g/beta of the
// GDN) are checked by element count only, so callers may pass reshaped views
// ([N, H·D] for [B, T, H, D]); the operand that defines the layout is checked dimension by
// dimension.
//
// Backward ops write gradients of the loss with respect to each input; a gradient named with
// "(accumulates)" is added to, so parameters' gradients can be summed over layers and steps.
#pragma once

#include <span>

#include "core/tensor.h"
#include "ops/sum_squares.h"

namespace olmo::ops {

// Sees every op call (profiling): begin/end around the backend call, with the op's name.
struct OpObserver {
    virtual ~OpObserver() = default;
    virtual void begin(const char* op, Device device) = 0;
    virtual void end(const char* op, Device device) = 0;
};
// Installs an observer (nullptr removes it). Not thread-safe; meant for benchmarks.
void set_observer(OpObserver* observer);

// ---- dense -------------------------------------------------------------------------------------

// out[N, O] = x[N, I] · w[O, I]ᵀ (nn.Linear convention); with accumulate, out += x · wᵀ.
void matmul(const Tensor& out, const Tensor& x, const Tensor& w, bool accumulate = false);
// Several products with one weight matrix stored as consecutive row blocks (e.g. q|k|v of a layer):
// w[O₁ + … + O_S, I], outs[s][N, O_s] = x · (rows of block s of w)ᵀ. One pass over the weights.
void matmul_segments(std::span<const Tensor> outs, const Tensor& x, const Tensor& w);
// d_x[N, I] = d_out[N, O] · w[O, I]   (+= with accumulate)
void matmul_backward_input(const Tensor& d_x, const Tensor& d_out, const Tensor& w,
                           bool accumulate);
// The gate and up projections of a SwiGLU MLP and its activation in one op: gate = x · w_gateᵀ,
// up = x · w_upᵀ (x [N, I], w_gate and w_up [F, I], gate and up [N, F]), then act = swiglu(gate,
// up). Equal to the two matmuls and swiglu in that order (act may alias gate or up); on
// decode-sized batches the CUDA backend computes act in the products' kernel.
void matmul_swiglu(const Tensor& act, const Tensor& gate, const Tensor& up, const Tensor& x,
                   const Tensor& w_gate, const Tensor& w_up);
// Decoding with the RMSNorm carried by the products around it (src/ops/sum_squares.h):
// matmul_sumsq is matmul, and where the backend can (CUDA, a decode-sized bf16 product of one row)
// also leaves for the RMSNorm of weight norm_w [O] that reads out next the sums of squares of out
// after the product and out ⊙ norm_w (sumsq.count > 0, sumsq.norm_w = norm_w); else (or with an
// empty norm_w) it sets sumsq.count = 0. The rmsnorm_ variants
// compute their product of rmsnorm(h, norm_w, eps) instead of x, equal to rmsnorm into `normed`
// [N, I] followed by the product; normed is scratch, which the op may leave unwritten. Given what
// the op that wrote h left for this norm (sumsq.count > 0, sumsq.norm_w is norm_w), the CUDA
// backend multiplies h ⊙ norm_w and scales the dot products by the norm's r: the norm's output is
// then rounded at another point (docs/NUMERICS.md).
void matmul_sumsq(const Tensor& out, SumSquares& sumsq, const Tensor& x, const Tensor& w,
                  bool accumulate, const Tensor& norm_w);
void rmsnorm_matmul_segments(std::span<const Tensor> outs, const Tensor& normed, const Tensor& h,
                             const Tensor& norm_w, float eps, const SumSquares& sumsq,
                             const Tensor& w);
void rmsnorm_matmul_swiglu(const Tensor& act, const Tensor& gate, const Tensor& up,
                           const Tensor& normed, const Tensor& h, const Tensor& norm_w, float eps,
                           const SumSquares& sumsq, const Tensor& w_gate, const Tensor& w_up);
// d_w[O, I] += d_out[N, O]ᵀ · x[N, I]   (accumulates)
void matmul_backward_weight(const Tensor& d_w, const Tensor& d_out, const Tensor& x);

// out = a + b, all the same shape.
void add(const Tensor& out, const Tensor& a, const Tensor& b);
// out = value everywhere (any float dtype).
void fill(const Tensor& out, float value);
// out[i] = Rng(seed, stream).trunc_normal(i, std) rounded to out's dtype (core/rng.h: a normal
// truncated to ±3 std, a pure function of (seed, stream, i) on every device), i over the flat
// elements of out.
void fill_trunc_normal(const Tensor& out, uint64_t seed, uint64_t stream, double std);
// out = s · x (same shape; out may alias x).
void scale(const Tensor& out, const Tensor& x, float s);
// out[N] (i32) = index of the largest entry of each row of x[N, V] (the first one on ties, as
// torch.argmax).
void argmax(const Tensor& out, const Tensor& x);

// ---- embedding ---------------------------------------------------------------------------------

// out[N, C] = table[ids[n], :]; ids[N] is i32 or i64 and must lie in [0, V) (checked on the host
// for CPU tensors; validate user input before calling).
void embedding(const Tensor& out, const Tensor& ids, const Tensor& table);
// d_table[V, C] += rows of d_out[N, C] scattered by ids[N]   (accumulates)
void embedding_backward(const Tensor& d_table, const Tensor& d_out, const Tensor& ids);

// ---- norms -------------------------------------------------------------------------------------

// RMSNorm per row (spec §2.3): out[N, C] = w[C] ⊙ x · rsqrt(mean(x²) + eps); statistics in f32.
void rmsnorm(const Tensor& out, const Tensor& x, const Tensor& w, float eps);
// d_x[N, C] = ∂/∂x; d_w[C] += ∂/∂w   (d_w accumulates)
void rmsnorm_backward(const Tensor& d_x, const Tensor& d_w, const Tensor& d_out, const Tensor& x,
                      const Tensor& w, float eps);
// Post-norm residual update in one pass: out[N, C] = residual + rmsnorm(x, w, eps), equal to
// rmsnorm into a temporary followed by add. out may alias residual or x.
void rmsnorm_add(const Tensor& out, const Tensor& residual, const Tensor& x, const Tensor& w,
                 float eps);

// Gated RMSNorm per row of a GDN head output (spec §2.6.8), all in f32 with one final cast:
// out[N, D] = w[D] ⊙ x · rsqrt(mean(x²) + eps) ⊙ silu(z[N, D]).
void rmsnorm_gated(const Tensor& out, const Tensor& x, const Tensor& z, const Tensor& w, float eps);
// d_x, d_z: [N, D]; d_w[D] accumulates.
void rmsnorm_gated_backward(const Tensor& d_x, const Tensor& d_z, const Tensor& d_w,
                            const Tensor& d_out, const Tensor& x, const Tensor& z, const Tensor& w,
                            float eps);

// L2 norm per row times a scale (GDN q and k, spec §2.6.6): out[N, D] = scale · x / sqrt(Σ x² +
// eps).
void l2norm(const Tensor& out, const Tensor& x, float eps, float scale);
// d_x[N, D]
void l2norm_backward(const Tensor& d_x, const Tensor& d_out, const Tensor& x, float eps,
                     float scale);

// ---- rotary position embedding
// -------------------------------------------------------------------

// Non-interleaved ("rotate_half") RoPE on x[N, H, D] at positions[N] (i32), spec §2.4.4 and §10.6:
// angle_i = pos · inv_freq[i] (f32), c = cos(angle)·attention_scaling, s =
// sin(angle)·attention_scaling, out[.., i] = x_i c_i − x_{i+D/2} s_i, out[.., i+D/2] = x_{i+D/2}
// c_i + x_i s_i, for i < D/2. inv_freq[D/2] is f32 on the device of x.
void rope(const Tensor& out, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
          float attention_scaling);
// d_x[N, H, D] (the transpose rotation).
void rope_backward(const Tensor& d_x, const Tensor& d_out, const Tensor& positions,
                   const Tensor& inv_freq, float attention_scaling);

// ---- softmax attention
// ---------------------------------------------------------------------------

// Causal softmax attention of Tq queries over a key/value buffer with room for L positions per
// sequence. Sequence b holds kv_lens[b] valid keys; its queries are the last Tq of them (absolute
// positions kv_lens[b]−Tq .. kv_lens[b]−1). Query at position p sees key j iff j ≤ p and
// (window == 0 or p − j < window). GQA: query head h reads kv head h / (Hq / Hkv).
//   out[B, Tq, Hq, Dv], q[B, Tq, Hq, D], k[B, L, Hkv, D], v[B, L, Hkv, Dv], kv_lens[B] i32 (host
//   for CPU tensors; device for CUDA).  softmax(q·kᵀ·scale) in f32.
void attention(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
               const Tensor& kv_lens, int64_t window, float scale);
// Training form: Tq == L == kv_lens[b] for all b. d_q, d_k, d_v shaped like q, k, v.
void attention_backward(const Tensor& d_q, const Tensor& d_k, const Tensor& d_v,
                        const Tensor& d_out, const Tensor& q, const Tensor& k, const Tensor& v,
                        int64_t window, float scale);

// Writes x[B, T, H, D] into cache[B, L, H, D] at rows start[b] .. start[b]+T−1 (start[B] i32).
void kv_append(const Tensor& cache, const Tensor& x, const Tensor& start);

// The input side of an attention layer that decodes with a KV cache, in one op: the full-width
// QK-norms (spec §2.4.2), RoPE (§2.4.4) and the cache writes,
//   q = rope(rmsnorm(q_raw, q_norm)),  k = rope(rmsnorm(k_raw, k_norm)),
//   kv_append(k_cache, k, start),  kv_append(v_cache, v, start),
// equal to those six ops in this order (the norms run over all heads of a row; no RoPE when
// inv_freq is empty). Rows are independent, so any T works. Shapes: q [B, T, Hq, D],
// k [B, T, Hkv, D] (may alias q_raw, k_raw), k_cache [B, L, Hkv, D], v_cache [B, L, Hkv, Dv]
// (updated in place), q_raw [B·T, Hq·D], k_raw [B·T, Hkv·D], v [B, T, Hkv, Dv], q_norm [Hq·D],
// k_norm [Hkv·D], positions [B·T] i32, inv_freq [D/2] f32 or empty, start [B] i32.
void attention_prologue(const Tensor& q, const Tensor& k, const Tensor& k_cache,
                        const Tensor& v_cache, const Tensor& q_raw, const Tensor& k_raw,
                        const Tensor& v, const Tensor& q_norm, const Tensor& k_norm,
                        const Tensor& positions, const Tensor& inv_freq, const Tensor& start,
                        float eps, float attention_scaling);

// ---- MLP
// -----------------------------------------------------------------------------------------

// out[N, F] = silu(gate) ⊙ up
void swiglu(const Tensor& out, const Tensor& gate, const Tensor& up);
void swiglu_backward(const Tensor& d_gate, const Tensor& d_up, const Tensor& d_out,
                     const Tensor& gate, const Tensor& up);

// ---- Gated DeltaNet ----------------------------------------------------------------------------

// Causal depthwise conv over time with kernel W, then SiLU (spec §2.6.2):
// out[b, t, c] = silu(Σ_j w[c, j] · x̂[b, t − (W−1) + j, c]) where x̂ is x preceded by the W−1 rows
// of `state` (zeros if state is empty). state[B, W−1, Ch] (oldest row first) is updated in place to
// the last W−1 rows of concat(state, x). Shapes: out, x [B, T, Ch]; w [Ch, W].
void conv1d_silu(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& state);
// Training form (zero initial state). d_x[B, T, Ch]; d_w[Ch, W] accumulates.
void conv1d_silu_backward(const Tensor& d_x, const Tensor& d_w, const Tensor& d_out,
                          const Tensor& x, const Tensor& w);

// Gates (spec §2.6.4-5), in f32: g[N, H] = −exp(A_log[h]) · softplus(a + dt_bias[h]) (softplus(x) =
// x for x > 20), beta[N, H] = s · sigmoid(b) with s = 2 if allow_neg_eigval else 1. g and beta are
// f32.
void gdn_gates(const Tensor& g, const Tensor& beta, const Tensor& a, const Tensor& b,
               const Tensor& A_log, const Tensor& dt_bias, bool allow_neg_eigval);
// d_a, d_b [N, H]; d_A_log, d_dt_bias [H] accumulate.
void gdn_gates_backward(const Tensor& d_a, const Tensor& d_b, const Tensor& d_A_log,
                        const Tensor& d_dt_bias, const Tensor& d_g, const Tensor& d_beta,
                        const Tensor& a, const Tensor& b, const Tensor& A_log,
                        const Tensor& dt_bias, bool allow_neg_eigval);

// Gated delta rule (spec §2.6.7), per (b, h) with h_t = Sᵀ ∈ R^{Dk×Dv} in f32:
//   h ← exp(g_t)·h;  u = β_t (v_t − hᵀk_t);  h ← h + k_t uᵀ;  o_t = hᵀ q_t
// q[B, T, H, Dk] (already L2-normalised and scaled), k[B, T, H, Dk] (normalised), v[B, T, H, Dv],
// g[B, T, H] f32 (log decay), beta[B, T, H] f32, state[B, H, Dk, Dv] f32: initial state in, final
// out. o[B, T, H, Dv].
void gdn_recurrent(const Tensor& o, const Tensor& state, const Tensor& q, const Tensor& k,
                   const Tensor& v, const Tensor& g, const Tensor& beta);
// The same function computed by chunks of `chunk` tokens with the UT/WY transform (spec §3).
void gdn_chunked(const Tensor& o, const Tensor& state, const Tensor& q, const Tensor& k,
                 const Tensor& v, const Tensor& g, const Tensor& beta, int64_t chunk = 64);

// Backward of the gated delta rule. Inputs as in the forward, with state0[B, H, Dk, Dv] the initial
// state (may be empty = zeros) and d_state_final (may be empty = zeros) the gradient w.r.t. the
// final state. Writes d_q, d_k, d_v, d_g, d_beta (shaped like their inputs) and, if not empty,
// d_state0.
void gdn_recurrent_backward(const Tensor& d_q, const Tensor& d_k, const Tensor& d_v,
                            const Tensor& d_g, const Tensor& d_beta, const Tensor& d_state0,
                            const Tensor& d_o, const Tensor& d_state_final, const Tensor& q,
                            const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                            const Tensor& state0);
// Chunked backward (spec §3.7); same contract.
void gdn_chunked_backward(const Tensor& d_q, const Tensor& d_k, const Tensor& d_v,
                          const Tensor& d_g, const Tensor& d_beta, const Tensor& d_state0,
                          const Tensor& d_o, const Tensor& d_state_final, const Tensor& q,
                          const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                          const Tensor& state0, int64_t chunk = 64);

// GVA: out[N, Hv, D] = x[N, Hk, D] with each head repeated Hv/Hk times consecutively
// (torch.repeat_interleave on the head axis). Backward sums the copies.
void repeat_heads(const Tensor& out, const Tensor& x);
void repeat_heads_backward(const Tensor& d_x, const Tensor& d_out);

// One decoding step (T = 1 per sequence, spec §2.6.2-8) of a GDN mixer, from the projections to
// the gated norm, in one op. It equals, in this order:
//   conv1d_silu of q, k and v with the rolling conv states;  l2norm of q (scale Dk^-½) and of k
//   per key head (eps l2_eps);  repeat_heads of q and k when H ≠ Hk (value head h reads key head
//   h / (H/Hk));  gdn_gates(a, b);  gdn_recurrent for one token on `state`;
//   y = rmsnorm_gated(o, z, o_norm, norm_eps).
// Shapes: y [B·H, Dv] (must not alias an input); state [B, H, Dk, Dv] in the compute dtype and
// conv_q_state, conv_k_state [B, W−1, Hk·Dk], conv_v_state [B, W−1, H·Dv], all updated in place;
// q, k [B, (1,) Hk·Dk], v [B, (1,) H·Dv]; a, b [B, H] and z [B, H·Dv] (element counts);
// conv_q, conv_k [Hk·Dk, W], conv_v [H·Dv, W]; A_log, dt_bias [H]; o_norm [Dv].
void gdn_decode_step(const Tensor& y, const Tensor& state, const Tensor& conv_q_state,
                     const Tensor& conv_k_state, const Tensor& conv_v_state, const Tensor& q,
                     const Tensor& k, const Tensor& v, const Tensor& a, const Tensor& b,
                     const Tensor& z, const Tensor& conv_q, const Tensor& conv_k,
                     const Tensor& conv_v, const Tensor& A_log, const Tensor& dt_bias,
                     const Tensor& o_norm, bool allow_neg_eigval, float l2_eps, float norm_eps);

// ---- loss --------------------------------------------------------------------------------------

// Mean cross-entropy of logits[N, V] against targets[N] (i32 or i64); rows whose target equals
// ignore_index are skipped. With z_loss > 0 adds z_loss · logsumexp² per row (OLMo z-loss).
// If d_logits[N, V] is given it receives d(mean loss)/d logits. Returns the mean loss (f64 sums),
// and the number of counted rows in *count if not null. Host-side result; synchronises on CUDA.
double cross_entropy(const Tensor& d_logits, const Tensor& logits, const Tensor& targets,
                     float z_loss, int64_t ignore_index, int64_t* count = nullptr);

// ---- optimiser ---------------------------------------------------------------------------------

// Σ x² over all elements (f64 accumulation), returned to the host; synchronises on CUDA.
double sum_squares(const Tensor& x);

// One AdamW step (decoupled weight decay, PyTorch/OLMo-core order) on f32 tensors of one shape:
//   p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//   p ← p − (lr / (1−β1^step)) · m / (sqrt(v / (1−β2^step)) + eps)
// `grad_scale` multiplies g first (global-norm clipping). step counts from 1.
void adamw(const Tensor& param, const Tensor& m, const Tensor& v, const Tensor& grad, float lr,
           float beta1, float beta2, float eps, float weight_decay, int64_t step, float grad_scale);

}  // namespace olmo::ops
