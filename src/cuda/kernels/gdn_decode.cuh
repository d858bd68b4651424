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

#include <cooperative_groups.h>

#include "gdn_gates.cuh"
#include "gdn_recurrent.cuh"
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
    auto key = [&](int i) { return s_k[i]; };
    const float hk = decay_dot(col, alpha, Dk, key);
    const float u = beta * (v - hk);
    const float out = update_dot(col, u, Dk, key, [&](int i) { return s_q[i]; });
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
        const float g = gdn_log_decay(to_f32(p.a[bh]), to_f32(p.A_log[h]), to_f32(p.dt_bias[h]));
        const float beta = gdn_write_strength(to_f32(p.b[bh]), p.beta_scale);
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

// The same step spread over a thread-block cluster per (sequence b, head h), for H = Hk (no GVA):
// block `s` of the cluster owns the 32 state columns s·32 .. s·32 + 31 (lane = column) and splits
// the Dk rows of each column over its 4 warps (KP ≥ ⌈Dk/4⌉ rows each), so a layer's state is
// read by B·H·⌈Dv/32⌉ blocks instead of B·Hk. Every block computes the conv, SiLU and L2 norm of
// the head's q and k itself; the v channels of its columns are its own. Across the cluster, two
// barriers: the first publishes each block's sum of squares of o for the gated RMSNorm (read by
// the others through distributed shared memory) and marks that every block has read the q/k conv
// rows, which block 0 then rolls; the second keeps each block's shared memory alive until the
// others have read it. The state loads are issued first, their latency hidden by the conv phase.
constexpr int kGdnClusterWarps = 4;
constexpr int kGdnClusterColumns = 32;
constexpr int kGdnClusterMaxBlocks = 8;  // portable cluster size: Dv ≤ 256

constexpr int kGdnClusterMaxW = 4;  // conv taps the cluster kernel holds in registers

// The split cluster barrier: arrive when done with the other blocks' shared memory, wait before
// leaving (so that no block's shared memory goes while another still reads it).
__device__ __forceinline__ void cluster_arrive() {
    asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() {
    asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// grid B·H·S blocks of 128 threads in clusters of S = ⌈Dv/32⌉ (≤ 8) along x; W ≤ 4. DK, DV and
// WC fix Dk, Dv and W at compile time (0: read from the arguments): for the released shapes every
// offset is then a constant, which matters in a kernel that is one short latency chain (ncu: the
// generic build spent half its instructions on address arithmetic). Offsets are 32-bit: the
// launcher only takes this kernel for B·H·S ≤ 4·SMs blocks, so every state and conv offset is far
// below 2³¹.
template <class T, int KP, int DK = 0, int DV = 0, int WC = 0>
__global__ void __launch_bounds__(32 * kGdnClusterWarps)
    gdn_decode_cluster_kernel(GdnDecodeArgs<T> p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    constexpr int kThreads = 32 * kGdnClusterWarps, kMaxDk = kGdnClusterWarps * KP;
    constexpr int kConv = (2 * kMaxDk + kThreads - 1) / kThreads;  // q/k channels per thread
    static_assert(DK == 0 || (DK + kGdnClusterWarps - 1) / kGdnClusterWarps <= KP);
    __shared__ float s_q[kMaxDk], s_k[kMaxDk];
    __shared__ float s_hist[2 * kMaxDk][kGdnClusterMaxW - 1];  // block 0: the rolled q/k rows
    __shared__ float s_v[kGdnClusterColumns];
    __shared__ float s_part[2][kGdnClusterWarps][kGdnClusterColumns];
    __shared__ float s_red[kGdnClusterWarps][2];
    __shared__ float s_sumsq;
    const int Dk = DK ? DK : p.Dk, Dv = DV ? DV : p.Dv, H = p.H, W = WC ? WC : p.W;
    const int S =
        DV ? (DV + kGdnClusterColumns - 1) / kGdnClusterColumns : int(cluster.num_blocks());
    const int slice = int(cluster.block_rank());
    const int bh = int(blockIdx.x) / S, b = bh / H, h = bh % H;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int j = slice * kGdnClusterColumns + lane;  // this thread's state column
    const bool has_col = (DV > 0 && DV % kGdnClusterColumns == 0) || j < Dv;
    const int rows = (Dk + kGdnClusterWarps - 1) / kGdnClusterWarps, row0 = warp * rows;
    const int own_rows =
        max(0, min(rows, Dk - row0));  // this warp's key rows: row0 + i, i < own_rows
    const int Kd = H * Dk, Vd = H * Dv;
    const int R = W - 1;

    // Every load that depends on nothing computed here is issued first: the state rows of this
    // thread, the gate inputs, the output gate and norm weight of its column, and the conv rows,
    // taps and inputs of its q/k channels (tid + 128 k) and of its v channel (warp 0).
    float* st = p.state + (bh * Dk + row0) * Dv + j;
    float col[KP];
#pragma unroll
    for (int i = 0; i < KP; ++i) col[i] = (has_col && i < own_rows) ? st[i * Dv] : 0.0f;
    const float a_in = to_f32(p.a[bh]), b_in = to_f32(p.b[bh]);
    const float A_log = to_f32(p.A_log[h]), dt_bias = to_f32(p.dt_bias[h]);
    const int y_at = bh * Dv + j;
    const bool v_lane = warp == 0 && has_col;
    const float z = v_lane ? to_f32(p.z[y_at]) : 0.0f;
    const float o_norm = v_lane ? to_f32(p.o_norm[j]) : 0.0f;
    // Rows, taps and input of each channel; indices are compile-time so that all stay in registers.
    float hist[kConv][kGdnClusterMaxW], taps[kConv][kGdnClusterMaxW], x_in[kConv], x_tap[kConv];
#pragma unroll
    for (int k = 0; k < kConv; ++k) {
        const int idx = threadIdx.x + k * kThreads;
        if (idx >= 2 * Dk) continue;
        const bool is_q = idx < Dk;
        const int c = h * Dk + (is_q ? idx : idx - Dk);
        const T* cst = (is_q ? p.conv_q_state : p.conv_k_state) + b * R * Kd + c;
        const T* w = (is_q ? p.conv_q : p.conv_k) + c * W;
#pragma unroll
        for (int r = 0; r < kGdnClusterMaxW; ++r) {
            if (r < R) hist[k][r] = to_f32(cst[r * Kd]);
            if (r < R) taps[k][r] = to_f32(w[r]);
        }
        x_tap[k] = to_f32(w[R]);
        x_in[k] = to_f32((is_q ? p.q : p.k)[b * Kd + c]);
    }
    float v_hist[kGdnClusterMaxW], v_taps[kGdnClusterMaxW], v_x = 0.0f, v_x_tap = 0.0f;
    const int vc = h * Dv + j;
    T* v_st = p.conv_v_state + b * R * Vd + vc;
    if (v_lane) {
#pragma unroll
        for (int r = 0; r < kGdnClusterMaxW; ++r) {
            if (r < R) v_hist[r] = to_f32(v_st[r * Vd]);
            if (r < R) v_taps[r] = to_f32(p.conv_v[vc * W + r]);
        }
        v_x_tap = to_f32(p.conv_v[vc * W + R]);
        v_x = to_f32(p.v[b * Vd + vc]);
    }

    // Conv + SiLU (taps in ascending order, then the input, as the reference); block 0 keeps the
    // q/k rows for the roll; the v channels are rolled here (each is this thread's alone).
#pragma unroll
    for (int k = 0; k < kConv; ++k) {
        const int idx = threadIdx.x + k * kThreads;
        if (idx >= 2 * Dk) continue;
        float pre = 0.0f;
#pragma unroll
        for (int r = 0; r < kGdnClusterMaxW; ++r)
            if (r < R) pre += taps[k][r] * hist[k][r];
        pre += x_tap[k] * x_in[k];
        (idx < Dk ? s_q[idx] : s_k[idx - Dk]) = silu_f(pre);
        if (slice == 0)
#pragma unroll
            for (int r = 0; r + 1 < kGdnClusterMaxW; ++r)
                if (r < R) s_hist[idx][r] = r + 1 < R ? hist[k][r + 1] : x_in[k];
    }
    if (v_lane) {
        float pre = 0.0f;
#pragma unroll
        for (int r = 0; r < kGdnClusterMaxW; ++r)
            if (r < R) pre += v_taps[r] * v_hist[r];
        pre += v_x_tap * v_x;
        s_v[lane] = silu_f(pre);
#pragma unroll
        for (int r = 0; r + 1 < kGdnClusterMaxW; ++r)
            if (r < R) v_st[r * Vd] = from_f32<T>(r + 1 < R ? v_hist[r + 1] : v_x);
    }
    const float g = gdn_log_decay(a_in, A_log, dt_bias);
    const float beta = gdn_write_strength(b_in, p.beta_scale);
    __syncthreads();

    // L2 norms (eps inside the square root, on the sum of squares): both sums in one reduction.
    float sq = 0.0f, sk = 0.0f;
    for (int i = threadIdx.x; i < Dk; i += kThreads) {
        sq += s_q[i] * s_q[i];
        sk += s_k[i] * s_k[i];
    }
    sq = warp_sum(sq);
    sk = warp_sum(sk);
    if (lane == 0) {
        s_red[warp][0] = sq;
        s_red[warp][1] = sk;
    }
    __syncthreads();
    sq = 0.0f;
    sk = 0.0f;
#pragma unroll
    for (int w = 0; w < kGdnClusterWarps; ++w) {
        sq += s_red[w][0];
        sk += s_red[w][1];
    }
    const float rq = p.q_scale / sqrtf(sq + p.l2_eps), rk = 1.0f / sqrtf(sk + p.l2_eps);

    // One token of the delta rule: h ← α h;  u = β (v − h·k);  h += k u;  o = h·q, the sums over
    // the Dk rows taken per warp, then across the warps in order. q and k are read unscaled and
    // scaled here (every thread has its rq, rk).
    const float alpha = expf(g);
    float kr[KP];
#pragma unroll
    for (int i = 0; i < KP; ++i) kr[i] = i < own_rows ? s_k[row0 + i] * rk : 0.0f;
    auto key = [&](int i) { return kr[i]; };
    float hk = decay_dot(col, alpha, own_rows, key);
    s_part[0][warp][lane] = hk;
    __syncthreads();
    hk = 0.0f;
#pragma unroll
    for (int w = 0; w < kGdnClusterWarps; ++w) hk += s_part[0][w][lane];
    const float u = beta * ((has_col ? s_v[lane] : 0.0f) - hk);
    float o = update_dot(col, u, own_rows, key, [&](int i) { return s_q[row0 + i] * rq; });
#pragma unroll
    for (int i = 0; i < KP; ++i)
        if (has_col && i < own_rows) st[i * Dv] = col[i];
    s_part[1][warp][lane] = o;
    __syncthreads();

    // Gated RMSNorm over the head's Dv outputs: sums of squares exchanged across the cluster.
    float ss = 0.0f;
    if (warp == 0) {
        o = 0.0f;
#pragma unroll
        for (int w = 0; w < kGdnClusterWarps; ++w) o += s_part[1][w][lane];
        const float own = warp_sum(has_col ? o * o : 0.0f);
        if (lane == 0) s_sumsq = own;
    }
    cluster.sync();  // sums published; every block has read the q/k conv rows
    if (warp == 0) ss = warp_sum(lane < S ? *cluster.map_shared_rank(&s_sumsq, lane) : 0.0f);
    cluster_arrive();
    if (slice == 0) {  // the q/k conv-state roll, from the rows kept above
        for (int idx = threadIdx.x; idx < 2 * Dk; idx += kThreads) {
            const bool is_q = idx < Dk;
            const int c = h * Dk + (is_q ? idx : idx - Dk);
            T* cst = (is_q ? p.conv_q_state : p.conv_k_state) + b * R * Kd + c;
            for (int r = 0; r < R; ++r) cst[r * Kd] = from_f32<T>(s_hist[idx][r]);
        }
    }
    if (v_lane) {
        const float rn = 1.0f / sqrtf(ss / float(Dv) + p.norm_eps);
        p.y[y_at] = from_f32<T>(o_norm * (o * rn) * silu_f(z));
    }
    cluster_wait();
#endif
}

}  // namespace olmo::kernels
