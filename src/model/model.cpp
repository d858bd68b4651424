#include "model/model.h"

#include <cmath>
#include <filesystem>

#include "io/safetensors.h"

#include "model/layers.h"
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

InferenceState::InferenceState(const Model& model, int64_t slots, int64_t max_len)
    : max_len_(max_len) {
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
            l.recurrent = OwnedTensor(
                DType::f32,
                {slots, c.linear_num_value_heads, c.linear_key_head_dim, c.linear_value_head_dim},
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
    OLMO_CHECK(from.layers.size() == layers.size() && from.max_len_ == max_len_,
               "copy_slot: states differ");
    for (size_t i = 0; i < layers.size(); ++i) {
        const Layer& a = from.layers[i];
        Layer& b = layers[i];
        for (auto [x, y] : {std::pair{&a.k, &b.k}, std::pair{&a.v, &b.v},
                            std::pair{&a.conv_q, &b.conv_q}, std::pair{&a.conv_k, &b.conv_k},
                            std::pair{&a.conv_v, &b.conv_v}, std::pair{&a.recurrent, &b.recurrent}})
            if (x->allocated()) copy_tensor(y->view().select0(dst), x->view().select0(src));
    }
    length[dst] = from.length[src];
}

void save_model(const Model& model, const std::string& dir, DType file_dtype) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) fail("[model] cannot create ", dir, ": ", ec.message());
    nlohmann::json j = model.config().raw;
    j["dtype"] = file_dtype == DType::bf16 ? "bfloat16" : "float32";
    if (j.contains("torch_dtype")) j["torch_dtype"] = j["dtype"];
    model.weights().save((fs::path(dir) / "model.safetensors").string(), file_dtype);
    write_file_atomic((fs::path(dir) / "config.json").string(), j.dump(2) + "\n");
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
            fail("[input] token id ", v, " at position ", i, " is outside the vocabulary [0, ",
                 vocab_size, ")");
        out[i] = int32_t(v);
    }
    return out;
}

void forward(const Model& model, InferenceState* state, int64_t slot0, const Tensor& ids,
             const ForwardOutputs& out, Arena& arena) {
    const ModelConfig& c = model.config();
    if (ids.ndim != 2) fail("[forward] input_ids must be [B, T], got ", ids.shape_str());
    const std::vector<int32_t> tokens = validate_ids(ids, c.vocab_size);
    const int64_t B = ids.size(0), T = ids.size(1);
    if (state) {
        if (slot0 < 0 || slot0 + B > state->slots())
            fail("[forward] slots [", slot0, ", ", slot0 + B, ") outside the state's ",
                 state->slots());
        for (int64_t b = 0; b < B; ++b)
            if (state->length[slot0 + b] + T > state->max_len())
                fail("[forward] sequence ", b, " would reach ", state->length[slot0 + b] + T,
                     " tokens, past the state's limit of ", state->max_len());
    }
    const size_t mark = arena.mark();
    const BatchInfo bt = make_batch_info(arena, B, T, state ? &state->length : nullptr, slot0);
    forward_batch(model, state, slot0, bt, arena.upload_i32(tokens), out, arena);
    if (state)
        for (int64_t b = 0; b < B; ++b) state->length[slot0 + b] += T;
    arena.rewind(mark);
}

// The weight of the RMSNorm that reads the output of layer i first: the next layer's input norm if
// it is a GDN layer (attention layers norm after their products).
static Tensor next_norm(const Model& model, int64_t i) {
    const ModelConfig& c = model.config();
    if (i + 1 >= c.num_hidden_layers || c.is_attention(i + 1)) return Tensor();
    return model.w().layers[i + 1].gdn.input_layernorm;
}

void forward_batch(const Model& model, InferenceState* state, int64_t slot0, const BatchInfo& bt,
                   const Tensor& ids, const ForwardOutputs& out, Arena& arena) {
    const ModelConfig& c = model.config();
    const int64_t B = bt.B, T = bt.T, N = bt.N, C = c.hidden_size;
    const size_t mark = arena.mark();
    const DType dt = model.dtype();
    Tensor h = arena.alloc(dt, {N, C});
    ops::embedding(h, ids, model.w().embed_tokens);  // h0 = E[ids]     (2.1)
    // What a layer's last product may leave of h for the next layer's first norm (one row:
    // decoding a single sequence).
    SumSquares h_sumsq;
    h_sumsq.partials = arena.alloc(DType::f32, {C});
    h_sumsq.scaled = arena.alloc(dt, {C});
    if (out.on_hidden) out.on_hidden(0, h.reshape({B, T, C}));
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
        const size_t layer_mark = arena.mark();
        if (c.is_attention(i))
            attention_layer_forward(h, h, plan_attention_acts(arena, c, B, T, dt, false), i, model,
                                    state, slot0, bt, &h_sumsq);
        else
            gdn_layer_forward(h, h, plan_gdn_acts(arena, c, B, T, dt, false), i, model, state,
                              slot0, bt, arena, &h_sumsq, next_norm(model, i));
        arena.rewind(layer_mark);
        if (out.on_hidden && i + 1 < c.num_hidden_layers)
            out.on_hidden(i + 1, h.reshape({B, T, C}));
    }
    Tensor hn = arena.alloc(dt, {N, C});
    ops::rmsnorm(hn, h, model.w().norm, float(c.rms_norm_eps));  // final norm      (2.7)
    if (out.on_hidden) out.on_hidden(c.num_hidden_layers, hn.reshape({B, T, C}));
    if (!out.logits.empty()) {  // logits = h·Eoutᵀ
        if (out.last_only) {
            OLMO_CHECK(out.logits.numel() == B * c.vocab_size, "logits must be [B, V]");
            Tensor last = hn;
            if (T > 1) {
                last = arena.alloc(dt, {B, C});
                for (int64_t b = 0; b < B; ++b)
                    copy_tensor(last.narrow0(b, 1), hn.narrow0(b * T + T - 1, 1));
            }
            ops::matmul(out.logits.reshape({B, c.vocab_size}), last, model.w().lm_head);
        } else {
            OLMO_CHECK(out.logits.numel() == N * c.vocab_size, "logits must be [B, T, V]");
            ops::matmul(out.logits.reshape({N, c.vocab_size}), hn, model.w().lm_head);
        }
    }
    arena.rewind(mark);
}

}  // namespace olmo
