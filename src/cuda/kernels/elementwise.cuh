// Elementwise kernels: add, scale, fill, SwiGLU and its backward. Grid-stride loops
// over packs of N elements (N = 16 / sizeof(T) when every pointer is 16-byte aligned, else 1), then
// the n % N tail element by element. Every element is read before it is written by the same thread,
// so outputs may alias inputs.
#pragma once

#include "core/rng.h"
#include "vec.cuh"

namespace olmo::kernels {

struct AddOp {
    __device__ float operator()(float a, float b) const { return a + b; }
};
struct ScaleOp {
    float s;
    __device__ float operator()(float x) const { return s * x; }
};
struct SwigluOp {
    __device__ float operator()(float gate, float up) const { return silu_f(gate) * up; }
};

// out = f(x)
template <class T, int N, class F>
__global__ void map1_kernel(T* out, const T* x, int64_t n, F f) {
    const int64_t packs = n / N;
    for (int64_t p = grid_index(); p < packs; p += grid_stride()) {
        float v[N];
        load_f32<N>(v, x + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) v[k] = f(v[k]);
        store_f32<N>(out + p * N, v);
    }
    const int64_t i = packs * N + grid_index();
    if (i < n) out[i] = from_f32<T>(f(to_f32(x[i])));
}

// out = f(a, b)
template <class T, int N, class F>
__global__ void map2_kernel(T* out, const T* a, const T* b, int64_t n, F f) {
    const int64_t packs = n / N;
    for (int64_t p = grid_index(); p < packs; p += grid_stride()) {
        float va[N], vb[N];
        load_f32<N>(va, a + p * N);
        load_f32<N>(vb, b + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) va[k] = f(va[k], vb[k]);
        store_f32<N>(out + p * N, va);
    }
    const int64_t i = packs * N + grid_index();
    if (i < n) out[i] = from_f32<T>(f(to_f32(a[i]), to_f32(b[i])));
}

// Every element of out (n elements of E, the element's bit pattern) = value. With kPacked, 16-byte
// stores (out 16-byte aligned).
template <class E, bool kPacked>
__global__ void fill_kernel(E* out, int64_t n, E value) {
    constexpr int N = kPacked ? int(16 / sizeof(E)) : 1;
    const int64_t packs = n / N;
    Pack<E, N> v;
#pragma unroll
    for (int k = 0; k < N; ++k) v.v[k] = value;
    for (int64_t p = grid_index(); p < packs; p += grid_stride()) store_pack<N>(out + p * N, v);
    const int64_t i = packs * N + grid_index();
    if (i < n) out[i] = value;
}

// out[i] = rng.trunc_normal(i, std) rounded to f32, then to T (the host's initialisation).
template <class T>
__global__ void trunc_normal_kernel(T* out, int64_t n, Rng rng, double std) {
    for (int64_t i = grid_index(); i < n; i += grid_stride())
        out[i] = from_f32<T>(float(rng.trunc_normal(uint64_t(i), std)));
}

// d_gate = d_out · up · silu'(gate), d_up = d_out · silu(gate)
template <int N>
__device__ __forceinline__ void swiglu_backward_pack(float (&dg)[N], float (&du)[N],
                                                     const float (&d)[N], const float (&g)[N],
                                                     const float (&u)[N]) {
#pragma unroll
    for (int k = 0; k < N; ++k) {
        dg[k] = d[k] * u[k] * silu_grad_f(g[k]);
        du[k] = d[k] * silu_f(g[k]);
    }
}

template <class T, int N>
__global__ void swiglu_backward_kernel(T* d_gate, T* d_up, const T* d_out, const T* gate,
                                       const T* up, int64_t n) {
    const int64_t packs = n / N;
    for (int64_t p = grid_index(); p < packs; p += grid_stride()) {
        float d[N], g[N], u[N], dg[N], du[N];
        load_f32<N>(d, d_out + p * N);
        load_f32<N>(g, gate + p * N);
        load_f32<N>(u, up + p * N);
        swiglu_backward_pack<N>(dg, du, d, g, u);
        store_f32<N>(d_gate + p * N, dg);
        store_f32<N>(d_up + p * N, du);
    }
    const int64_t i = packs * N + grid_index();
    if (i < n) {
        float d[1] = {to_f32(d_out[i])}, g[1] = {to_f32(gate[i])}, u[1] = {to_f32(up[i])};
        float dg[1], du[1];
        swiglu_backward_pack<1>(dg, du, d, g, u);
        d_gate[i] = from_f32<T>(dg[0]);
        d_up[i] = from_f32<T>(du[0]);
    }
}

}  // namespace olmo::kernels
