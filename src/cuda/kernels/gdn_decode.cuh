// One decoding step of a GDN mixer (T = 1 per sequence) in one kernel: the causal conv + SiLU of
// q, k and v with the rolling conv states, the L2 norms of q and k, the head repeat of GVA, the
// gates, one step of the gated delta rule on the f32 state, and the gated RMSNorm of the output.
//
// One block per (sequence b, key head hk) owns the key head's q and k channels and the channels of
// its rep = H / Hk value heads hk·rep .. hk·rep + rep − 1 (value head h reads key head h / rep, as
// repeat_heads), so each conv-state channel is read and rewritten by exactly one thread of the
// grid: no block reads what another one writes. Phases, separated by block barriers:
//   1. conv + SiLU of the block's 2·Dk + rep·Dv channels into shared memory (f32), and the roll of
//      their conv-state rows (state row r ← row r + 1, last row ← the new input);
//   2. the L2 norms of q (times q_scale) and k, block reductions, applied in shared memory;
//   3. the gates and one token of the recurrence, one thread per state column (looping over the
//      columns when there are more than threads); o replaces v in shared memory;
//   4. per value head, the gated RMSNorm of o (a block reduction) and the only rounding of the
//      kernel, the store of y.
// Sums run in the CPU reference's order (conv taps ascending, state rows ascending).
#pragma once

#include "gdn_gates.cuh"
#include "vec.cuh"

namespace olmo::kernels {

template <class T>
struct GdnDecodeArgs {
    T* y;                               // [B·H, Dv]
    float* state;                       // [B, H, Dk, Dv]
    T *conv_q_state, *conv_k_state;     // [B, W−1, Hk·Dk]
    T* conv_v_state;                    // [B, W−1, H·Dv]
    const T *q, *k, *v;                 // [B, Hk·Dk], [B, Hk·Dk], [B, H·Dv]
    const T *a, *b, *z;                 // [B, H], [B, H], [B, H·Dv]
    const T *conv_q, *conv_k, *conv_v;  // [Hk·Dk, W], [Hk·Dk, W], [H·Dv, W]
    const T *A_log, *dt_bias, *o_norm;  // [H], [H], [Dv]
    int H, Hk, Dk, Dv, W;
    float beta_scale, q_scale, l2_eps, norm_eps;
};

// silu(Σ_j w[c, j] · x̂[j]) over x̂ = (the W−1 state rows of channel c, then x), and the roll of the
// channel's state rows. st points at row 0 of channel c of sequence b; rows are Ch apart.
template <class T>
__device__ __forceinline__ float conv_step(T* st, const T* w, T x, int64_t Ch, int W) {
    const int R = W - 1;
    float pre = 0.0f;
    for (int j = 0; j < R; ++j) pre += to_f32(w[j]) * to_f32(st[j * Ch]);
    pre += to_f32(w[R]) * to_f32(x);
    for (int r = 0; r + 1 < R; ++r) st[r * Ch] = st[(r + 1) * Ch];
    if (R > 0) st[(R - 1) * Ch] = x;
    return silu_f(pre);
}

// One token of the delta rule on state column st[i·Dv], i < Dk (KMAX ≥ Dk registers), as in
// kernels/gdn_recurrent.cuh: h ← α h;  u = β (v − h·k);  h += k u;  returns o = h·q. Not inlined:
// inlined into the kernel's loop over columns, the compiler keeps the Dk row offsets live across
// iterations and spills the column.
template <int KMAX>
__device__ __noinline__ float delta_rule_column(float* st, const float* s_q, const float* s_k,
                                                float v, float g, float beta, int Dk, int Dv) {
    const float alpha = expf(g);
    float col[KMAX];
#pragma unroll
    for (int i = 0; i < KMAX; ++i) col[i] = i < Dk ? st[int64_t(i) * Dv] : 0.0f;
    float hk = 0.0f;
#pragma unroll
    for (int i = 0; i < KMAX; ++i) {
        if (i < Dk) {
            col[i] *= alpha;
            hk += s_k[i] * col[i];
        }
    }
    const float u = beta * (v - hk);
    float out = 0.0f;
#pragma unroll
    for (int i = 0; i < KMAX; ++i) {
        if (i < Dk) {
            col[i] += s_k[i] * u;
            out += s_q[i] * col[i];
        }
    }
#pragma unroll
    for (int i = 0; i < KMAX; ++i)
        if (i < Dk) st[int64_t(i) * Dv] = col[i];
    return out;
}

// grid B·Hk, blockDim a multiple of 32 (at most kMaxThreads); dynamic shared memory
// (2·Dk + rep·Dv) floats.
template <class T, int KMAX, int kMaxThreads>
__global__ void __launch_bounds__(kMaxThreads) gdn_decode_step_kernel(GdnDecodeArgs<T> p) {
    extern __shared__ float smem[];
    const int Hk = p.Hk, Dk = p.Dk, Dv = p.Dv, H = p.H, rep = H / Hk;
    const int64_t b = blockIdx.x / Hk;
    const int hk = int(blockIdx.x % Hk);
    const int64_t Kd = int64_t(Hk) * Dk, Vd = int64_t(H) * Dv;
    const int R = p.W - 1;
    float* s_q = smem;           // [Dk]
    float* s_k = smem + Dk;      // [Dk]
    float* s_v = smem + 2 * Dk;  // [rep·Dv] v, then o

    // 1. conv + SiLU and the conv-state roll.
    for (int idx = threadIdx.x; idx < 2 * Dk + rep * Dv; idx += blockDim.x) {
        if (idx < 2 * Dk) {
            const bool is_q = idx < Dk;
            const int64_t c = int64_t(hk) * Dk + (is_q ? idx : idx - Dk);
            T* st = (is_q ? p.conv_q_state : p.conv_k_state) + b * R * Kd + c;
            const T* w = (is_q ? p.conv_q : p.conv_k) + c * p.W;
            const T x = (is_q ? p.q : p.k)[b * Kd + c];
            (is_q ? s_q : s_k)[is_q ? idx : idx - Dk] = conv_step(st, w, x, Kd, p.W);
        } else {
            const int jj = idx - 2 * Dk;
            const int64_t c = int64_t(hk) * rep * Dv + jj;
            s_v[jj] = conv_step(p.conv_v_state + b * R * Vd + c, p.conv_v + c * p.W,
                                p.v[b * Vd + c], Vd, p.W);
        }
    }
    __syncthreads();

    // 2. L2 norms (eps inside the square root, on the sum of squares).
    float sq = 0.0f, sk = 0.0f;
    for (int i = threadIdx.x; i < Dk; i += blockDim.x) {
        sq += s_q[i] * s_q[i];
        sk += s_k[i] * s_k[i];
    }
    sq = block_sum(sq);
    sk = block_sum(sk);
    const float rq = p.q_scale / sqrtf(sq + p.l2_eps), rk = 1.0f / sqrtf(sk + p.l2_eps);
    for (int i = threadIdx.x; i < Dk; i += blockDim.x) {
        s_q[i] *= rq;
        s_k[i] *= rk;
    }
    __syncthreads();

    // 3. Gates and one step of the delta rule per state column.
    for (int jj = threadIdx.x; jj < rep * Dv; jj += blockDim.x) {
        const int h = hk * rep + jj / Dv, j = jj % Dv;
        const int64_t bh = b * H + h;
        const float g =
            -expf(to_f32(p.A_log[h])) * softplus_f(to_f32(p.a[bh]) + to_f32(p.dt_bias[h]));
        const float beta = p.beta_scale * sigmoid_f(to_f32(p.b[bh]));
        s_v[jj] =
            delta_rule_column<KMAX>(p.state + bh * Dk * Dv + j, s_q, s_k, s_v[jj], g, beta, Dk, Dv);
    }
    __syncthreads();

    // 4. Gated RMSNorm of each value head's output.
    for (int r = 0; r < rep; ++r) {
        const float* o = s_v + r * Dv;
        float ss = 0.0f;
        for (int j = threadIdx.x; j < Dv; j += blockDim.x) ss += o[j] * o[j];
        ss = block_sum(ss);
        const float rn = 1.0f / sqrtf(ss / float(Dv) + p.norm_eps);
        const int64_t row = (b * H + hk * rep + r) * Dv;
        for (int j = threadIdx.x; j < Dv; j += blockDim.x)
            p.y[row + j] =
                from_f32<T>(to_f32(p.o_norm[j]) * (o[j] * rn) * silu_f(to_f32(p.z[row + j])));
    }
}

}  // namespace olmo::kernels
