// AdamW with f32 master weights and moments, global-norm gradient clipping, and the skip-step rule
// of OLMo-core's SkipStepAdamW (spec §7.2): an update is skipped when the loss or the gradient norm
// is more than `sigma` standard deviations above its mean over the last `window` steps.
#pragma once

#include <deque>
#include <nlohmann/json.hpp>

#include "model/weights.h"

namespace olmo {

struct AdamWConfig {
    double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
    double clip_norm = 1.0;  // 0 = no clipping
};

class AdamW {
  public:
    AdamW(const ModelWeights& params, AdamWConfig config);

    // Applies one update at learning rate lr; returns the gradient norm before clipping.
    // Parameters whose table entry says weight_decay = false get none.
    void step(ModelWeights& params, const ModelWeights& grads, double lr, double grad_norm);
    // sqrt(Σ g²) over all parameters.
    static double grad_norm(const ModelWeights& grads);

    int64_t steps() const { return steps_; }
    const AdamWConfig& config() const { return config_; }
    // Moments and step count, for checkpoints.
    const Tensor& m() const { return m_.view(); }
    const Tensor& v() const { return v_.view(); }
    void set_steps(int64_t s) { steps_ = s; }

  private:
    AdamWConfig config_;
    OwnedTensor m_, v_;  // [P] f32, the flat layout of ModelWeights
    int64_t steps_ = 0;
};

class SkipStepMonitor {
  public:
    explicit SkipStepMonitor(double sigma = 6.0, size_t window = 128, size_t min_history = 20)
        : sigma_(sigma), window_(window), min_history_(min_history) {}
    // True if this step should be skipped; records the values of steps that were taken.
    bool should_skip(double loss, double grad_norm);
    nlohmann::json to_json() const;
    void from_json(const nlohmann::json& j);

  private:
    bool outlier(const std::deque<double>& history, double x) const;
    double sigma_;
    size_t window_, min_history_;
    std::deque<double> losses_, norms_;
};

}  // namespace olmo
