// Causal depthwise convolution over time with kernel width W ≤ K, then SiLU, with the rolling state
// of decoding, and its training backward (zero initial state).
//
// A thread owns a pack of N channels of one sequence and a segment of time steps, and slides a
// window of the last K inputs x̂ in registers (x̂ = x preceded by the W−1 rows of the state, or by
// zeros). Weights are kept right-aligned in K taps: wr[k] = w[c, k − (K − W)] for k ≥ K − W, else
// 0, so every register index is a compile-time constant; window slots left of the W−1 look-back
// hold zeros or older inputs, both multiplied by zero weights. Sums run over taps j = 0..W−1 in
// order, as on the CPU.
#pragma once

#include "vec.cuh"

namespace olmo::kernels {

// Loads the K taps of channels c0..c0+N−1, right-aligned (see above).
template <class T, int N, int K>
__device__ __forceinline__ void load_taps(float (&wr)[K][N], const T* w, int64_t c0, int W) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
        const int j = k - (K - W);
#pragma unroll
        for (int v = 0; v < N; ++v) wr[k][v] = j >= 0 ? to_f32(w[(c0 + v) * W + j]) : 0.0f;
    }
}

// The taps reversed: wb[k] = w[c, K−1−k] for K−1−k < W, else 0.
template <class T, int N, int K>
__device__ __forceinline__ void load_taps_reversed(float (&wb)[K][N], const T* w, int64_t c0,
                                                   int W) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
        const int j = K - 1 - k;
#pragma unroll
        for (int v = 0; v < N; ++v) wb[k][v] = j < W ? to_f32(w[(c0 + v) * W + j]) : 0.0f;
    }
}

// win[k] ← win[k+1], win[K−1] ← in
template <int N, int K>
__device__ __forceinline__ void shift_in(float (&win)[K][N], const float (&in)[N]) {
#pragma unroll
    for (int k = 0; k + 1 < K; ++k)
#pragma unroll
        for (int v = 0; v < N; ++v) win[k][v] = win[k + 1][v];
#pragma unroll
    for (int v = 0; v < N; ++v) win[K - 1][v] = in[v];
}

template <int N, int K>
__device__ __forceinline__ void dot_taps(float (&out)[N], const float (&wr)[K][N],
                                         const float (&win)[K][N]) {
#pragma unroll
    for (int v = 0; v < N; ++v) out[v] = 0.0f;
#pragma unroll
    for (int k = 0; k < K; ++k)
#pragma unroll
        for (int v = 0; v < N; ++v) out[v] += wr[k][v] * win[k][v];
}

// Before the first step t0, win[k] = x̂[t0 − K + k] for the W−1 slots k ≥ K − W + 1, zeros
// elsewhere. x̂[τ] for τ < 0 is state row W−1+τ (or zero without a state). xb, sb: sequence b's x
// [T, Ch] and state [W−1, Ch] (or null), offset to channel c0.
template <class T, int N, int K>
__device__ __forceinline__ void load_history(float (&win)[K][N], const T* xb, const T* sb,
                                             int64_t t0, int64_t Ch, int W) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
        const int64_t tau = t0 - K + k;
        const bool used = k >= K - W + 1;
        if (used && tau >= 0) {
            load_f32<N>(win[k], xb + tau * Ch);
        } else if (used && sb != nullptr) {
            load_f32<N>(win[k], sb + (W - 1 + tau) * Ch);
        } else {
#pragma unroll
            for (int v = 0; v < N; ++v) win[k][v] = 0.0f;
        }
    }
}

// out[b, t, c] = silu(Σ_j w[c, j] x̂[t − (W−1) + j, c]) for t in this thread's segment
// [seg·seg_len, +seg_len). With update_state (one segment covers all of T), the thread then writes
// the last W−1 rows of x̂ into the state (it has read the old state already, and no other thread
// reads these channels).
template <class T, int N, int K>
__global__ void conv1d_silu_kernel(T* out, const T* x, const T* w, T* state, int64_t B, int64_t Tn,
                                   int64_t Ch, int W, int64_t seg_len, bool update_state) {
    const int64_t packs = Ch / N, segs = (Tn + seg_len - 1) / seg_len;
    for (int64_t idx = grid_index(); idx < B * segs * packs; idx += grid_stride()) {
        const int64_t c0 = (idx % packs) * N, seg = (idx / packs) % segs, b = idx / (packs * segs);
        const int64_t t0 = seg * seg_len, t1 = min(Tn, t0 + seg_len);
        const T* xb = x + b * Tn * Ch + c0;
        T* sb = state ? state + b * (W - 1) * Ch + c0 : nullptr;
        float wr[K][N], win[K][N];
        load_taps<T, N, K>(wr, w, c0, W);
        load_history<T, N, K>(win, xb, sb, t0, Ch, W);
        for (int64_t t = t0; t < t1; ++t) {
            float in[N], y[N];
            load_f32<N>(in, xb + t * Ch);
            shift_in<N, K>(win, in);
            dot_taps<N, K>(y, wr, win);
#pragma unroll
            for (int v = 0; v < N; ++v) y[v] = silu_f(y[v]);
            store_f32<N>(out + (b * Tn + t) * Ch + c0, y);
        }
        if (update_state && sb != nullptr) {
            // win[k] = x̂[T − K + k]; new state row r = x̂[T − (W−1) + r] = win[K − W + 1 + r].
#pragma unroll
            for (int k = 0; k < K; ++k) {
                const int r = k - (K - W + 1);
                if (r >= 0) store_f32<N>(sb + r * Ch, win[k]);
            }
        }
    }
}

// New state rows from x alone (T ≥ W−1; the launcher runs it after conv1d_silu_kernel, which read
// the old state): state[b, r, c] = x[b, T − (W−1) + r, c].
template <class T, int N>
__global__ void conv_state_from_x_kernel(T* state, const T* x, int64_t B, int64_t Tn, int64_t Ch,
                                         int W) {
    const int64_t packs = Ch / N, R = W - 1;
    for (int64_t idx = grid_index(); idx < B * R * packs; idx += grid_stride()) {
        const int64_t c0 = (idx % packs) * N, r = (idx / packs) % R, b = idx / (packs * R);
        store_pack<N>(state + (b * R + r) * Ch + c0,
                      load_pack<N>(x + (b * Tn + Tn - R + r) * Ch + c0));
    }
}

// Backward, input gradient: with dpre[t] = dy[t] · silu'(pre[t]) (pre recomputed from x, zero
// initial state) and dpre[t ≥ T] = 0,
//   d_x[τ, c] = Σ_j w[c, j] dpre[τ + W−1 − j, c]
// for τ in this thread's segment. The thread walks t from the segment start to its end + W−2,
// keeping the last K dpre values in registers; d_x[τ] is complete at t = τ + W−1.
template <class T, int N, int K>
__global__ void conv1d_silu_backward_dx_kernel(T* d_x, const T* d_out, const T* x, const T* w,
                                               int64_t B, int64_t Tn, int64_t Ch, int W,
                                               int64_t seg_len) {
    const int64_t packs = Ch / N, segs = (Tn + seg_len - 1) / seg_len;
    for (int64_t idx = grid_index(); idx < B * segs * packs; idx += grid_stride()) {
        const int64_t c0 = (idx % packs) * N, seg = (idx / packs) % segs, b = idx / (packs * segs);
        const int64_t t0 = seg * seg_len, t1 = min(Tn, t0 + seg_len);
        const T* xb = x + b * Tn * Ch + c0;
        const T* gb = d_out + b * Tn * Ch + c0;
        float wr[K][N], wb[K][N], win[K][N], dwin[K][N];
        load_taps<T, N, K>(wr, w, c0, W);
        load_taps_reversed<T, N, K>(wb, w, c0, W);
        load_history<T, N, K>(win, xb, static_cast<const T*>(nullptr), t0, Ch, W);
#pragma unroll
        for (int k = 0; k < K; ++k)
#pragma unroll
            for (int v = 0; v < N; ++v) dwin[k][v] = 0.0f;
        for (int64_t t = t0; t < t1 + W - 1; ++t) {
            float dp[N];
            if (t < Tn) {
                float in[N], pre[N], g[N];
                load_f32<N>(in, xb + t * Ch);
                shift_in<N, K>(win, in);
                dot_taps<N, K>(pre, wr, win);
                load_f32<N>(g, gb + t * Ch);
#pragma unroll
                for (int v = 0; v < N; ++v) dp[v] = g[v] * silu_grad_f(pre[v]);
            } else {
#pragma unroll
                for (int v = 0; v < N; ++v) dp[v] = 0.0f;
            }
            shift_in<N, K>(dwin, dp);  // dwin[K−1−m] = dpre[t − m]
            const int64_t tau = t - (W - 1);
            if (tau >= t0) {
                // Σ_j w_j dpre[t − j], j = 0..W−1 ascending: dpre[t − j] is dwin[K−1−j], w_j is
                // wb[K−1−j].
                float s[N];
#pragma unroll
                for (int v = 0; v < N; ++v) s[v] = 0.0f;
#pragma unroll
                for (int k = K - 1; k >= 0; --k)
#pragma unroll
                    for (int v = 0; v < N; ++v) s[v] += wb[k][v] * dwin[k][v];
                store_f32<N>(d_x + (b * Tn + tau) * Ch + c0, s);
            }
        }
    }
}

// Backward, weight gradient partial sums: block (32 channels, kConvRowLanes lanes), grid
// (ceil(Ch / 32), groups). Group g covers rows [g·kConvRowLanes·sub_len, +kConvRowLanes·sub_len) of
// sequence g / groups_per_seq; lane y the sub-range [y·sub_len, +sub_len) of it. Each thread sums
// dpre[t, c] · x̂[t − (W−1) + j, c] over its rows for every tap j; the lanes are then added in
// order:
//   partial[(g · Ch + c) · W + j].
constexpr int kConvRowLanes = 8;

template <class T, int K>
__global__ void conv1d_silu_backward_dw_kernel(float* partial, const T* d_out, const T* x,
                                               const T* w, int64_t Tn, int64_t Ch, int W,
                                               int64_t sub_len, int64_t groups_per_seq) {
    __shared__ float lane_sum[kConvRowLanes][K][32];
    const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
    const int64_t g = blockIdx.y, b = g / groups_per_seq;
    const int64_t t0 = ((g % groups_per_seq) * kConvRowLanes + threadIdx.y) * sub_len;
    const int64_t t1 = min(Tn, t0 + sub_len);
    float acc[K][1];
#pragma unroll
    for (int k = 0; k < K; ++k) acc[k][0] = 0.0f;
    if (c < Ch && t0 < Tn) {
        const T* xb = x + b * Tn * Ch + c;
        const T* gb = d_out + b * Tn * Ch + c;
        float wr[K][1], win[K][1];
        load_taps<T, 1, K>(wr, w, c, W);
        load_history<T, 1, K>(win, xb, static_cast<const T*>(nullptr), t0, Ch, W);
        for (int64_t t = t0; t < t1; ++t) {
            const float in[1] = {to_f32(xb[t * Ch])};
            shift_in<1, K>(win, in);
            float pre[1];
            dot_taps<1, K>(pre, wr, win);
            const float dp = to_f32(gb[t * Ch]) * silu_grad_f(pre[0]);
#pragma unroll
            for (int k = 0; k < K; ++k) acc[k][0] += dp * win[k][0];
        }
    }
#pragma unroll
    for (int k = 0; k < K; ++k) lane_sum[threadIdx.y][k][threadIdx.x] = acc[k][0];
    __syncthreads();
    if (threadIdx.y == 0 && c < Ch) {
        for (int j = 0; j < W; ++j) {
            const int k = K - W + j;
            float s = 0.0f;
#pragma unroll
            for (int y = 0; y < kConvRowLanes; ++y) s += lane_sum[y][k][threadIdx.x];
            partial[(g * Ch + c) * W + j] = s;
        }
    }
}

}  // namespace olmo::kernels
