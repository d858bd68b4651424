#include "infer/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/rng.h"

namespace olmo {

void validate(const SamplingParams& p) {
    if (!(p.temperature >= 0) || !std::isfinite(p.temperature))
        fail("[sampling] --temperature must be >= 0, got ", p.temperature);
    if (p.top_k < 0) fail("[sampling] --top-k must be >= 0, got ", p.top_k);
    if (!(p.top_p > 0 && p.top_p <= 1)) fail("[sampling] --top-p must be in (0, 1], got ", p.top_p);
}

int32_t Sampler::sample(std::span<const float> logits, uint64_t stream, uint64_t step) {
    const int64_t V = int64_t(logits.size());
    OLMO_CHECK(V > 0, "empty logits");
    if (params_.temperature == 0.0f || params_.top_k == 1) {
        // Greedy; the first maximum wins, as torch.argmax does.
        int64_t best = 0;
        for (int64_t i = 1; i < V; ++i)
            if (logits[i] > logits[best]) best = i;
        return int32_t(best);
    }
    // Softmax at temperature over the candidates, most likely first.
    scratch_.resize(V);
    for (int64_t i = 0; i < V; ++i) scratch_[i] = {logits[i] / params_.temperature, int32_t(i)};
    auto by_logit = [](const auto& a, const auto& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    int64_t keep = V;
    if (params_.top_k > 0 && params_.top_k < V) {
        keep = params_.top_k;
        std::partial_sort(scratch_.begin(), scratch_.begin() + keep, scratch_.end(), by_logit);
    } else {
        std::sort(scratch_.begin(), scratch_.end(), by_logit);
    }
    const double max = scratch_[0].first;
    std::vector<double> p(keep);
    double total = 0;
    for (int64_t i = 0; i < keep; ++i) total += p[i] = std::exp(double(scratch_[i].first) - max);
    if (params_.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p (at least one token)
        double mass = 0;
        int64_t n = 0;
        while (n < keep) {
            mass += p[n] / total;
            ++n;
            if (mass >= params_.top_p) break;
        }
        keep = n;
        total = 0;
        for (int64_t i = 0; i < keep; ++i) total += p[i];
    }
    const double u = Rng(params_.seed, stream).uniform(step) * total;
    double acc = 0;
    for (int64_t i = 0; i < keep; ++i) {
        acc += p[i];
        if (u < acc) return scratch_[i].second;
    }
    return scratch_[keep - 1].second;
}

}  // namespace olmo
