// Optimiser kernels: the sum of squares behind the global gradient norm (f64 accumulation, fixed
// grid and fixed reduction order, so the result does not depend on timing) and one AdamW step.
#pragma once

#include "vec.cuh"

namespace olmo::kernels {

constexpr int kSumSquaresBlocks = 1024;  // fixed grid of the first pass
constexpr int kSumSquaresThreads = 256;

// partial[block] = Σ x² over a grid-stride share of the packs (and the tail), accumulated in f64.
template <class T, int N>
__global__ void sum_squares_kernel(double* partial, const T* x, int64_t n) {
    const int64_t packs = n / N;
    double s = 0.0;
    for (int64_t p = grid_index(); p < packs; p += grid_stride()) {
        float v[N];
        load_f32<N>(v, x + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) s += double(v[k]) * double(v[k]);
    }
    const int64_t i = packs * N + grid_index();
    if (i < n) {
        const double v = to_f32(x[i]);
        s += v * v;
    }
    s = block_sum_f64(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// out[0] = Σ partial[0..count), one block.
__global__ void sum_partials_f64_kernel(double* out, const double* partial, int count) {
    double s = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
    s = block_sum_f64(s);
    if (threadIdx.x == 0) out[0] = s;
}

// One AdamW step (PyTorch order; bias corrections folded into step_size and bc2_sqrt on the host):
//   g ← gs·g;  p ← p·decay;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
//   p ← p − step_size · m / (sqrt(v) / bc2_sqrt + eps)
struct AdamwArgs {
    float decay, beta1, beta2, eps, step_size, bc2_sqrt, grad_scale;
};

template <int N>
__device__ __forceinline__ void adamw_pack(float (&p)[N], float (&m)[N], float (&v)[N],
                                           const float (&g)[N], const AdamwArgs& a) {
#pragma unroll
    for (int k = 0; k < N; ++k) {
        const float gi = a.grad_scale * g[k];
        p[k] *= a.decay;
        m[k] = a.beta1 * m[k] + (1.0f - a.beta1) * gi;
        v[k] = a.beta2 * v[k] + (1.0f - a.beta2) * gi * gi;
        p[k] -= a.step_size * m[k] / (sqrtf(v[k]) / a.bc2_sqrt + a.eps);
    }
}

template <class T, int N>
__global__ void adamw_kernel(T* param, T* m, T* v, const T* grad, int64_t n, AdamwArgs a) {
    const int64_t packs = n / N;
    for (int64_t q = grid_index(); q < packs; q += grid_stride()) {
        float p[N], mm[N], vv[N], g[N];
        load_f32<N>(p, param + q * N);
        load_f32<N>(mm, m + q * N);
        load_f32<N>(vv, v + q * N);
        load_f32<N>(g, grad + q * N);
        adamw_pack<N>(p, mm, vv, g, a);
        store_f32<N>(param + q * N, p);
        store_f32<N>(m + q * N, mm);
        store_f32<N>(v + q * N, vv);
    }
    const int64_t i = packs * N + grid_index();
    if (i < n) {
        float p[1] = {to_f32(param[i])}, mm[1] = {to_f32(m[i])}, vv[1] = {to_f32(v[i])},
              g[1] = {to_f32(grad[i])};
        adamw_pack<1>(p, mm, vv, g, a);
        param[i] = from_f32<T>(p[0]);
        m[i] = from_f32<T>(mm[0]);
        v[i] = from_f32<T>(vv[0]);
    }
}

}  // namespace olmo::kernels
