// The CPU reference backend: one function per op of src/ops/ops.h, with the same signature and
// contract (see the comments there). ops:: checks shapes, dtypes and devices before it calls these,
// so they assume valid arguments. Float tensors are f32 or f64 (double precision is there for the
// gradient checks); integer index tensors are i32 (ids and targets also i64).
#pragma once

#include <span>

#include "core/tensor.h"

namespace olmo::cpu {

// ---- dense -------------------------------------------------------------------------------------

void matmul(const Tensor& out, const Tensor& x, const Tensor& w, bool accumulate);
void matmul_segments(std::span<const Tensor> outs, const Tensor& x, const Tensor& w);
void matmul_backward_input(const Tensor& d_x, const Tensor& d_out, const Tensor& w,
                           bool accumulate);
void matmul_backward_weight(const Tensor& d_w, const Tensor& d_out, const Tensor& x);

void add(const Tensor& out, const Tensor& a, const Tensor& b);
void fill(const Tensor& out, float value);
void scale(const Tensor& out, const Tensor& x, float s);
void argmax(const Tensor& out, const Tensor& x);

// ---- embedding ---------------------------------------------------------------------------------

void embedding(const Tensor& out, const Tensor& ids, const Tensor& table);
void embedding_backward(const Tensor& d_table, const Tensor& d_out, const Tensor& ids);

// ---- norms -------------------------------------------------------------------------------------

void rmsnorm(const Tensor& out, const Tensor& x, const Tensor& w, float eps);
void rmsnorm_backward(const Tensor& d_x, const Tensor& d_w, const Tensor& d_out, const Tensor& x,
                      const Tensor& w, float eps);

void rmsnorm_gated(const Tensor& out, const Tensor& x, const Tensor& z, const Tensor& w, float eps);
void rmsnorm_gated_backward(const Tensor& d_x, const Tensor& d_z, const Tensor& d_w,
                            const Tensor& d_out, const Tensor& x, const Tensor& z, const Tensor& w,
                            float eps);

void l2norm(const Tensor& out, const Tensor& x, float eps, float scale);
void l2norm_backward(const Tensor& d_x, const Tensor& d_out, const Tensor& x, float eps,
                     float scale);

// ---- rotary position embedding
// -------------------------------------------------------------------

void rope(const Tensor& out, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
          float attention_scaling);
void rope_backward(const Tensor& d_x, const Tensor& d_out, const Tensor& positions,
                   const Tensor& inv_freq, float attention_scaling);

// ---- softmax attention
// ---------------------------------------------------------------------------

void attention(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
               const Tensor& kv_lens, int64_t window, float scale);
void attention_backward(const Tensor& d_q, const Tensor& d_k, const Tensor& d_v,
                        const Tensor& d_out, const Tensor& q, const Tensor& k, const Tensor& v,
                        int64_t window, float scale);

void kv_append(const Tensor& cache, const Tensor& x, const Tensor& start);

// ---- MLP
// -----------------------------------------------------------------------------------------

void swiglu(const Tensor& out, const Tensor& gate, const Tensor& up);
void swiglu_backward(const Tensor& d_gate, const Tensor& d_up, const Tensor& d_out,
                     const Tensor& gate, const Tensor& up);

// ---- Gated DeltaNet ----------------------------------------------------------------------------

void conv1d_silu(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& state);
void conv1d_silu_backward(const Tensor& d_x, const Tensor& d_w, const Tensor& d_out,
                          const Tensor& x, const Tensor& w);

void gdn_gates(const Tensor& g, const Tensor& beta, const Tensor& a, const Tensor& b,
               const Tensor& A_log, const Tensor& dt_bias, bool allow_neg_eigval);
void gdn_gates_backward(const Tensor& d_a, const Tensor& d_b, const Tensor& d_A_log,
                        const Tensor& d_dt_bias, const Tensor& d_g, const Tensor& d_beta,
                        const Tensor& a, const Tensor& b, const Tensor& A_log,
                        const Tensor& dt_bias, bool allow_neg_eigval);

void gdn_recurrent(const Tensor& o, const Tensor& state, const Tensor& q, const Tensor& k,
                   const Tensor& v, const Tensor& g, const Tensor& beta);
void gdn_chunked(const Tensor& o, const Tensor& state, const Tensor& q, const Tensor& k,
                 const Tensor& v, const Tensor& g, const Tensor& beta, int64_t chunk);

void gdn_recurrent_backward(const Tensor& d_q, const Tensor& d_k, const Tensor& d_v,
                            const Tensor& d_g, const Tensor& d_beta, const Tensor& d_state0,
                            const Tensor& d_o, const Tensor& d_state_final, const Tensor& q,
                            const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                            const Tensor& state0);
void gdn_chunked_backward(const Tensor& d_q, const Tensor& d_k, const Tensor& d_v,
                          const Tensor& d_g, const Tensor& d_beta, const Tensor& d_state0,
                          const Tensor& d_o, const Tensor& d_state_final, const Tensor& q,
                          const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                          const Tensor& state0, int64_t chunk);

void repeat_heads(const Tensor& out, const Tensor& x);
void repeat_heads_backward(const Tensor& d_x, const Tensor& d_out);

// ---- loss --------------------------------------------------------------------------------------

double cross_entropy(const Tensor& d_logits, const Tensor& logits, const Tensor& targets,
                     float z_loss, int64_t ignore_index, int64_t* count);

// ---- optimiser ---------------------------------------------------------------------------------

double sum_squares(const Tensor& x);
void adamw(const Tensor& param, const Tensor& m, const Tensor& v, const Tensor& grad, float lr,
           float beta1, float beta2, float eps, float weight_decay, int64_t step, float grad_scale);

}  // namespace olmo::cpu
