// Grouped value attention helper: repeat each of Hk heads Hv/Hk times consecutively
// (repeat_interleave on the head axis) and, backward, sum the copies in f32 (copy order, one
// rounding).
#pragma once

#include "vec.cuh"

namespace olmo::kernels {

// out[n, h, :] = x[n, h / rep, :]; rows of `words` words W; rows = N · Hv output rows.
template <class W>
__global__ void repeat_heads_kernel(W* out, const W* x, int64_t rows, int64_t Hv, int64_t rep,
                                    int64_t words) {
    const int64_t Hk = Hv / rep;
    for (int64_t idx = grid_index(); idx < rows * words; idx += grid_stride()) {
        const int64_t row = idx / words, i = idx % words;
        const int64_t n = row / Hv, h = row % Hv;
        out[idx] = x[(n * Hk + h / rep) * words + i];
    }
}

// d_x[n, h, :] = Σ_r d_out[n, h·rep + r, :], in packs of N elements; rows = N · Hk input rows.
template <class T, int N>
__global__ void repeat_heads_backward_kernel(T* d_x, const T* d_out, int64_t rows, int64_t rep,
                                             int64_t D) {
    const int64_t packs = D / N;
    for (int64_t idx = grid_index(); idx < rows * packs; idx += grid_stride()) {
        const int64_t row = idx / packs, p = idx % packs;
        float acc[N];
#pragma unroll
        for (int k = 0; k < N; ++k) acc[k] = 0.0f;
        for (int64_t r = 0; r < rep; ++r) {
            float v[N];
            load_f32<N>(v, d_out + (row * rep + r) * D + p * N);
#pragma unroll
            for (int k = 0; k < N; ++k) acc[k] += v[k];
        }
        store_f32<N>(d_x + row * D + p * N, acc);
    }
}

}  // namespace olmo::kernels
