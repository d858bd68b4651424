#include "model/training.h"

#include <variant>

#include "model/layers.h"
#include "ops/ops.h"

namespace olmo {

OwnedTensor next_token_targets(const Tensor& ids, int64_t ignore_index) {
    OLMO_CHECK(ids.ndim == 2 && ids.device == Device::cpu,
               "next_token_targets needs host ids [B, T]");
    const int64_t B = ids.size(0), T = ids.size(1);
    OwnedTensor t(DType::i32, {B, T});
    auto id = [&](int64_t i) {
        return ids.dtype == DType::i64 ? ids.as<int64_t>()[i] : ids.as<int32_t>()[i];
    };
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < T; ++i)
            t->as<int32_t>()[b * T + i] = int32_t(i + 1 < T ? id(b * T + i + 1) : ignore_index);
    return t;
}

namespace {

using LayerActs = std::variant<AttnActs, GdnActs>;

struct Trunk {
    BatchInfo bt;
    std::vector<Tensor>
        h;  // h[0] = embeddings, h[i+1] = output of layer i (kept only when training)
    std::vector<LayerActs> acts;
    Tensor hn;            // [N, C] final-norm output
    Tensor ids, targets;  // [N] i32 on the device
    int64_t counted = 0;  // targets != ignore_index
};

std::vector<int32_t> validate_targets(const Tensor& targets, int64_t vocab, int64_t ignore_index,
                                      int64_t& counted) {
    if (targets.device != Device::cpu ||
        (targets.dtype != DType::i32 && targets.dtype != DType::i64))
        fail("[loss] targets must be host i32 or i64");
    std::vector<int32_t> out(targets.numel());
    counted = 0;
    for (int64_t i = 0; i < targets.numel(); ++i) {
        const int64_t v =
            targets.dtype == DType::i64 ? targets.as<int64_t>()[i] : targets.as<int32_t>()[i];
        if (v != ignore_index && (v < 0 || v >= vocab))
            fail("[loss] target ", v, " at position ", i, " is outside the vocabulary [0, ", vocab,
                 ")");
        counted += v != ignore_index;
        out[i] = int32_t(v);
    }
    return out;
}

// Embedding, every layer and the final norm; with keep, every intermediate the backward pass needs.
Trunk run_trunk(const Model& model, const Tensor& ids, const Tensor& targets,
                const LossOptions& opt, bool keep, Arena& arena) {
    const ModelConfig& c = model.config();
    if (ids.ndim != 2) fail("[loss] input_ids must be [B, T], got ", ids.shape_str());
    if (!targets.same_shape(ids))
        fail("[loss] targets ", targets.shape_str(), " must match ids ", ids.shape_str());
    const std::vector<int32_t> tok = validate_ids(ids, c.vocab_size);
    Trunk tr;
    const std::vector<int32_t> tgt =
        validate_targets(targets, c.vocab_size, opt.ignore_index, tr.counted);
    const int64_t B = ids.size(0), T = ids.size(1), N = B * T, C = c.hidden_size;
    const DType dt = model.dtype();
    tr.bt = make_batch_info(arena, B, T, nullptr, 0);
    if (opt.document_separator >= 0)
        mask_documents(tr.bt, tok, int32_t(opt.document_separator), arena);
    tr.ids = arena.upload_i32(tok);
    tr.targets = arena.upload_i32(tgt);
    tr.h.push_back(arena.alloc(dt, {N, C}));
    ops::embedding(tr.h[0], tr.ids, model.w().embed_tokens);
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
        const Tensor h_in = tr.h.back();
        const Tensor h_out = keep ? arena.alloc(dt, {N, C}) : h_in;
        const size_t mark = arena.mark();
        if (c.is_attention(i)) {
            AttnActs a = plan_attention_acts(arena, c, B, T, dt, keep);
            attention_layer_forward(h_out, h_in, a, i, model, nullptr, 0, tr.bt);
            tr.acts.emplace_back(a);
        } else {
            GdnActs a = plan_gdn_acts(arena, c, B, T, dt, keep);
            gdn_layer_forward(h_out, h_in, a, i, model, nullptr, 0, tr.bt, arena);
            tr.acts.emplace_back(a);
        }
        if (keep)
            tr.h.push_back(h_out);
        else
            arena.rewind(mark);
    }
    tr.hn = arena.alloc(dt, {N, C});
    ops::rmsnorm(tr.hn, tr.h.back(), model.w().norm, float(c.rms_norm_eps));
    return tr;
}

// Cross-entropy over row chunks of the logits; with d_hn, also its gradient (scaled so that the
// chunks together give grad_scale · d(mean loss)) and the LM head's weight gradient.
double chunked_loss(const Model& model, const Trunk& tr, const LossOptions& opt, const Tensor& d_hn,
                    Tensor* d_lm_head, float grad_scale, Arena& arena) {
    const int64_t N = tr.bt.N, V = model.config().vocab_size;
    const int64_t rows = std::max<int64_t>(1, opt.logits_chunk);
    double loss_sum = 0;
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
        const int64_t n = std::min(rows, N - r0);
        const size_t mark = arena.mark();
        const Tensor hn = tr.hn.narrow0(r0, n);
        Tensor logits = arena.alloc(model.dtype(), {n, V});
        ops::matmul(logits, hn, model.w().lm_head);
        Tensor d_logits = d_hn.empty() ? Tensor() : arena.alloc(model.dtype(), {n, V});
        int64_t counted = 0;
        const double mean = ops::cross_entropy(d_logits, logits, tr.targets.narrow0(r0, n),
                                               opt.z_loss, opt.ignore_index, &counted);
        loss_sum += mean * double(counted);
        if (!d_hn.empty()) {
            if (counted == 0) {
                ops::fill(d_hn.narrow0(r0, n), 0.0f);
            } else {
                ops::scale(d_logits, d_logits,
                           grad_scale * float(double(counted) / double(tr.counted)));
                ops::matmul_backward_input(d_hn.narrow0(r0, n), d_logits, model.w().lm_head, false);
                ops::matmul_backward_weight(*d_lm_head, d_logits, hn);
            }
        }
        arena.rewind(mark);
    }
    return tr.counted ? loss_sum / double(tr.counted) : 0.0;
}

}  // namespace

LossResult forward_backward(const Model& model, const Tensor& ids, const Tensor& targets,
                            ModelWeights& grads, float grad_scale, const LossOptions& options,
                            Arena& arena) {
    const ModelConfig& c = model.config();
    OLMO_CHECK(
        grads.num_params() == model.weights().num_params() && grads.device() == model.device(),
        "gradients must match the model");
    const size_t mark = arena.mark();
    Trunk tr = run_trunk(model, ids, targets, options, true, arena);
    const int64_t N = tr.bt.N, C = c.hidden_size;
    const DType dt = model.dtype();
    Tensor d_hn = arena.alloc(dt, {N, C});
    LossResult r;
    r.counted = tr.counted;
    r.loss = chunked_loss(model, tr, options, d_hn, &grads.w.lm_head, grad_scale, arena);
    Tensor d_h = arena.alloc(dt, {N, C});
    ops::rmsnorm_backward(d_h, grads.w.norm, d_hn, tr.h.back(), model.w().norm,
                          float(c.rms_norm_eps));
    for (int64_t i = c.num_hidden_layers - 1; i >= 0; --i) {
        if (c.is_attention(i))
            attention_layer_backward(d_h, d_h, tr.h[i], std::get<AttnActs>(tr.acts[i]), i, model,
                                     tr.bt, grads.w, arena);
        else
            gdn_layer_backward(d_h, d_h, tr.h[i], std::get<GdnActs>(tr.acts[i]), i, model, tr.bt,
                               grads.w, arena);
    }
    ops::embedding_backward(grads.w.embed_tokens, d_h, tr.ids);
    arena.rewind(mark);
    return r;
}

LossResult evaluate_loss(const Model& model, const Tensor& ids, const Tensor& targets,
                         const LossOptions& options, Arena& arena) {
    const size_t mark = arena.mark();
    Trunk tr = run_trunk(model, ids, targets, options, false, arena);
    LossResult r;
    r.counted = tr.counted;
    r.loss = chunked_loss(model, tr, options, Tensor(), nullptr, 1.0f, arena);
    arena.rewind(mark);
    return r;
}

}  // namespace olmo
