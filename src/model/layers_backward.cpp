// Backward pass of the attention and Gated DeltaNet layers: the forward of layers.cpp read
// bottom-up, each statement the adjoint of one forward statement (parameter gradients accumulate).
#include <cmath>

#include "model/layers.h"
#include "ops/ops.h"

namespace olmo {

namespace {

// d_x (+)= grads of the SwiGLU MLP out = down(silu(gate(x)) ⊙ up(x)); weight grads accumulate.
void mlp_backward(const Tensor& d_x, bool accumulate, const Tensor& d_out, const Tensor& x,
                  const MlpActs& m, const MlpWeights& w, MlpWeights& g, Arena& arena) {
    const int64_t N = x.size(0), F = m.gate.size(1);
    const DType dt = x.dtype;
    ops::matmul_backward_weight(g.down_proj, d_out, m.act);
    Tensor d_act = arena.alloc(dt, {N, F});
    ops::matmul_backward_input(d_act, d_out, w.down_proj, false);
    Tensor d_gate = arena.alloc(dt, {N, F}), d_up = arena.alloc(dt, {N, F});
    ops::swiglu_backward(d_gate, d_up, d_act, m.gate, m.up);
    ops::matmul_backward_weight(g.gate_proj, d_gate, x);
    ops::matmul_backward_weight(g.up_proj, d_up, x);
    ops::matmul_backward_input(d_x, d_gate, w.gate_proj, accumulate);
    ops::matmul_backward_input(d_x, d_up, w.up_proj, true);
}

}  // namespace

void attention_layer_backward(const Tensor& d_in, const Tensor& d_out, const Tensor& h_in,
                              const AttnActs& a, int64_t layer, const Model& model,
                              const BatchInfo& bt, Weights& grads, Arena& arena) {
    const ModelConfig& c = model.config();
    const AttentionWeights& w = model.w().layers[layer].attn;
    AttentionWeights& g = grads.layers[layer].attn;
    const int64_t N = bt.N, C = c.hidden_size, Hq = c.num_attention_heads,
                  Hkv = c.num_key_value_heads, D = c.head_dim;
    const float eps = float(c.rms_norm_eps);
    const DType dt = h_in.dtype;
    const size_t mark = arena.mark();

    // h_out = h_mid + RMSNorm_pf(mlp(h_mid))
    Tensor d_mid = arena.alloc(dt, {N, C});
    copy_tensor(d_mid, d_out);
    Tensor d_m_raw = arena.alloc(dt, {N, C});
    ops::rmsnorm_backward(d_m_raw, g.post_feedforward_layernorm, d_out, a.m_raw,
                          w.post_feedforward_layernorm, eps);
    mlp_backward(d_mid, true, d_m_raw, a.h_mid, a.mlp, model.w().layers[layer].mlp,
                 grads.layers[layer].mlp, arena);
    // h_mid = h_in + RMSNorm_pa(o_proj(attn))
    Tensor d_o_raw = arena.alloc(dt, {N, C});
    ops::rmsnorm_backward(d_o_raw, g.post_attention_layernorm, d_mid, a.o_raw,
                          w.post_attention_layernorm, eps);
    ops::matmul_backward_weight(g.o_proj, d_o_raw, a.attn.reshape({N, Hq * D}));
    Tensor d_attn = arena.alloc(dt, {bt.B, bt.T, Hq, D});
    ops::matmul_backward_input(d_attn.reshape({N, Hq * D}), d_o_raw, w.o_proj, false);
    Tensor d_q = arena.alloc(dt, {bt.B, bt.T, Hq, D}), d_k = arena.alloc(dt, {bt.B, bt.T, Hkv, D}),
           d_v = arena.alloc(dt, {bt.B, bt.T, Hkv, D});
    const float scale = 1.0f / std::sqrt(float(D));
    if (bt.segments.empty()) {
        ops::attention_backward(d_q, d_k, d_v, d_attn, a.q, a.k, a.v, c.window_for(layer), scale);
    } else {
        for (const Segment& s : bt.segments)
            ops::attention_backward(segment_view(d_q, s), segment_view(d_k, s),
                                    segment_view(d_v, s), segment_view(d_attn, s),
                                    segment_view(a.q, s), segment_view(a.k, s),
                                    segment_view(a.v, s), c.window_for(layer), scale);
    }
    const RopeConfig& rope = c.rope_for(layer);
    if (rope.enabled) {
        ops::rope_backward(d_q.reshape({N, Hq, D}), d_q.reshape({N, Hq, D}), bt.positions,
                           model.inv_freq(layer), rope.attention_scaling());
        ops::rope_backward(d_k.reshape({N, Hkv, D}), d_k.reshape({N, Hkv, D}), bt.positions,
                           model.inv_freq(layer), rope.attention_scaling());
    }
    Tensor d_q_raw = arena.alloc(dt, {N, Hq * D}), d_k_raw = arena.alloc(dt, {N, Hkv * D});
    ops::rmsnorm_backward(d_q_raw, g.q_norm, d_q.reshape({N, Hq * D}), a.q_raw, w.q_norm, eps);
    ops::rmsnorm_backward(d_k_raw, g.k_norm, d_k.reshape({N, Hkv * D}), a.k_raw, w.k_norm, eps);
    ops::matmul_backward_weight(g.q_proj, d_q_raw, h_in);
    ops::matmul_backward_weight(g.k_proj, d_k_raw, h_in);
    ops::matmul_backward_weight(g.v_proj, d_v.reshape({N, Hkv * D}), h_in);
    ops::matmul_backward_input(d_mid, d_q_raw, w.q_proj, true);
    ops::matmul_backward_input(d_mid, d_k_raw, w.k_proj, true);
    ops::matmul_backward_input(d_mid, d_v.reshape({N, Hkv * D}), w.v_proj, true);
    copy_tensor(d_in, d_mid);
    arena.rewind(mark);
}

void gdn_layer_backward(const Tensor& d_in, const Tensor& d_out, const Tensor& h_in,
                        const GdnActs& a, int64_t layer, const Model& model, const BatchInfo& bt,
                        Weights& grads, Arena& arena) {
    const ModelConfig& c = model.config();
    const GdnWeights& w = model.w().layers[layer].gdn;
    GdnWeights& g = grads.layers[layer].gdn;
    const int64_t B = bt.B, T = bt.T, N = bt.N, C = c.hidden_size;
    const int64_t Hk = c.linear_num_key_heads, H = c.linear_num_value_heads;
    const int64_t Dk = c.linear_key_head_dim, Dv = c.linear_value_head_dim, Kd = c.key_dim(),
                  Vd = c.value_dim();
    const float eps = float(c.rms_norm_eps);
    const DType dt = h_in.dtype;
    const size_t mark = arena.mark();

    // h_out = h_mid + mlp(RMSNorm_pa(h_mid))
    Tensor d_mid = arena.alloc(dt, {N, C});
    copy_tensor(d_mid, d_out);
    Tensor d_x2 = arena.alloc(dt, {N, C});
    mlp_backward(d_x2, false, d_out, a.x2, a.mlp, model.w().layers[layer].mlp,
                 grads.layers[layer].mlp, arena);
    Tensor d_norm = arena.alloc(dt, {N, C});
    ops::rmsnorm_backward(d_norm, g.post_attention_layernorm, d_x2, a.h_mid,
                          w.post_attention_layernorm, eps);
    ops::add(d_mid, d_mid, d_norm);
    // h_mid = h_in + o_proj(RMSNormGated(o, z))
    ops::matmul_backward_weight(g.o_proj, d_mid, a.y.reshape({N, Vd}));
    Tensor d_y = arena.alloc(dt, {N * H, Dv});
    ops::matmul_backward_input(d_y.reshape({N, Vd}), d_mid, w.o_proj, false);
    Tensor d_o = arena.alloc(dt, {B, T, H, Dv}), d_z = arena.alloc(dt, {N, Vd});
    ops::rmsnorm_gated_backward(d_o.reshape({N * H, Dv}), d_z.reshape({N * H, Dv}), g.o_norm, d_y,
                                a.o.reshape({N * H, Dv}), a.z.reshape({N * H, Dv}), w.o_norm,
                                kGdnNormEps);
    // o = gated delta rule(q, k, v, g, β) from a zero state
    Tensor d_q_rep = arena.alloc(dt, {B, T, H, Dk}), d_k_rep = arena.alloc(dt, {B, T, H, Dk});
    Tensor d_v = arena.alloc(dt, {B, T, Vd});
    Tensor d_g = arena.alloc(DType::f32, {B, T, H}), d_beta = arena.alloc(DType::f32, {B, T, H});
    if (bt.segments.empty()) {
        ops::gdn_chunked_backward(d_q_rep, d_k_rep, d_v.reshape({B, T, H, Dv}), d_g, d_beta,
                                  Tensor(), d_o, Tensor(), a.q_rep, a.k_rep,
                                  a.v_conv.reshape({B, T, H, Dv}), a.g, a.beta, Tensor());
    } else {
        const Tensor dv4 = d_v.reshape({B, T, H, Dv}), v4 = a.v_conv.reshape({B, T, H, Dv});
        for (const Segment& s : bt.segments)
            ops::gdn_chunked_backward(
                segment_view(d_q_rep, s), segment_view(d_k_rep, s), segment_view(dv4, s),
                segment_view(d_g, s), segment_view(d_beta, s), Tensor(), segment_view(d_o, s),
                Tensor(), segment_view(a.q_rep, s), segment_view(a.k_rep, s), segment_view(v4, s),
                segment_view(a.g, s), segment_view(a.beta, s), Tensor());
    }
    Tensor d_a = arena.alloc(dt, {N, H}), d_b = arena.alloc(dt, {N, H});
    ops::gdn_gates_backward(d_a, d_b, g.A_log, g.dt_bias, d_g.reshape({N, H}),
                            d_beta.reshape({N, H}), a.a, a.b, w.A_log, w.dt_bias,
                            c.linear_allow_neg_eigval);
    Tensor d_q = d_q_rep, d_k = d_k_rep;
    if (H != Hk) {
        d_q = arena.alloc(dt, {B, T, Hk, Dk});
        d_k = arena.alloc(dt, {B, T, Hk, Dk});
        ops::repeat_heads_backward(d_q.reshape({N, Hk, Dk}), d_q_rep.reshape({N, H, Dk}));
        ops::repeat_heads_backward(d_k.reshape({N, Hk, Dk}), d_k_rep.reshape({N, H, Dk}));
    }
    Tensor d_q_conv = arena.alloc(dt, {B, T, Kd}), d_k_conv = arena.alloc(dt, {B, T, Kd});
    ops::l2norm_backward(d_q_conv.reshape({N * Hk, Dk}), d_q.reshape({N * Hk, Dk}),
                         a.q_conv.reshape({N * Hk, Dk}), kL2NormEps, 1.0f / std::sqrt(float(Dk)));
    ops::l2norm_backward(d_k_conv.reshape({N * Hk, Dk}), d_k.reshape({N * Hk, Dk}),
                         a.k_conv.reshape({N * Hk, Dk}), kL2NormEps, 1.0f);
    Tensor d_q_pre = arena.alloc(dt, {B, T, Kd}), d_k_pre = arena.alloc(dt, {B, T, Kd}),
           d_v_pre = arena.alloc(dt, {B, T, Vd});
    if (bt.segments.empty()) {
        ops::conv1d_silu_backward(d_q_pre, g.conv_q, d_q_conv, a.q_pre, w.conv_q);
        ops::conv1d_silu_backward(d_k_pre, g.conv_k, d_k_conv, a.k_pre, w.conv_k);
        ops::conv1d_silu_backward(d_v_pre, g.conv_v, d_v, a.v_pre, w.conv_v);
    } else {
        for (const Segment& s : bt.segments) {
            ops::conv1d_silu_backward(segment_view(d_q_pre, s), g.conv_q, segment_view(d_q_conv, s),
                                      segment_view(a.q_pre, s), w.conv_q);
            ops::conv1d_silu_backward(segment_view(d_k_pre, s), g.conv_k, segment_view(d_k_conv, s),
                                      segment_view(a.k_pre, s), w.conv_k);
            ops::conv1d_silu_backward(segment_view(d_v_pre, s), g.conv_v, segment_view(d_v, s),
                                      segment_view(a.v_pre, s), w.conv_v);
        }
    }
    // The six projections of x = RMSNorm_in(h_in).
    Tensor d_x = arena.alloc(dt, {N, C});
    const std::pair<Tensor, std::pair<const Tensor*, Tensor*>> projections[] = {
        {d_q_pre.reshape({N, Kd}), {&w.q_proj, &g.q_proj}},
        {d_k_pre.reshape({N, Kd}), {&w.k_proj, &g.k_proj}},
        {d_v_pre.reshape({N, Vd}), {&w.v_proj, &g.v_proj}},
        {d_a, {&w.a_proj, &g.a_proj}},
        {d_b, {&w.b_proj, &g.b_proj}},
        {d_z, {&w.g_proj, &g.g_proj}}};
    bool first = true;
    for (const auto& [d_p, wg] : projections) {
        ops::matmul_backward_weight(*wg.second, d_p, a.x);
        ops::matmul_backward_input(d_x, d_p, *wg.first, !first);
        first = false;
    }
    ops::rmsnorm_backward(d_norm, g.input_layernorm, d_x, h_in, w.input_layernorm, eps);
    ops::add(d_in, d_mid, d_norm);
    arena.rewind(mark);
}

}  // namespace olmo
