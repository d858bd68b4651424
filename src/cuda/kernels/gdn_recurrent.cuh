// Gated delta rule, token by token (spec §2.6.7), the decode path and the f32 path of prefill.
//
// Every column j of the state h = Sᵀ ∈ R^{Dk×Dv} evolves independently given q_t and k_t:
//   h[:, j] ← α h[:, j];  u_j = β (v_j − h[:, j]·k);  h[:, j] += k u_j;  o_j = h[:, j]·q
// so one thread owns one column, in registers (KMAX ≥ Dk, unrolled so that the array stays in
// registers), for the whole sequence: the state is read and written once per call.
#pragma once

#include "common.cuh"

namespace olmo::kernels {

// The two halves of one step on a column h held in registers, over its first n rows (N ≥ n,
// unrolled), with k(i) and q(i) the rows' key and query values: decay_dot scales h by α and returns
// h·k; update_dot adds k u and returns h·q. Also the decode kernels' step (kernels/gdn_decode.cuh).
template <int N, class K>
__device__ __forceinline__ float decay_dot(float (&col)[N], float alpha, int n, K k) {
    float hk = 0.0f;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        if (i < n) {
            col[i] *= alpha;
            hk += k(i) * col[i];
        }
    }
    return hk;
}

template <int N, class K, class Q>
__device__ __forceinline__ float update_dot(float (&col)[N], float u, int n, K k, Q q) {
    float out = 0.0f;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        if (i < n) {
            col[i] += k(i) * u;
            out += q(i) * col[i];
        }
    }
    return out;
}

// grid (B·H, ceil(Dv / blockDim.x)); dynamic shared memory 2·Dk floats.
template <class T, int KMAX>
__global__ void gdn_recurrent_kernel(T* __restrict__ o, float* __restrict__ state,
                                     const T* __restrict__ q, const T* __restrict__ k,
                                     const T* __restrict__ v, const float* __restrict__ g,
                                     const float* __restrict__ beta, int T_len, int H, int Dk,
                                     int Dv) {
    extern __shared__ float s_qk[];
    float* s_q = s_qk;
    float* s_k = s_qk + Dk;
    const int bh = blockIdx.x, b = bh / H, h = bh % H;
    const int j = blockIdx.y * blockDim.x + threadIdx.x;
    const bool active = j < Dv;
    float* st = state + size_t(bh) * Dk * Dv;
    float col[KMAX];
#pragma unroll
    for (int i = 0; i < KMAX; ++i) col[i] = (active && i < Dk) ? st[size_t(i) * Dv + j] : 0.0f;
    for (int t = 0; t < T_len; ++t) {
        const size_t tok = size_t(b) * T_len + t;
        const size_t head = tok * H + h;
        __syncthreads();  // the previous step is done with s_q, s_k
        for (int i = threadIdx.x; i < Dk; i += blockDim.x) {
            s_q[i] = to_f32(q[head * Dk + i]);
            s_k[i] = to_f32(k[head * Dk + i]);
        }
        __syncthreads();
        const float alpha = expf(g[head]), b_t = beta[head];
        if (active) {
            auto key = [&](int i) { return s_k[i]; };
            const float hk = decay_dot(col, alpha, Dk, key);
            const float u = b_t * (to_f32(v[head * Dv + j]) - hk);
            const float out = update_dot(col, u, Dk, key, [&](int i) { return s_q[i]; });
            o[head * Dv + j] = from_f32<T>(out);
        }
    }
    if (active) {
#pragma unroll
        for (int i = 0; i < KMAX; ++i)
            if (i < Dk) st[size_t(i) * Dv + j] = col[i];
    }
}

}  // namespace olmo::kernels
