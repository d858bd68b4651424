#include "train/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace olmo {

void Schedule::validate() const {
    if (kind != "cosine" && kind != "wsd" && kind != "linear" && kind != "constant")
        fail("[schedule] --schedule must be cosine, wsd, linear or constant, got \"", kind, "\"");
    if (!(lr > 0)) fail("[schedule] --lr must be positive, got ", lr);
    if (warmup < 0 || total <= 0) fail("[schedule] warm-up must be >= 0 and steps > 0");
    if (!(alpha_f >= 0 && alpha_f <= 1))
        fail("[schedule] alpha_f must be in [0, 1], got ", alpha_f);
    if (!(decay_fraction >= 0 && decay_fraction <= 1))
        fail("[schedule] decay fraction must be in [0, 1]");
}

double Schedule::at(int64_t step) const {
    // Linear warm-up from 0 (OLMo-core _linear_warmup with warmup_min_lr = 0).
    if (step < warmup) return lr * double(step + 1) / double(warmup + 1);
    if (kind == "constant") return lr;
    if (kind == "wsd") {
        const int64_t decay_steps = int64_t(std::llround(decay_fraction * double(total)));
        const int64_t decay_start = total - decay_steps;
        if (step < decay_start || decay_steps == 0) return lr;
        return lr * std::max(0.0, double(total - step) / double(decay_steps));
    }
    const double eta_min = lr * alpha_f;
    const double span = double(std::max<int64_t>(1, total - warmup));
    const double x = std::clamp(double(step - warmup) / span, 0.0, 1.0);
    if (kind == "linear") return lr - (lr - eta_min) * x;
    return eta_min + (lr - eta_min) * 0.5 * (1.0 + std::cos(M_PI * x));  // cosine
}

}  // namespace olmo
