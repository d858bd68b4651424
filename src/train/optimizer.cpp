#include "train/optimizer.h"

#include <cmath>

#include "ops/ops.h"

namespace olmo {

AdamW::AdamW(const ModelWeights& params, AdamWConfig config)
    : config_(config),
      m_(DType::f32, {params.flat().numel()}, params.device()),
      v_(DType::f32, {params.flat().numel()}, params.device()) {
    OLMO_CHECK(params.dtype() == DType::f32, "AdamW needs f32 master weights");
    ops::fill(m_, 0.0f);
    ops::fill(v_, 0.0f);
}

double AdamW::grad_norm(const ModelWeights& grads) {
    return std::sqrt(ops::sum_squares(grads.flat()));
}

void AdamW::step(ModelWeights& params, const ModelWeights& grads, double lr, double grad_norm) {
    ++steps_;
    const double clip = (config_.clip_norm > 0 && grad_norm > config_.clip_norm)
                            ? config_.clip_norm / (grad_norm + 1e-6)
                            : 1.0;
    for (size_t i = 0; i < params.table().size(); ++i) {
        const int64_t n = params.params()[i].numel(), offset = params.offset_of(i);
        const double wd = params.table()[i].weight_decay ? config_.weight_decay : 0.0;
        ops::adamw(params.flat().narrow0(offset, n), m_->narrow0(offset, n), v_->narrow0(offset, n),
                   grads.flat().narrow0(offset, n), float(lr), float(config_.beta1),
                   float(config_.beta2), float(config_.eps), float(wd), steps_, float(clip));
    }
}

bool SkipStepMonitor::outlier(const std::deque<double>& h, double x) const {
    if (h.size() < min_history_) return false;
    double mean = 0;
    for (double v : h) mean += v;
    mean /= double(h.size());
    double var = 0;
    for (double v : h) var += (v - mean) * (v - mean);
    const double std = std::sqrt(var / double(h.size() - 1));
    return x - mean > sigma_ * std;
}

bool SkipStepMonitor::should_skip(double loss, double grad_norm) {
    if (!std::isfinite(loss) || !std::isfinite(grad_norm)) return true;
    if (outlier(losses_, loss) || outlier(norms_, grad_norm)) return true;
    losses_.push_back(loss);
    norms_.push_back(grad_norm);
    if (losses_.size() > window_) losses_.pop_front();
    if (norms_.size() > window_) norms_.pop_front();
    return false;
}

nlohmann::json SkipStepMonitor::to_json() const {
    return {{"losses", std::vector<double>(losses_.begin(), losses_.end())},
            {"grad_norms", std::vector<double>(norms_.begin(), norms_.end())}};
}

void SkipStepMonitor::from_json(const nlohmann::json& j) {
    auto l = j.at("losses").get<std::vector<double>>();
    auto n = j.at("grad_norms").get<std::vector<double>>();
    losses_.assign(l.begin(), l.end());
    norms_.assign(n.begin(), n.end());
}

}  // namespace olmo
