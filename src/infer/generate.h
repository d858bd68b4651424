// Generation: prefill each prompt into its own slot of an InferenceState, then decode all sequences
// together one token per step, sampling with a seeded sampler, until EOS or a token budget.
#pragma once

#include <functional>
#include <vector>

#include "infer/sampler.h"
#include "model/model.h"

namespace olmo {

struct GenerateOptions {
    int64_t max_new_tokens = 64;
    SamplingParams sampling;
    bool ignore_eos = false;
    // Called as each token is produced; return false to stop that sequence.
    std::function<bool(int64_t sequence, int32_t token)> on_token;
};

// A conversation or completion that keeps its state between calls (used by generate and chat).
class Session {
  public:
    Session(const Model& model, int64_t batch, int64_t max_len);

    // Feeds more tokens to sequence `seq` (a prompt, or a continuation of it) and returns its
    // logits at the last position (host f32 [V]).
    std::vector<float> feed(int64_t seq, std::span<const int32_t> tokens);
    // Generates for every sequence from its state; last_logits[b] are the logits after its last fed
    // token. Returns the new tokens per sequence (EOS included when it ended the sequence).
    std::vector<std::vector<int32_t>> generate(std::vector<std::vector<float>> last_logits,
                                               const GenerateOptions& options);
    InferenceState& state() { return state_; }
    int64_t length(int64_t seq) const { return state_.length[seq]; }

  private:
    const Model& model_;
    InferenceState state_;
    Arena arena_;
};

// Convenience: generates continuations for several prompts at once.
std::vector<std::vector<int32_t>> generate(const Model& model,
                                           const std::vector<std::vector<int32_t>>& prompts,
                                           const GenerateOptions& options);

}  // namespace olmo
