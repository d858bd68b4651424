// What an op writing one row leaves for the RMSNorm that reads that row next: decoding one token, a
// product's kernel adds up the squares of the values it stores and stores them times the norm's
// weight as well, so that the following product applies the norm itself (the dot products of
// h ⊙ w scaled by r = 1 / sqrt(mean(h²) + eps)) instead of after a norm kernel of its own.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace olmo {

struct SumSquares {
    Tensor partials;  // f32, on x's device: x's length C entries are always enough
    Tensor scaled;    // [C] in x's dtype
    // Left by the op: the entries [0, count) of partials add up to Σ_c x[c]² over the values as
    // stored (rounded to x's dtype), and scaled = x ⊙ norm_w rounded to x's dtype, for the RMSNorm
    // of weight norm_w that reads x next. count = 0: nothing was left.
    int64_t count = 0;
    Tensor norm_w;
};

}  // namespace olmo
