#include "model/model.h"

#include <cmath>

#include "ops/ops.h"

namespace olmo {

Model Model::load(const std::string& dir, Device device, DType dtype) {
    ModelConfig config = ModelConfig::from_file(dir);
    ModelWeights weights(config, device, dtype);
    weights.load(dir);
    return Model(std::move(config), std::move(weights));
}

Model::Model(ModelConfig config, ModelWeights weights)
    : config_(std::move(config)), weights_(std::move(weights)) {
    auto make = [&](const RopeConfig& r) {
        if (!r.enabled) return OwnedTensor();
        std::vector<float> inv = r.inv_freq(config_.head_dim);
        OwnedTensor t(DType::f32, {int64_t(inv.size())}, device());
        copy_tensor(t, Tensor(inv.data(), DType::f32, Device::cpu, {int64_t(inv.size())}));
        return t;
    };
    inv_freq_full_ = make(config_.rope_full);
    inv_freq_sliding_ = make(config_.rope_sliding);
}

const Tensor& Model::inv_freq(int64_t layer) const {
    return config_.layer_types[layer] == LayerType::sliding_attention ? inv_freq_sliding_.view()
                                                                       : inv_freq_full_.view();
}

InferenceState::InferenceState(const Model& model, int64_t slots, int64_t max_len) : max_len_(max_len) {
    const ModelConfig& c = model.config();
    OLMO_CHECK(slots > 0 && max_len > 0, "state needs slots and max_len > 0");
    const Device dev = model.device();
    const DType dt = model.dtype();
    layers.resize(c.num_hidden_layers);
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
        Layer& l = layers[i];
        if (c.is_attention(i)) {
            l.k = OwnedTensor(dt, {slots, max_len, c.num_key_value_heads, c.head_dim}, dev);
            l.v = OwnedTensor(dt, {slots, max_len, c.num_key_value_heads, c.head_dim}, dev);
        } else {
            const int64_t W1 = c.linear_conv_kernel_dim - 1;
            l.conv_q = OwnedTensor(dt, {slots, W1, c.key_dim()}, dev);
            l.conv_k = OwnedTensor(dt, {slots, W1, c.key_dim()}, dev);
            l.conv_v = OwnedTensor(dt, {slots, W1, c.value_dim()}, dev);
            l.recurrent = OwnedTensor(DType::f32,
                                      {slots, c.linear_num_value_heads, c.linear_key_head_dim,
                                       c.linear_value_head_dim},
                                      dev);
        }
    }
    length.assign(slots, 0);
    reset();
}

void InferenceState::reset() {
    for (int64_t s = 0; s < slots(); ++s) reset_slot(s);
}

void InferenceState::reset_slot(int64_t s) {
    OLMO_CHECK(s >= 0 && s < slots(), "slot ", s, " out of range");
    for (Layer& l : layers) {
        // The KV cache needs no clearing: only the first `length` rows are ever read.
        for (OwnedTensor* t : {&l.conv_q, &l.conv_k, &l.conv_v, &l.recurrent})
            if (t->allocated()) ops::fill(t->view().select0(s), 0.0f);
    }
    length[s] = 0;
}

void InferenceState::copy_slot(int64_t dst, const InferenceState& from, int64_t src) {
    OLMO_CHECK(from.layers.size() == layers.size() && from.max_len_ == max_len_, "copy_slot: states differ");
    for (size_t i = 0; i < layers.size(); ++i) {
        const Layer& a = from.layers[i];
        Layer& b = layers[i];
        for (auto [x, y] : {std::pair{&a.k, &b.k}, std::pair{&a.v, &b.v}, std::pair{&a.conv_q, &b.conv_q},
                            std::pair{&a.conv_k, &b.conv_k}, std::pair{&a.conv_v, &b.conv_v},
                            std::pair{&a.recurrent, &b.recurrent}})
            if (x->allocated()) copy_tensor(y->view().select0(dst), x->view().select0(src));
    }
    length[dst] = from.length[src];
}

std::vector<int32_t> validate_ids(const Tensor& ids, int64_t vocab_size) {
    if (ids.device != Device::cpu) fail("[input] token ids must be on the host");
    if (ids.dtype != DType::i64 && ids.dtype != DType::i32)
        fail("[input] token ids must be int64 or int32, got ", dtype_name(ids.dtype));
    if (ids.numel() == 0) fail("[input] no token ids (empty input)");
    std::vector<int32_t> out(ids.numel());
    for (int64_t i = 0; i < ids.numel(); ++i) {
        const int64_t v = ids.dtype == DType::i64 ? ids.as<int64_t>()[i] : ids.as<int32_t>()[i];
        if (v < 0 || v >= vocab_size)
            fail("[input] token id ", v, " at position ", i, " is outside the vocabulary [0, ", vocab_size, ")");
        out[i] = int32_t(v);
    }
    return out;
}

namespace {

// Below this many new tokens the recurrent form is used (decode, short continuations); above, chunks.
constexpr int64_t kChunkedMinTokens = 16;
constexpr float kGdnNormEps = 1e-5f;  // gated output RMSNorm, hard-coded in HF (spec §2.6.8)
constexpr float kL2NormEps = 1e-6f;   // q/k L2 norm inside the GDN kernel (spec §2.6.6)

struct Batch {
    int64_t B, T, N;        // N = B·T rows
    Tensor positions;       // [N] i32: absolute position of each token
    Tensor start;           // [B] i32: tokens already in each slot
    Tensor kv_lens;         // [B] i32: start + T
};

// SwiGLU MLP: down(silu(gate(x)) ⊙ up(x)).  x [N, C] -> out [N, C]          (spec §2.5)
void mlp_forward(const Tensor& out, const Tensor& x, const MlpWeights& w, const ModelConfig& c, Arena& arena) {
    const int64_t N = x.size(0), F = c.intermediate_size;
    Tensor gate = arena.alloc(x.dtype, {N, F});
    Tensor up = arena.alloc(x.dtype, {N, F});
    ops::matmul(gate, x, w.gate_proj);
    ops::matmul(up, x, w.up_proj);
    ops::swiglu(gate, gate, up);  // in place: gate <- silu(gate) ⊙ up
    ops::matmul(out, gate, w.down_proj);
}

// Attention layer, post-norm (spec §2.2, §2.4). h [N, C] is updated in place.
void attention_layer(const Tensor& h, const LayerWeights& lw, int64_t layer, const Model& model,
                     InferenceState* state, int64_t slot0, const Batch& bt, Arena& arena) {
    const ModelConfig& c = model.config();
    const AttentionWeights& w = lw.attn;
    const int64_t N = bt.N, C = c.hidden_size, Hq = c.num_attention_heads, Hkv = c.num_key_value_heads,
                  D = c.head_dim;
    const DType dt = h.dtype;
    Tensor q = arena.alloc(dt, {N, Hq * D});
    Tensor k = arena.alloc(dt, {N, Hkv * D});
    Tensor v = arena.alloc(dt, {N, Hkv * D});
    ops::matmul(q, h, w.q_proj);
    ops::matmul(k, h, w.k_proj);
    ops::matmul(v, h, w.v_proj);
    ops::rmsnorm(q, q, w.q_norm, float(c.rms_norm_eps));  // QK-norm over the whole projection
    ops::rmsnorm(k, k, w.k_norm, float(c.rms_norm_eps));
    const RopeConfig& rope = c.rope_for(layer);
    if (rope.enabled) {
        ops::rope(q.reshape({N, Hq, D}), q.reshape({N, Hq, D}), bt.positions, model.inv_freq(layer),
                  rope.attention_scaling());
        ops::rope(k.reshape({N, Hkv, D}), k.reshape({N, Hkv, D}), bt.positions, model.inv_freq(layer),
                  rope.attention_scaling());
    }
    Tensor k_all = k.reshape({bt.B, bt.T, Hkv, D}), v_all = v.reshape({bt.B, bt.T, Hkv, D});
    if (state) {
        InferenceState::Layer& st = state->layers[layer];
        k_all = st.k->narrow0(slot0, bt.B);
        v_all = st.v->narrow0(slot0, bt.B);
        ops::kv_append(k_all, k.reshape({bt.B, bt.T, Hkv, D}), bt.start);
        ops::kv_append(v_all, v.reshape({bt.B, bt.T, Hkv, D}), bt.start);
    }
    Tensor attn = arena.alloc(dt, {bt.B, bt.T, Hq, D});
    ops::attention(attn, q.reshape({bt.B, bt.T, Hq, D}), k_all, v_all, bt.kv_lens, c.window_for(layer),
                   1.0f / std::sqrt(float(D)));
    Tensor o = arena.alloc(dt, {N, C});
    ops::matmul(o, attn.reshape({N, Hq * D}), w.o_proj);
    ops::rmsnorm(o, o, w.post_attention_layernorm, float(c.rms_norm_eps));
    ops::add(h, h, o);                                   // h = r + RMSNorm_pa(attn(h))
    mlp_forward(o, h, lw.mlp, c, arena);
    ops::rmsnorm(o, o, w.post_feedforward_layernorm, float(c.rms_norm_eps));
    ops::add(h, h, o);                                   // h = r + RMSNorm_pf(mlp(h))
}

// Gated DeltaNet layer, pre-norm (spec §2.2, §2.6). h [N, C] is updated in place.
void gdn_layer(const Tensor& h, const LayerWeights& lw, int64_t layer, const Model& model,
               InferenceState* state, int64_t slot0, const Batch& bt, Arena& arena) {
    const ModelConfig& c = model.config();
    const GdnWeights& w = lw.gdn;
    const int64_t B = bt.B, T = bt.T, N = bt.N, C = c.hidden_size;
    const int64_t Hk = c.linear_num_key_heads, H = c.linear_num_value_heads;
    const int64_t Dk = c.linear_key_head_dim, Dv = c.linear_value_head_dim;
    const int64_t Kd = c.key_dim(), Vd = c.value_dim();
    const DType dt = h.dtype;

    Tensor x = arena.alloc(dt, {N, C});
    ops::rmsnorm(x, h, w.input_layernorm, float(c.rms_norm_eps));
    Tensor q = arena.alloc(dt, {B, T, Kd}), k = arena.alloc(dt, {B, T, Kd}), v = arena.alloc(dt, {B, T, Vd});
    Tensor a = arena.alloc(dt, {N, H}), b = arena.alloc(dt, {N, H}), z = arena.alloc(dt, {N, Vd});
    ops::matmul(q.reshape({N, Kd}), x, w.q_proj);        // q̃ = x·Wqᵀ
    ops::matmul(k.reshape({N, Kd}), x, w.k_proj);        // k̃
    ops::matmul(v.reshape({N, Vd}), x, w.v_proj);        // ṽ
    ops::matmul(a, x, w.a_proj);                         // decay input
    ops::matmul(b, x, w.b_proj);                         // write-strength input
    ops::matmul(z, x, w.g_proj);                         // output gate
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
    ops::conv1d_silu(q, q, w.conv_q, conv_q);            // causal depthwise conv + SiLU
    ops::conv1d_silu(k, k, w.conv_k, conv_k);
    ops::conv1d_silu(v, v, w.conv_v, conv_v);
    ops::l2norm(q.reshape({N * Hk, Dk}), q.reshape({N * Hk, Dk}), kL2NormEps,
                1.0f / std::sqrt(float(Dk)));            // q̂ = q/‖q‖ · Dk^-½
    ops::l2norm(k.reshape({N * Hk, Dk}), k.reshape({N * Hk, Dk}), kL2NormEps, 1.0f);
    Tensor qh = q.reshape({B, T, Hk, Dk}), kh = k.reshape({B, T, Hk, Dk});
    if (H != Hk) {                                       // GVA: repeat key heads for the value heads
        Tensor qr = arena.alloc(dt, {B, T, H, Dk}), kr = arena.alloc(dt, {B, T, H, Dk});
        ops::repeat_heads(qr.reshape({N, H, Dk}), q.reshape({N, Hk, Dk}));
        ops::repeat_heads(kr.reshape({N, H, Dk}), k.reshape({N, Hk, Dk}));
        qh = qr;
        kh = kr;
    }
    Tensor g = arena.alloc(DType::f32, {B, T, H}), beta = arena.alloc(DType::f32, {B, T, H});
    ops::gdn_gates(g.reshape({N, H}), beta.reshape({N, H}), a, b, w.A_log, w.dt_bias,
                   c.linear_allow_neg_eigval);           // g = −exp(A_log)·softplus(a + dt_bias); β
    Tensor o = arena.alloc(dt, {B, T, H, Dv});
    if (T >= kChunkedMinTokens)
        ops::gdn_chunked(o, S, qh, kh, v.reshape({B, T, H, Dv}), g, beta);
    else
        ops::gdn_recurrent(o, S, qh, kh, v.reshape({B, T, H, Dv}), g, beta);
    ops::rmsnorm_gated(o.reshape({N * H, Dv}), o.reshape({N * H, Dv}), z.reshape({N * H, Dv}), w.o_norm,
                       kGdnNormEps);                     // y = RMSNorm(o) ⊙ silu(z)
    Tensor y = arena.alloc(dt, {N, C});
    ops::matmul(y, o.reshape({N, Vd}), w.o_proj);
    ops::add(h, h, y);                                   // h = r + GDN(RMSNorm_in(h))
    ops::rmsnorm(x, h, w.post_attention_layernorm, float(c.rms_norm_eps));
    mlp_forward(y, x, lw.mlp, c, arena);
    ops::add(h, h, y);                                   // h = r + MLP(RMSNorm_pa(h))
}

}  // namespace

void forward(const Model& model, InferenceState* state, int64_t slot0, const Tensor& ids,
             const ForwardOutputs& out, Arena& arena) {
    const ModelConfig& c = model.config();
    if (ids.ndim != 2) fail("[forward] input_ids must be [B, T], got ", ids.shape_str());
    const std::vector<int32_t> tokens = validate_ids(ids, c.vocab_size);
    Batch bt;
    bt.B = ids.size(0);
    bt.T = ids.size(1);
    bt.N = bt.B * bt.T;
    std::vector<int32_t> positions(bt.N), start(bt.B), kv_lens(bt.B);
    for (int64_t b = 0; b < bt.B; ++b) {
        int64_t len = 0;
        if (state) {
            if (slot0 < 0 || slot0 + bt.B > state->slots())
                fail("[forward] slots [", slot0, ", ", slot0 + bt.B, ") outside the state's ", state->slots());
            len = state->length[slot0 + b];
            if (len + bt.T > state->max_len())
                fail("[forward] sequence ", b, " would reach ", len + bt.T, " tokens, past the state's limit of ",
                     state->max_len());
        }
        start[b] = int32_t(len);
        kv_lens[b] = int32_t(len + bt.T);
        for (int64_t t = 0; t < bt.T; ++t) positions[b * bt.T + t] = int32_t(len + t);
    }
    const size_t mark = arena.mark();
    bt.positions = arena.upload_i32(positions);
    bt.start = arena.upload_i32(start);
    bt.kv_lens = arena.upload_i32(kv_lens);
    Tensor id_dev = arena.upload_i32(tokens);

    const int64_t C = c.hidden_size;
    const DType dt = model.dtype();
    Tensor h = arena.alloc(dt, {bt.N, C});
    ops::embedding(h, id_dev, model.w().embed_tokens);   // h0 = E[ids]
    if (out.on_hidden) out.on_hidden(0, h.reshape({bt.B, bt.T, C}));
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
        const size_t layer_mark = arena.mark();
        const LayerWeights& lw = model.w().layers[i];
        if (c.is_attention(i))
            attention_layer(h, lw, i, model, state, slot0, bt, arena);
        else
            gdn_layer(h, lw, i, model, state, slot0, bt, arena);
        arena.rewind(layer_mark);
        if (out.on_hidden && i + 1 < c.num_hidden_layers) out.on_hidden(i + 1, h.reshape({bt.B, bt.T, C}));
    }
    Tensor hn = arena.alloc(dt, {bt.N, C});
    ops::rmsnorm(hn, h, model.w().norm, float(c.rms_norm_eps));
    if (out.on_hidden) out.on_hidden(c.num_hidden_layers, hn.reshape({bt.B, bt.T, C}));
    if (!out.logits.empty()) {
        if (out.last_only) {
            OLMO_CHECK(out.logits.numel() == bt.B * c.vocab_size, "logits must be [B, V]");
            Tensor last = arena.alloc(dt, {bt.B, C});
            for (int64_t b = 0; b < bt.B; ++b)
                copy_tensor(last.narrow0(b, 1), hn.narrow0(b * bt.T + bt.T - 1, 1));
            ops::matmul(out.logits.reshape({bt.B, c.vocab_size}), last, model.w().lm_head);
        } else {
            OLMO_CHECK(out.logits.numel() == bt.N * c.vocab_size, "logits must be [B, T, V]");
            ops::matmul(out.logits.reshape({bt.N, c.vocab_size}), hn, model.w().lm_head);
        }
    }
    if (state)
        for (int64_t b = 0; b < bt.B; ++b) state->length[slot0 + b] += bt.T;
    arena.rewind(mark);
}

}  // namespace olmo
