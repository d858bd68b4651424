// The GDN gates in f32 (spec §2.6.4-5): log decay g = −exp(A_log)·softplus(a + dt_bias) with
// PyTorch's softplus (x itself above 20) and write strength β = s·sigmoid(b), s = 2 with negative
// eigenvalues allowed. a, b, A_log, dt_bias (and their gradients) are in the storage type T; g, β
// and their gradients are f32.
#pragma once

#include "vec.cuh"

namespace olmo::kernels {

__device__ __forceinline__ float softplus_f(float x) {
    return x > 20.0f ? x : log1pf(expf(x));
}
__device__ __forceinline__ float softplus_grad_f(float x) {
    return x > 20.0f ? 1.0f : sigmoid_f(x);
}

// The two gates of one (token, head), from the inputs converted to f32.
__device__ __forceinline__ float gdn_log_decay(float a, float A_log, float dt_bias) {
    return -expf(A_log) * softplus_f(a + dt_bias);
}
__device__ __forceinline__ float gdn_write_strength(float b, float s) {
    return s * sigmoid_f(b);
}

// g, beta [N, H] from a, b [N, H]; one thread per element.
template <class T>
__global__ void gdn_gates_kernel(float* g, float* beta, const T* a, const T* b, const T* A_log,
                                 const T* dt_bias, int64_t N, int64_t H, float s) {
    for (int64_t i = grid_index(); i < N * H; i += grid_stride()) {
        const int64_t h = i % H;
        g[i] = gdn_log_decay(to_f32(a[i]), to_f32(A_log[h]), to_f32(dt_bias[h]));
        beta[i] = gdn_write_strength(to_f32(b[i]), s);
    }
}

// d_a = −d_g·exp(A_log)·softplus'(a + dt_bias), d_b = d_β·s·σ(b)(1 − σ(b)), and the partial sums of
// d_A_log (Σ d_g·g) and d_dt_bias (Σ d_a, unrounded) over slices of rows:
//   partial[slice · 2H + h] and partial[slice · 2H + H + h].
// Block (32 heads, kGateRowLanes lanes), grid (ceil(H / 32), slices); lanes are added in order.
constexpr int kGateRowLanes = 8;

template <class T>
__global__ void gdn_gates_backward_kernel(T* d_a, T* d_b, float* partial, const float* d_g,
                                          const float* d_beta, const T* a, const T* b,
                                          const T* A_log, const T* dt_bias, int64_t N, int64_t H,
                                          float s, int64_t rows_per_slice) {
    __shared__ float lane_sum[2][kGateRowLanes][33];
    const int64_t h = int64_t(blockIdx.x) * 32 + threadIdx.x;
    const int64_t slice = blockIdx.y;
    const int64_t r0 = slice * rows_per_slice, r1 = min(N, r0 + rows_per_slice);
    float acc_alog = 0.0f, acc_dtb = 0.0f;
    if (h < H) {
        const float A = expf(to_f32(A_log[h])), bias = to_f32(dt_bias[h]);
        for (int64_t n = r0 + threadIdx.y; n < r1; n += kGateRowLanes) {
            const int64_t i = n * H + h;
            const float x = to_f32(a[i]) + bias, dg = d_g[i];
            const float da = -dg * A * softplus_grad_f(x);
            const float sb = sigmoid_f(to_f32(b[i]));
            d_a[i] = from_f32<T>(da);
            d_b[i] = from_f32<T>(d_beta[i] * s * sb * (1.0f - sb));
            acc_alog += dg * (-A * softplus_f(x));
            acc_dtb += da;
        }
    }
    lane_sum[0][threadIdx.y][threadIdx.x] = acc_alog;
    lane_sum[1][threadIdx.y][threadIdx.x] = acc_dtb;
    __syncthreads();
    if (threadIdx.y == 0 && h < H) {
        float sa = 0.0f, sd = 0.0f;
#pragma unroll
        for (int k = 0; k < kGateRowLanes; ++k) {
            sa += lane_sum[0][k][threadIdx.x];
            sd += lane_sum[1][k][threadIdx.x];
        }
        partial[slice * 2 * H + h] = sa;
        partial[slice * 2 * H + H + h] = sd;
    }
}

}  // namespace olmo::kernels
