// Appending keys or values to a cache: token row (b, t) of x[B, T, H·D] goes to row start[b] + t of
// cache[B, L, H·D], as a raw copy of `words` words W per row. A sequence whose rows would not fit
// (start[b] < 0 or start[b] + T > L; the CPU backend reports it) is skipped, so nothing outside the
// cache is written.
#pragma once

#include "vec.cuh"

namespace olmo::kernels {

template <class W>
__global__ void kv_append_kernel(W* cache, const W* x, const int32_t* start, int64_t B, int64_t T,
                                 int64_t L, int64_t words) {
    for (int64_t row = blockIdx.x; row < B * T; row += gridDim.x) {
        const int64_t b = row / T, t = row % T;
        const int64_t s = start[b];
        if (s < 0 || s + T > L) continue;
        W* dst = cache + (b * L + s + t) * words;
        const W* src = x + row * words;
        for (int64_t i = threadIdx.x; i < words; i += blockDim.x) dst[i] = src[i];
    }
}

}  // namespace olmo::kernels
