// Rotary position embedding, non-interleaved ("rotate_half"), and its backward (the transposed
// rotation, sign = −1). One thread per (row n, frequency i): it forms the angle pos · inv_freq[i]
// in f32, takes cos and sin once (accurate sincosf, as the CPU's cos/sin) and rotates the pair (i,
// i + D/2) of every head of the row. Each thread reads its pair before writing it, so out may alias
// x.
#pragma once

#include "vec.cuh"

namespace olmo::kernels {

// out[n, h, i] = x_i c − x_{i+D/2} s, out[n, h, i+D/2] = x_{i+D/2} c + x_i s, with
// c = cos(angle)·scaling, s = sign·sin(angle)·scaling; x, out [N, H, D].
template <class T>
__global__ void rope_kernel(T* out, const T* x, const int32_t* positions, const float* inv_freq,
                            int64_t N, int64_t H, int64_t D, float scaling, float sign) {
    const int64_t half = D / 2;
    for (int64_t idx = grid_index(); idx < N * half; idx += grid_stride()) {
        const int64_t n = idx / half, i = idx % half;
        const float angle = float(positions[n]) * inv_freq[i];
        float s, c;
        sincosf(angle, &s, &c);
        c *= scaling;
        s = sign * s * scaling;
        for (int64_t h = 0; h < H; ++h) {
            const int64_t base = (n * H + h) * D;
            const float a = to_f32(x[base + i]), b = to_f32(x[base + i + half]);
            out[base + i] = from_f32<T>(a * c - b * s);
            out[base + i + half] = from_f32<T>(b * c + a * s);
        }
    }
}

}  // namespace olmo::kernels
