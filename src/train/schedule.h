// Learning-rate schedules (OLMo-core's): cosine with linear warm-up decaying to alpha_f·lr, WSD
// (warm-up, stable, linear decay over the last decay_fraction of steps), linear decay, constant.
#pragma once

#include <cstdint>
#include <string>

namespace olmo {

struct Schedule {
    std::string kind = "cosine";  // cosine | wsd | linear | constant
    double lr = 1e-3;
    int64_t warmup = 0;
    int64_t total = 1;            // steps of the whole run
    double alpha_f = 0.1;         // final lr = alpha_f·lr (cosine, linear)
    double decay_fraction = 0.2;  // WSD

    // Learning rate for step s (counting from 0).
    double at(int64_t step) const;
    void validate() const;
};

}  // namespace olmo
