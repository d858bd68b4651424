// Forward pass of the attention and Gated DeltaNet layers (spec §2.2-2.6), one statement per
// equation.
#include <cmath>
#include <vector>

#include "model/layers.h"
#include "ops/ops.h"

namespace olmo {

namespace {
// Below this many new tokens the recurrent form is used (decode, short continuations); above,
// chunks.
constexpr int64_t kChunkedMinTokens = 16;
}  // namespace

BatchInfo make_batch_info(Arena& arena, int64_t B, int64_t T, const std::vector<int64_t>* lengths,
                          int64_t slot0) {
    BatchInfo bt;
    bt.B = B;
    bt.T = T;
    bt.N = B * T;
    std::vector<int32_t> positions(bt.N), start(B), kv_lens(B);
    for (int64_t b = 0; b < B; ++b) {
        const int64_t len = lengths ? (*lengths)[slot0 + b] : 0;
        start[b] = int32_t(len);
        kv_lens[b] = int32_t(len + T);
        for (int64_t t = 0; t < T; ++t) positions[b * T + t] = int32_t(len + t);
    }
    bt.positions = arena.upload_i32(positions);
    bt.start = arena.upload_i32(start);
    bt.kv_lens = arena.upload_i32(kv_lens);
    return bt;
}

void mask_documents(BatchInfo& bt, const std::vector<int32_t>& ids, int32_t separator,
                    Arena& arena) {
    OLMO_CHECK(int64_t(ids.size()) == bt.N, "mask_documents: ids do not match the batch");
    bt.segments.clear();
    std::vector<int32_t> positions(bt.N);
    for (int64_t b = 0; b < bt.B; ++b) {
        int64_t start = 0;
        for (int64_t t = 0; t < bt.T; ++t) {
            positions[b * bt.T + t] = int32_t(t - start);
            const bool ends = ids[b * bt.T + t] == separator || t + 1 == bt.T;
            if (ends) {
                bt.segments.push_back({b, start, t + 1 - start, Tensor()});
                start = t + 1;
            }
        }
    }
    for (Segment& s : bt.segments) {
        const int32_t len = int32_t(s.len);
        s.kv_len = arena.upload_i32(std::span<const int32_t>(&len, 1));
    }
    bt.positions = arena.upload_i32(positions);
}

Tensor segment_view(const Tensor& x, const Segment& s) {
    Tensor t = x.select0(s.b).narrow0(s.start, s.len);
    std::vector<int64_t> dims = {1};
    for (int d = 0; d < t.ndim; ++d) dims.push_back(t.shape[d]);
    return t.reshape(std::span<const int64_t>(dims));
}

static MlpActs plan_mlp(Arena& arena, const ModelConfig& c, int64_t N, DType dt, bool keep) {
    MlpActs m;
    m.gate = arena.alloc(dt, {N, c.intermediate_size});
    m.up = arena.alloc(dt, {N, c.intermediate_size});
    m.act = keep ? arena.alloc(dt, {N, c.intermediate_size}) : m.gate;
    return m;
}

AttnActs plan_attention_acts(Arena& arena, const ModelConfig& c, int64_t B, int64_t T, DType dt,
                             bool keep) {
    const int64_t N = B * T, C = c.hidden_size, Hq = c.num_attention_heads,
                  Hkv = c.num_key_value_heads, D = c.head_dim;
    AttnActs a;
    a.q_raw = arena.alloc(dt, {N, Hq * D});
    a.k_raw = arena.alloc(dt, {N, Hkv * D});
    a.q = keep ? arena.alloc(dt, {B, T, Hq, D}) : a.q_raw.reshape({B, T, Hq, D});
    a.k = keep ? arena.alloc(dt, {B, T, Hkv, D}) : a.k_raw.reshape({B, T, Hkv, D});
    a.v = arena.alloc(dt, {B, T, Hkv, D});
    a.attn = arena.alloc(dt, {B, T, Hq, D});
    a.o_raw = arena.alloc(dt, {N, C});
    a.o = keep ? arena.alloc(dt, {N, C}) : a.o_raw;
    a.h_mid =
        keep ? arena.alloc(dt, {N, C}) : Tensor();  // inference: the residual is updated in place
    a.mlp = plan_mlp(arena, c, N, dt, keep);
    a.m_raw = a.o_raw;  // the attention output is dead once added to the residual
    a.m = a.o;
    if (keep) {
        a.m_raw = arena.alloc(dt, {N, C});
        a.m = arena.alloc(dt, {N, C});
    }
    return a;
}

GdnActs plan_gdn_acts(Arena& arena, const ModelConfig& c, int64_t B, int64_t T, DType dt,
                      bool keep) {
    const int64_t N = B * T, C = c.hidden_size, Hk = c.linear_num_key_heads,
                  H = c.linear_num_value_heads;
    const int64_t Dk = c.linear_key_head_dim, Dv = c.linear_value_head_dim, Kd = c.key_dim(),
                  Vd = c.value_dim();
    GdnActs a;
    a.x = arena.alloc(dt, {N, C});
    a.q_pre = arena.alloc(dt, {B, T, Kd});
    a.k_pre = arena.alloc(dt, {B, T, Kd});
    a.v_pre = arena.alloc(dt, {B, T, Vd});
    a.a = arena.alloc(dt, {N, H});
    a.b = arena.alloc(dt, {N, H});
    a.z = arena.alloc(dt, {N, Vd});
    // The conv reads up to W−1 earlier rows, so its output never aliases its input.
    a.q_conv = arena.alloc(dt, {B, T, Kd});
    a.k_conv = arena.alloc(dt, {B, T, Kd});
    a.v_conv = arena.alloc(dt, {B, T, Vd});
    a.q = keep ? arena.alloc(dt, {B, T, Hk, Dk}) : a.q_conv.reshape({B, T, Hk, Dk});
    a.k = keep ? arena.alloc(dt, {B, T, Hk, Dk}) : a.k_conv.reshape({B, T, Hk, Dk});
    a.q_rep = H == Hk ? a.q : arena.alloc(dt, {B, T, H, Dk});
    a.k_rep = H == Hk ? a.k : arena.alloc(dt, {B, T, H, Dk});
    a.g = arena.alloc(DType::f32, {B, T, H});
    a.beta = arena.alloc(DType::f32, {B, T, H});
    a.o = arena.alloc(dt, {B, T, H, Dv});
    a.y = keep ? arena.alloc(dt, {N * H, Dv}) : a.o.reshape({N * H, Dv});
    a.out = arena.alloc(dt, {N, C});
    a.h_mid = keep ? arena.alloc(dt, {N, C}) : Tensor();
    a.x2 = keep ? arena.alloc(dt, {N, C}) : a.x;
    a.mlp = plan_mlp(arena, c, N, dt, keep);
    a.m = keep ? arena.alloc(dt, {N, C}) : a.out;
    return a;
}

using OutsAndWeights = std::initializer_list<std::pair<Tensor, Tensor>>;

// The weights of several products as one matrix when the weights table placed them next to each
// other in memory (q|k|v|a|b|g of a GDN layer, q|k|v of attention), else an empty tensor.
static Tensor adjacent_weights(OutsAndWeights outs_and_weights) {
    int64_t rows = 0;
    const char* next = nullptr;
    for (const auto& [out, w] : outs_and_weights) {
        if (next && static_cast<const char*>(w.data) != next) return Tensor();
        next = static_cast<const char*>(w.data) + w.nbytes();
        rows += w.size(0);
    }
    const Tensor& w0 = outs_and_weights.begin()->second;
    return Tensor(w0.data, w0.dtype, w0.device, {rows, w0.size(1)});
}

static std::vector<Tensor> outputs_of(OutsAndWeights outs_and_weights) {
    std::vector<Tensor> outs;
    for (const auto& ow : outs_and_weights) outs.push_back(ow.first);
    return outs;
}

// outs[s] = x · w[s]ᵀ for several weights (x [N, I], outs [N, O_s]): one pass over them when they
// are adjacent, else one product each.
static void project(const Tensor& x, OutsAndWeights outs_and_weights) {
    const Tensor w = adjacent_weights(outs_and_weights);
    if (!w.empty()) {
        ops::matmul_segments(outputs_of(outs_and_weights), x, w);
        return;
    }
    for (const auto& [out, wi] : outs_and_weights) ops::matmul(out, x, wi);
}

// The products of project() with x = RMSNorm(h) (into `normed`), the norm inside the products when
// h's producer left its sums of squares.
static void project_normed(const Tensor& normed, const Tensor& h, const Tensor& norm_w, float eps,
                           const SumSquares& h_sumsq, OutsAndWeights outs_and_weights) {
    const Tensor w = adjacent_weights(outs_and_weights);
    if (h_sumsq.count > 0 && !w.empty()) {
        ops::rmsnorm_matmul_segments(outputs_of(outs_and_weights), normed, h, norm_w, eps, h_sumsq,
                                     w);
        return;
    }
    ops::rmsnorm(normed, h, norm_w, eps);
    project(normed, outs_and_weights);
}

// SwiGLU MLP (spec §2.5): out[N, C] (+)= down(silu(gate(x)) ⊙ up(x)).
static void mlp_forward(const Tensor& out, const Tensor& x, const MlpActs& m, const MlpWeights& w,
                        bool accumulate = false) {
    ops::matmul_swiglu(m.act, m.gate, m.up, x, w.gate_proj, w.up_proj);
    ops::matmul(out, m.act, w.down_proj, accumulate);
}

// h = r + RMSNorm(x), the post-norms of attention layers. Training keeps RMSNorm(x) in `normed`;
// inference needs only the sum, one fused op.
static void add_post_norm(const Tensor& h, const Tensor& r, const Tensor& x, const Tensor& normed,
                          const Tensor& w, float eps, bool keep) {
    if (!keep) {
        ops::rmsnorm_add(h, r, x, w, eps);
        return;
    }
    ops::rmsnorm(normed, x, w, eps);
    ops::add(h, r, normed);
}

void attention_layer_forward(const Tensor& h_out, const Tensor& h_in, const AttnActs& a,
                             int64_t layer, const Model& model, InferenceState* state,
                             int64_t slot0, const BatchInfo& bt, SumSquares* h_sumsq) {
    const ModelConfig& c = model.config();
    const AttentionWeights& w = model.w().layers[layer].attn;
    const int64_t B = bt.B, T = bt.T, N = bt.N, Hq = c.num_attention_heads,
                  Hkv = c.num_key_value_heads, D = c.head_dim;
    const float eps = float(c.rms_norm_eps);
    project(h_in, {{a.q_raw, w.q_proj},
                   {a.k_raw, w.k_proj},
                   {a.v.reshape({N, Hkv * D}), w.v_proj}});  // (2.4.1)
    const RopeConfig& rope = c.rope_for(layer);
    Tensor k_all = a.k, v_all = a.v;
    if (state) {  // QK-norm, RoPE and the KV-cache appends in one op
        InferenceState::Layer& st = state->layers[layer];
        k_all = st.k->narrow0(slot0, B);
        v_all = st.v->narrow0(slot0, B);
        ops::attention_prologue(a.q, a.k, k_all, v_all, a.q_raw, a.k_raw, a.v, w.q_norm, w.k_norm,
                                bt.positions, rope.enabled ? model.inv_freq(layer) : Tensor(),
                                bt.start, eps, rope.attention_scaling());
    } else {
        // QK-norm, full width (2.4.2)
        ops::rmsnorm(a.q.reshape({N, Hq * D}), a.q_raw, w.q_norm, eps);
        ops::rmsnorm(a.k.reshape({N, Hkv * D}), a.k_raw, w.k_norm, eps);
        if (rope.enabled) {  // (2.4.4)
            ops::rope(a.q.reshape({N, Hq, D}), a.q.reshape({N, Hq, D}), bt.positions,
                      model.inv_freq(layer), rope.attention_scaling());
            ops::rope(a.k.reshape({N, Hkv, D}), a.k.reshape({N, Hkv, D}), bt.positions,
                      model.inv_freq(layer), rope.attention_scaling());
        }
    }
    const float scale = 1.0f / std::sqrt(float(D));
    if (bt.segments.empty()) {
        ops::attention(a.attn, a.q, k_all, v_all, bt.kv_lens, c.window_for(layer),
                       scale);  // (2.4.5)
    } else {
        OLMO_CHECK(!state, "document masking is for training (no decoding state)");
        for (const Segment& s : bt.segments)
            ops::attention(segment_view(a.attn, s), segment_view(a.q, s), segment_view(a.k, s),
                           segment_view(a.v, s), s.kv_len, c.window_for(layer), scale);
    }
    ops::matmul(a.o_raw, a.attn.reshape({N, Hq * D}), w.o_proj);  // (2.4.6)
    const bool keep = !a.h_mid.empty();
    const Tensor h_mid = keep ? a.h_mid : h_out;
    // h = r + RMSNorm_pa(attn(r))
    add_post_norm(h_mid, h_in, a.o_raw, a.o, w.post_attention_layernorm, eps, keep);
    mlp_forward(a.m_raw, h_mid, a.mlp, model.w().layers[layer].mlp);
    // h = r + RMSNorm_pf(mlp(r))
    add_post_norm(h_out, h_mid, a.m_raw, a.m, w.post_feedforward_layernorm, eps, keep);
    if (h_sumsq) h_sumsq->count = 0;
    (void)T;
}

void gdn_layer_forward(const Tensor& h_out, const Tensor& h_in, const GdnActs& a, int64_t layer,
                       const Model& model, InferenceState* state, int64_t slot0,
                       const BatchInfo& bt, Arena& arena, SumSquares* h_sumsq,
                       const Tensor& out_norm_w) {
    const ModelConfig& c = model.config();
    const GdnWeights& w = model.w().layers[layer].gdn;
    const int64_t B = bt.B, T = bt.T, N = bt.N;
    const int64_t Hk = c.linear_num_key_heads, H = c.linear_num_value_heads;
    const int64_t Dk = c.linear_key_head_dim, Dv = c.linear_value_head_dim, Vd = c.value_dim();
    const float eps = float(c.rms_norm_eps);
    // In place (inference) the products add straight into the residual stream, and may leave its
    // sums of squares for the norm after them; for training the intermediates are kept.
    const bool in_place = a.h_mid.empty() && h_out.data == h_in.data;
    SumSquares no_sums;
    SumSquares& sumsq = h_sumsq && in_place ? *h_sumsq : no_sums;
    // x = RMSNorm_in(h); q̃, k̃, ṽ, decay input a, write-strength input b, output gate z      (2.6.1)
    project_normed(a.x, h_in, w.input_layernorm, eps, sumsq,
                   {{a.q_pre.reshape({N, -1}), w.q_proj},
                    {a.k_pre.reshape({N, -1}), w.k_proj},
                    {a.v_pre.reshape({N, -1}), w.v_proj},
                    {a.a, w.a_proj},
                    {a.b, w.b_proj},
                    {a.z, w.g_proj}});
    Tensor conv_q, conv_k, conv_v, S;
    if (state) {
        InferenceState::Layer& st = state->layers[layer];
        conv_q = st.conv_q->narrow0(slot0, B);
        conv_k = st.conv_k->narrow0(slot0, B);
        conv_v = st.conv_v->narrow0(slot0, B);
        S = st.recurrent->narrow0(slot0, B);
    } else {
        S = arena.alloc(DType::f32, {B, H, Dk, Dv});
        ops::fill(S, 0.0f);
    }
    if (state && T == 1 && bt.segments.empty()) {  // decoding: (2.6.2-8) in one op
        ops::gdn_decode_step(a.y, S, conv_q, conv_k, conv_v, a.q_pre, a.k_pre, a.v_pre, a.a, a.b,
                             a.z, w.conv_q, w.conv_k, w.conv_v, w.A_log, w.dt_bias, w.o_norm,
                             c.linear_allow_neg_eigval, kL2NormEps, kGdnNormEps);
    } else {
        if (bt.segments.empty()) {
            ops::conv1d_silu(a.q_conv, a.q_pre, w.conv_q, conv_q);  // silu(conv4(q̃))   (2.6.2)
            ops::conv1d_silu(a.k_conv, a.k_pre, w.conv_k, conv_k);
            ops::conv1d_silu(a.v_conv, a.v_pre, w.conv_v, conv_v);
        } else {  // each document starts with an empty conv history
            OLMO_CHECK(!state, "document masking is for training (no decoding state)");
            for (const Segment& s : bt.segments) {
                ops::conv1d_silu(segment_view(a.q_conv, s), segment_view(a.q_pre, s), w.conv_q,
                                 Tensor());
                ops::conv1d_silu(segment_view(a.k_conv, s), segment_view(a.k_pre, s), w.conv_k,
                                 Tensor());
                ops::conv1d_silu(segment_view(a.v_conv, s), segment_view(a.v_pre, s), w.conv_v,
                                 Tensor());
            }
        }
        ops::l2norm(a.q.reshape({N * Hk, Dk}), a.q_conv.reshape({N * Hk, Dk}), kL2NormEps,
                    1.0f / std::sqrt(float(Dk)));  // q̂ = q/‖q‖·Dk^-½   (2.6.6)
        ops::l2norm(a.k.reshape({N * Hk, Dk}), a.k_conv.reshape({N * Hk, Dk}), kL2NormEps, 1.0f);
        if (H != Hk) {  // GVA (2.6.3)
            ops::repeat_heads(a.q_rep.reshape({N, H, Dk}), a.q.reshape({N, Hk, Dk}));
            ops::repeat_heads(a.k_rep.reshape({N, H, Dk}), a.k.reshape({N, Hk, Dk}));
        }
        ops::gdn_gates(a.g.reshape({N, H}), a.beta.reshape({N, H}), a.a, a.b, w.A_log, w.dt_bias,
                       c.linear_allow_neg_eigval);  // g, β            (2.6.4-5)
        const Tensor v = a.v_conv.reshape({B, T, H, Dv});
        if (!bt.segments.empty()) {                 // S_t, o_t          (2.6.7)
            for (const Segment& s : bt.segments) {  // each document from a zero state
                Tensor S0 = arena.alloc(DType::f32, {1, H, Dk, Dv});
                ops::fill(S0, 0.0f);
                ops::gdn_chunked(segment_view(a.o, s), S0, segment_view(a.q_rep, s),
                                 segment_view(a.k_rep, s), segment_view(v, s), segment_view(a.g, s),
                                 segment_view(a.beta, s));
            }
        } else if (T >= kChunkedMinTokens || !state) {
            ops::gdn_chunked(a.o, S, a.q_rep, a.k_rep, v, a.g, a.beta);
        } else {
            ops::gdn_recurrent(a.o, S, a.q_rep, a.k_rep, v, a.g, a.beta);
        }
        ops::rmsnorm_gated(a.y, a.o.reshape({N * H, Dv}), a.z.reshape({N * H, Dv}), w.o_norm,
                           kGdnNormEps);  // RMSNorm(o) ⊙ silu(z) (2.6.8)
    }
    // h = r + GDN(RMSNorm_in(r)); h = r + MLP(RMSNorm_pa(r)).
    const Tensor h_mid = a.h_mid.empty() ? h_out : a.h_mid;
    const MlpWeights& mlp = model.w().layers[layer].mlp;
    if (in_place) {
        ops::matmul_sumsq(h_mid, sumsq, a.y.reshape({N, Vd}), w.o_proj, true,  // (2.6.9)
                          w.post_attention_layernorm);
        const MlpActs& m = a.mlp;
        ops::rmsnorm_matmul_swiglu(m.act, m.gate, m.up, a.x2, h_mid, w.post_attention_layernorm,
                                   eps, sumsq, mlp.gate_proj, mlp.up_proj);
        ops::matmul_sumsq(h_out, sumsq, m.act, mlp.down_proj, true, out_norm_w);
        return;
    }
    ops::matmul(a.out, a.y.reshape({N, Vd}), w.o_proj);
    ops::add(h_mid, h_in, a.out);
    ops::rmsnorm(a.x2, h_mid, w.post_attention_layernorm, eps);
    mlp_forward(a.m, a.x2, a.mlp, mlp);
    ops::add(h_out, h_mid, a.m);
    if (h_sumsq) h_sumsq->count = 0;
}

}  // namespace olmo
