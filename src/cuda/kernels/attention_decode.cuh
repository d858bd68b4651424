// Split-key ("flash-decoding") attention for a few queries per sequence (decode, short
// continuations): bf16 q/k/v with head dim HD = 64 or 128. Contract and masking as in attention.cuh
// (query at absolute position p = kv_len − Tq + qi sees key j iff j ≤ p and (window == 0 or
// p − j < window); GQA: query head h reads kv head h / (Hq / Hkv)).
//
// Grid (splits, Hq, B·Tq): the visible keys lo .. p of a query are cut into `active` ≤ splits runs
// of `chunk` keys (a multiple of kDecodeSplitKeys, at least ceil(n / splits)); blocks past the
// last run exit at once. In a block, a K or V row is HD / 8 lanes of 16-byte vectors, so a warp
// reads 32·8 / HD rows per load, kDecodeUnroll loads of K and of V in flight per lane; each row
// group of lanes keeps its own online softmax in base 2 (scores scaled by scale·log2e), merged by
// shuffles in the warp, then across the warps in shared memory.
//
// One run: the block writes the output. Several: each writes its (max, sum) and unnormalised
// output to the partials, and the last block of the query to finish (an atomic counter per output
// row) combines them and sets the counter back to 0, so the counters are zero between launches
// (the kernel can be replayed from a CUDA graph).
#pragma once

#include "attention.cuh"

namespace olmo::kernels {

constexpr int kDecodeWarps = 4, kDecodeThreads = 32 * kDecodeWarps;
constexpr int kDecodeUnroll = 4;      // 16-byte loads of K and of V in flight per lane
constexpr int kDecodeSplitKeys = 32;  // runs of keys are multiples of this (and never shorter)
constexpr int kDecodeMaxSplits = 64;  // at most one per thread (the combine)
static_assert(kDecodeMaxSplits <= kDecodeThreads);

__device__ __forceinline__ void unpack_bf16x8(const uint4& raw, float (&x)[8]) {
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 f = unpack_bf16(w[i]);
        x[2 * i] = f.x;
        x[2 * i + 1] = f.y;
    }
}

// part_ml[row · splits + s] = (max, sum) and part_o[(row · splits + s) · HD ..] = the output of run
// s, unnormalised, for output row row = (b·Tq + qi)·Hq + hq; counters[row] is 0 before and after.
// Unused (may be null) when splits == 1.
template <int HD>
__global__ void __launch_bounds__(kDecodeThreads)
    attention_decode_kernel(__nv_bfloat16* __restrict__ out, const __nv_bfloat16* __restrict__ q,
                            const __nv_bfloat16* __restrict__ k,
                            const __nv_bfloat16* __restrict__ v, const int* __restrict__ kv_lens,
                            float2* __restrict__ part_ml, float* __restrict__ part_o,
                            int* __restrict__ counters, int Tq, int L, int Hq, int Hkv, int window,
                            float scale, int splits) {
    static_assert(HD == 64 || HD == 128, "head dim 64 or 128");
    constexpr int LPR = HD / 8;                     // lanes per row
    constexpr int RPL = 32 / LPR;                   // rows per warp load
    constexpr int WARP_KEYS = kDecodeUnroll * RPL;  // keys per warp step
    constexpr int BLOCK_KEYS = kDecodeWarps * WARP_KEYS;
    const int split = blockIdx.x, hq = blockIdx.y, bq = blockIdx.z;  // bq = b·Tq + qi
    const int b = bq / Tq, qi = bq % Tq;
    const int hk = hq / (Hq / Hkv);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int sub = lane / LPR, col = (lane % LPR) * 8;  // this lane's row in a load, its dims
    const size_t row = size_t(bq) * Hq + hq;             // output row
    const int p = kv_lens[b] - Tq + qi;                  // absolute position of this query
    const int lo = window > 0 ? max(0, p - window + 1) : 0;
    const int n = p + 1 - lo;  // visible keys: ≥ 1 within the contract (kv_len ≥ Tq)
    if (n <= 0) {              // outside it: zeros rather than NaN
        if (split == 0)
            for (int d = threadIdx.x; d < HD; d += kDecodeThreads)
                out[row * HD + d] = __float2bfloat16(0.0f);
        return;
    }
    const int chunk = int(ceil_div(ceil_div(n, splits), kDecodeSplitKeys)) * kDecodeSplitKeys;
    const int active = int(ceil_div(n, chunk));
    if (split >= active) return;
    const int k0 = lo + split * chunk, k1 = min(k0 + chunk, p + 1);  // this block's keys

    float qf[8], acc[8];
    unpack_bf16x8(*reinterpret_cast<const uint4*>(q + row * HD + col), qf);
    const float sl2 = scale * kLog2e;  // base-2 exponent
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        qf[i] *= sl2;
        acc[i] = 0.0f;
    }
    const size_t stride = size_t(Hkv) * HD;
    const __nv_bfloat16* kbase = k + (size_t(b) * L * Hkv + hk) * HD + col;
    const __nv_bfloat16* vbase = v + (size_t(b) * L * Hkv + hk) * HD + col;
    float m = -INFINITY, l = 0.0f;  // this row group's running max and sum
    for (int j0 = k0 + warp * WARP_KEYS; j0 < k1; j0 += BLOCK_KEYS) {
        uint4 kr[kDecodeUnroll], vr[kDecodeUnroll];
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u) {
            const int j = j0 + u * RPL + sub;
            kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
            if (j < k1) {
                kr[u] = *reinterpret_cast<const uint4*>(kbase + size_t(j) * stride);
                vr[u] = *reinterpret_cast<const uint4*>(vbase + size_t(j) * stride);
            }
        }
        float s[kDecodeUnroll];
        float m_new = m;
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u) {
            float x[8];
            unpack_bf16x8(kr[u], x);
            float dot = 0.0f;
#pragma unroll
            for (int i = 0; i < 8; ++i) dot += qf[i] * x[i];
#pragma unroll
            for (int o = LPR / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
            s[u] = j0 + u * RPL + sub < k1 ? dot : -INFINITY;
            m_new = fmaxf(m_new, s[u]);
        }
        if (m_new == -INFINITY) continue;     // no key for this row group yet (uniform in it)
        const float corr = exp2f(m - m_new);  // 0 while m = −∞
        l *= corr;
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[i] *= corr;
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u) {
            const float pj = exp2f(s[u] - m_new);  // 0 for masked keys
            l += pj;
            float x[8];
            unpack_bf16x8(vr[u], x);
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[i] += pj * x[i];
        }
        m = m_new;
    }
    // Merge the row groups of the warp (lanes LPR apart hold the same dims).
#pragma unroll
    for (int o = LPR; o < 32; o <<= 1) {
        const float m_o = __shfl_xor_sync(0xffffffffu, m, o);
        const float l_o = __shfl_xor_sync(0xffffffffu, l, o);
        const float mt = fmaxf(m, m_o);
        const float a = m == -INFINITY ? 0.0f : exp2f(m - mt);
        const float c = m_o == -INFINITY ? 0.0f : exp2f(m_o - mt);
        l = l * a + l_o * c;
#pragma unroll
        for (int i = 0; i < 8; ++i)
            acc[i] = acc[i] * a + __shfl_xor_sync(0xffffffffu, acc[i], o) * c;
        m = mt;
    }
    // Merge the warps: thread d < HD takes dim d. Warp 0 saw key k0, so the block's max is finite.
    __shared__ float s_m[kDecodeWarps], s_l[kDecodeWarps];
    __shared__ float s_acc[kDecodeWarps][HD];
    __shared__ int s_last;
    __shared__ float s_red[2][kDecodeWarps], s_w[kDecodeMaxSplits];
    if (lane == 0) {
        s_m[warp] = m;
        s_l[warp] = l;
    }
    if (sub == 0) {
#pragma unroll
        for (int i = 0; i < 8; ++i) s_acc[warp][col + i] = acc[i];
    }
    __syncthreads();
    const int d = threadIdx.x;
    float mb = -INFINITY, lb = 0.0f, ob = 0.0f;
    if (d < HD) {
#pragma unroll
        for (int w = 0; w < kDecodeWarps; ++w) mb = fmaxf(mb, s_m[w]);
#pragma unroll
        for (int w = 0; w < kDecodeWarps; ++w) {
            if (s_m[w] == -INFINITY) continue;
            const float e = exp2f(s_m[w] - mb);
            lb += s_l[w] * e;
            ob += s_acc[w][d] * e;
        }
    }
    if (active == 1) {
        if (d < HD) out[row * HD + d] = __float2bfloat16(ob / lb);
        return;
    }
    // Several runs: publish this one; the last block of the row to arrive combines them all.
    const size_t slot = row * splits + split;
    if (d < HD) part_o[slot * HD + d] = ob;
    if (d == 0) part_ml[slot] = make_float2(mb, lb);
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) s_last = atomicAdd(&counters[row], 1) == active - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    if (threadIdx.x == 0) counters[row] = 0;  // every other block of the row has arrived
    // Run r (thread r) weighs e_r = 2^(m_r − max); every run saw a key, so its max is finite.
    const int r = threadIdx.x;
    const float2 ml =
        r < active ? __ldcg(&part_ml[row * splits + r]) : make_float2(-INFINITY, 0.0f);
    float mt = warp_max(ml.x);
    if (lane == 0) s_red[0][warp] = mt;
    __syncthreads();
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) mt = fmaxf(mt, s_red[0][w]);
    const float e = r < active ? exp2f(ml.x - mt) : 0.0f;
    if (r < active) s_w[r] = e;
    float lt = warp_sum(ml.y * e);
    if (lane == 0) s_red[1][warp] = lt;
    __syncthreads();
    lt = 0.0f;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) lt += s_red[1][w];
    if (d >= HD) return;
    const float* po = part_o + row * splits * HD + d;
    float ot = 0.0f;
#pragma unroll 8
    for (int i = 0; i < active; ++i) ot += s_w[i] * __ldcg(po + size_t(i) * HD);
    out[row * HD + d] = __float2bfloat16(ot / lt);
}

}  // namespace olmo::kernels
