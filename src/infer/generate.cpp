#include "infer/generate.h"

#include "infer/decode_graph.h"

#include <algorithm>
#include <memory>

namespace olmo {

Session::Session(const Model& model, int64_t batch, int64_t max_len)
    : model_(model), state_(model, batch, max_len), arena_(model.device()) {}

std::vector<float> Session::feed(int64_t seq, std::span<const int32_t> tokens) {
    if (tokens.empty()) fail("[generate] empty prompt: give at least one token");
    if (seq < 0 || seq >= state_.slots()) fail("[generate] sequence ", seq, " out of range");
    const int64_t V = model_.config().vocab_size;
    Tensor ids(const_cast<int32_t*>(tokens.data()), DType::i32, Device::cpu,
               {1, int64_t(tokens.size())});
    Tensor logits = arena_.alloc(model_.dtype(), {1, V});
    ForwardOutputs out;
    out.logits = logits;
    out.last_only = true;
    forward(model_, &state_, seq, ids, out, arena_);
    OwnedTensor host = to_host_f32(logits);
    std::vector<float> result(host.f32(), host.f32() + V);
    arena_.reset();
    return result;
}

std::vector<std::vector<int32_t>> Session::generate(std::vector<std::vector<float>> last_logits,
                                                    const GenerateOptions& options) {
    validate(options.sampling);
    if (options.max_new_tokens < 0) fail("[generate] --max-new-tokens must be >= 0");
    const int64_t B = int64_t(last_logits.size());
    OLMO_CHECK(B <= state_.slots(), "more sequences than slots");
    const int64_t V = model_.config().vocab_size;
    const bool greedy = options.sampling.temperature == 0.0f || options.sampling.top_k == 1;
    Sampler sampler(options.sampling);
    std::vector<std::vector<int32_t>> result(B);
    std::vector<bool> done(B, false);
    std::vector<int32_t> next(B, 0);
    // Decode steps for slots [0, B); finished sequences ride along (their output is ignored).
    std::unique_ptr<DecodeGraph> decode;
    bool device_greedy = false;  // next[] already holds the device's argmax of the last step
    for (int64_t step = 0; step < options.max_new_tokens; ++step) {
        bool any = false;
        for (int64_t b = 0; b < B; ++b) {
            if (done[b]) continue;
            const int32_t tok = device_greedy ? next[b]
                                              : sampler.sample(last_logits[b], uint64_t(b),
                                                               uint64_t(state_.length[b]));
            result[b].push_back(tok);
            next[b] = tok;
            bool keep = true;
            if (options.on_token) keep = options.on_token(b, tok);
            if (!keep || (!options.ignore_eos && model_.config().is_eos(tok))) done[b] = true;
            any = any || !done[b];
        }
        if (!any || step + 1 == options.max_new_tokens) break;
        const int64_t room =
            state_.max_len() - *std::max_element(state_.length.begin(), state_.length.begin() + B);
        if (room < 1)
            fail("[generate] the context limit of ", state_.max_len(), " tokens is reached");
        if (!decode) decode = std::make_unique<DecodeGraph>(model_, state_, B);
        decode->step(next);
        if (greedy) {
            const std::vector<int32_t> ids = decode->greedy();
            std::copy(ids.begin(), ids.end(), next.begin());
            device_greedy = true;
        } else {
            OwnedTensor host = to_host_f32(decode->logits());
            for (int64_t b = 0; b < B; ++b)
                last_logits[b].assign(host.f32() + b * V, host.f32() + (b + 1) * V);
        }
    }
    return result;
}

std::vector<std::vector<int32_t>> generate(const Model& model,
                                           const std::vector<std::vector<int32_t>>& prompts,
                                           const GenerateOptions& options) {
    if (prompts.empty()) fail("[generate] no prompts");
    int64_t longest = 0;
    for (const auto& p : prompts) longest = std::max<int64_t>(longest, int64_t(p.size()));
    Session session(model, int64_t(prompts.size()),
                    longest + std::max<int64_t>(options.max_new_tokens, 1));
    std::vector<std::vector<float>> last;
    for (size_t b = 0; b < prompts.size(); ++b)
        last.push_back(session.feed(int64_t(b), prompts[b]));
    return session.generate(std::move(last), options);
}

}  // namespace olmo
