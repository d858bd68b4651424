// Token sampling: greedy, temperature, top-k, top-p (nucleus), reproducible from a seed.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace olmo {

struct SamplingParams {
    float temperature = 0.0f;  // 0 = greedy (argmax)
    int64_t top_k = 0;         // 0 = no limit
    float top_p = 1.0f;        // 1 = no limit
    uint64_t seed = 0;
};

// Checks the parameters, with errors naming the option.
void validate(const SamplingParams& p);

class Sampler {
  public:
    explicit Sampler(SamplingParams params) : params_(params) {}
    // Picks a token from logits[V] (f32, host). `stream` selects an independent random stream (one
    // per sequence); `step` the draw within it, so results do not depend on batch composition.
    int32_t sample(std::span<const float> logits, uint64_t stream, uint64_t step);

  private:
    SamplingParams params_;
    std::vector<std::pair<float, int32_t>> scratch_;
};

}  // namespace olmo
