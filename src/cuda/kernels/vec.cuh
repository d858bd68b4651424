// Device helpers of the memory-bound ("small") ops: packed 16-byte accesses, activations with the
// accurate libm functions (expf, not __expf, so that f32 results stay within 1e-6 of the CPU),
// block reductions in f32/f64/i64, and the final step of the deterministic column reductions.
#pragma once

#include <climits>
#include <cstdint>

#include "common.cuh"

namespace olmo::kernels {

// Grid-stride loops: this thread's first index and the stride.
__device__ __forceinline__ int64_t grid_index() {
    return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
    return int64_t(gridDim.x) * blockDim.x;
}

// Elements of T in one 16-byte access.
template <class T>
constexpr int kVec16 = int(16 / sizeof(T));

// N consecutive elements, loaded and stored as one access of N·sizeof(T) bytes (the address must be
// aligned to that size; launchers check it and fall back to N = 1).
template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
    T v[N];
};

template <int N, class T>
__device__ __forceinline__ Pack<T, N> load_pack(const T* p) {
    return *reinterpret_cast<const Pack<T, N>*>(p);
}

template <int N, class T>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, N>& x) {
    *reinterpret_cast<Pack<T, N>*>(p) = x;
}

// N elements of p as f32.
template <int N, class T>
__device__ __forceinline__ void load_f32(float (&out)[N], const T* p) {
    const Pack<T, N> x = load_pack<N>(p);
#pragma unroll
    for (int k = 0; k < N; ++k) out[k] = to_f32(x.v[k]);
}

// Rounds N f32 values once to T and stores them at p.
template <int N, class T>
__device__ __forceinline__ void store_f32(T* p, const float (&in)[N]) {
    Pack<T, N> x;
#pragma unroll
    for (int k = 0; k < N; ++k) x.v[k] = from_f32<T>(in[k]);
    store_pack<N>(p, x);
}

// A word with every bit set (NaN in every float format), for rows that have no valid source.
template <class W>
__device__ __forceinline__ W all_ones();
template <>
__device__ __forceinline__ uint16_t all_ones<uint16_t>() {
    return 0xFFFFu;
}
template <>
__device__ __forceinline__ uint32_t all_ones<uint32_t>() {
    return 0xFFFFFFFFu;
}
template <>
__device__ __forceinline__ uint2 all_ones<uint2>() {
    return make_uint2(0xFFFFFFFFu, 0xFFFFFFFFu);
}
template <>
__device__ __forceinline__ uint4 all_ones<uint4>() {
    return make_uint4(0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu);
}

// Activations in the CPU reference's form, with the accurate expf.
__device__ __forceinline__ float sigmoid_f(float x) {
    return 1.0f / (1.0f + expf(-x));
}
__device__ __forceinline__ float silu_f(float x) {
    return x * sigmoid_f(x);
}
// d silu(x) / dx = σ(x) (1 + x (1 − σ(x)))
__device__ __forceinline__ float silu_grad_f(float x) {
    const float s = sigmoid_f(x);
    return s * (1.0f + x * (1.0f - s));
}

// Block-wide reductions (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// Each has its own shared array and synchronises before writing it, so calls may follow each other.
__device__ __forceinline__ float block_max(float v) {
    __shared__ float partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    const int warps = int(blockDim.x + 31) >> 5;
    v = lane < warps ? partial[lane] : -INFINITY;
    return warp_max(v);
}

__device__ __forceinline__ double warp_sum_f64(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double block_sum_f64(double v) {
    __shared__ double partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum_f64(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    const int warps = int(blockDim.x + 31) >> 5;
    v = lane < warps ? partial[lane] : 0.0;
    return warp_sum_f64(v);
}

__device__ __forceinline__ long long block_sum_i64(long long v) {
    __shared__ long long partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    const int warps = int(blockDim.x + 31) >> 5;
    v = lane < warps ? partial[lane] : 0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ long long block_min_i64(long long v) {
    __shared__ long long partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    const int warps = int(blockDim.x + 31) >> 5;
    v = lane < warps ? partial[lane] : LLONG_MAX;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Column reductions (weight gradients) run in two deterministic steps: blocks write f32 partial
// sums partial[s·stride + k] over S slices of the rows, then this kernel adds them in slice order:
//   out[k] += Σ_s partial[s·stride + k]   (rounded once to T).
template <class T>
__global__ void add_partials_kernel(T* out, const float* partial, int64_t S, int64_t K,
                                    int64_t stride) {
    const int64_t step = int64_t(gridDim.x) * blockDim.x;
    for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < K; k += step) {
        float s = 0.0f;
        for (int64_t i = 0; i < S; ++i) s += partial[i * stride + k];
        out[k] = from_f32<T>(to_f32(out[k]) + s);
    }
}

}  // namespace olmo::kernels
