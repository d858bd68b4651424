// The input side of an attention layer for new tokens, in one kernel: the full-width QK RMSNorms,
// RoPE and the KV-cache appends. Block (n, part) handles token row n: part 0 normalises and rotates
// q, part 1 does the same for k and writes it to both k and the cache, part 2 copies v into the
// cache. Each row is reduced first (a block reduction over all heads), then every thread rotates
// the pairs (i, i + D/2) it reads, with cos and sin of the row's angles taken once into shared
// memory; nothing is rounded before the final store, so q and k may alias q_raw and k_raw. A
// sequence whose rows do not fit the cache (start[b] < 0 or start[b] + T > L) is not written to
// it.
#pragma once

#include "vec.cuh"

namespace olmo::kernels {

template <class T>
struct AttentionPrologueArgs {
    T *q, *k;                  // [N, Hq·D], [N, Hkv·D]
    T *k_cache, *v_cache;      // [B, L, Hkv·D], [B, L, Hkv·Dv]
    const T *q_raw, *k_raw;    // [N, Hq·D], [N, Hkv·D]
    const T* v;                // [N, Hkv·Dv]
    const T *q_norm, *k_norm;  // [Hq·D], [Hkv·D]
    const int32_t* positions;  // [N]
    const float* inv_freq;     // [D/2], or null: no RoPE
    const int32_t* start;      // [B]
    int64_t T_len, L;
    int Hq, Hkv, D, Dv;
    float eps, scaling;
};

// Where token row n = blockIdx.x goes in the cache: row cache_row of the cache, if its
// sequence's rows fit there (start[b] ≥ 0 and start[b] + T ≤ L).
struct PrologueRow {
    int64_t n, cache_row;
    bool fits;
};
template <class T>
__device__ __forceinline__ PrologueRow prologue_row(const AttentionPrologueArgs<T>& p) {
    const int64_t n = blockIdx.x, b = n / p.T_len, t = n % p.T_len;
    const int64_t s = p.start[b];
    return {n, b * p.L + s + t, s >= 0 && s + p.T_len <= p.L};
}

// cs[i] = cos, cs[half + i] = sin of token row n's angle i (times the attention scaling), i < half.
template <class T>
__device__ __forceinline__ void rope_table(float* cs, const AttentionPrologueArgs<T>& p, int64_t n,
                                           int half) {
    const float pos = float(p.positions[n]);
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float sn, c;
        sincosf(pos * p.inv_freq[i], &sn, &c);
        cs[i] = c * p.scaling;
        cs[half + i] = sn * p.scaling;
    }
}

// grid (N, 3), blockDim a multiple of 32; dynamic shared memory D floats (cos, sin) with RoPE.
template <class T>
__global__ void attention_prologue_kernel(AttentionPrologueArgs<T> p) {
    extern __shared__ float cs[];
    const auto [n, cache_row, fits] = prologue_row(p);
    if (blockIdx.y == 2) {
        if (!fits) return;
        const int64_t C = int64_t(p.Hkv) * p.Dv;
        for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
            p.v_cache[cache_row * C + i] = p.v[n * C + i];
        return;
    }
    const bool is_q = blockIdx.y == 0;
    const int64_t C = int64_t(is_q ? p.Hq : p.Hkv) * p.D;
    const T* x = (is_q ? p.q_raw : p.k_raw) + n * C;
    const T* w = is_q ? p.q_norm : p.k_norm;
    T* out = (is_q ? p.q : p.k) + n * C;
    T* cache = !is_q && fits ? p.k_cache + cache_row * C : nullptr;

    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        const float v = to_f32(x[i]);
        ss += v * v;
    }
    ss = block_sum(ss);
    const float r = 1.0f / sqrtf(ss / float(C) + p.eps);

    if (p.inv_freq == nullptr) {
        for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
            const T y = from_f32<T>(to_f32(w[i]) * (to_f32(x[i]) * r));
            out[i] = y;
            if (cache) cache[i] = y;
        }
        return;
    }
    const int half = p.D / 2;
    rope_table(cs, p, n, half);
    __syncthreads();
    for (int64_t idx = threadIdx.x; idx < C / 2; idx += blockDim.x) {
        const int64_t i = idx % half, lo = (idx / half) * p.D + i, hi = lo + half;
        const float a = to_f32(w[lo]) * (to_f32(x[lo]) * r);
        const float bb = to_f32(w[hi]) * (to_f32(x[hi]) * r);
        const float c = cs[i], sn = cs[half + i];
        const T ya = from_f32<T>(a * c - bb * sn), yb = from_f32<T>(bb * c + a * sn);
        out[lo] = ya;
        out[hi] = yb;
        if (cache) {
            cache[lo] = ya;
            cache[hi] = yb;
        }
    }
}

// The same in 16-byte packs (N elements), when D/2 and Hkv·Dv are multiples of N and every row is
// aligned: each thread takes pack i of the first half of a head and pack i of its second half
// (the RoPE pairs), reads them in the sum-of-squares pass and again (from L1) to write. Offsets
// within a row are 32-bit. Measured on the H200 (decode, B = 1): the element-by-element kernel
// spent most of its 8 µs on 64-bit index arithmetic.
template <class T, int N>
__global__ void attention_prologue_packed_kernel(AttentionPrologueArgs<T> p) {
    extern __shared__ float cs[];
    const auto [n, cache_row, fits] = prologue_row(p);
    if (blockIdx.y == 2) {
        if (!fits) return;
        const int C = p.Hkv * p.Dv;
        const T* src = p.v + n * C;
        T* dst = p.v_cache + cache_row * C;
        for (int i = threadIdx.x * N; i < C; i += blockDim.x * N)
            store_pack<N>(dst + i, load_pack<N>(src + i));
        return;
    }
    const bool is_q = blockIdx.y == 0;
    const int D = p.D, half = D / 2, per_half = half / N;
    const int C = (is_q ? p.Hq : p.Hkv) * D, pairs = C / (2 * N);
    const T* x = (is_q ? p.q_raw : p.k_raw) + n * C;
    const T* w = is_q ? p.q_norm : p.k_norm;
    T* out = (is_q ? p.q : p.k) + n * C;
    T* cache = !is_q && fits ? p.k_cache + cache_row * C : nullptr;
    const bool rope = p.inv_freq != nullptr;
    if (rope) rope_table(cs, p, n, half);  // visible after the block sum's barriers
    auto first = [&](int pair) { return (pair / per_half) * D + (pair % per_half) * N; };
    float ss = 0.0f;
    for (int pair = threadIdx.x; pair < pairs; pair += blockDim.x) {
        const int lo = first(pair);
        float a[N], bb[N];
        load_f32<N>(a, x + lo);
        load_f32<N>(bb, x + lo + half);
#pragma unroll
        for (int k = 0; k < N; ++k) ss += a[k] * a[k] + bb[k] * bb[k];
    }
    ss = block_sum(ss);
    const float r = 1.0f / sqrtf(ss / float(C) + p.eps);
    for (int pair = threadIdx.x; pair < pairs; pair += blockDim.x) {
        const int lo = first(pair), hi = lo + half, i0 = lo % D;
        float a[N], bb[N], wa[N], wb[N];
        load_f32<N>(a, x + lo);
        load_f32<N>(bb, x + hi);
        load_f32<N>(wa, w + lo);
        load_f32<N>(wb, w + hi);
#pragma unroll
        for (int k = 0; k < N; ++k) {
            a[k] = wa[k] * (a[k] * r);
            bb[k] = wb[k] * (bb[k] * r);
        }
        if (rope) {
#pragma unroll
            for (int k = 0; k < N; ++k) {
                const float c = cs[i0 + k], sn = cs[half + i0 + k];
                const float ya = a[k] * c - bb[k] * sn, yb = bb[k] * c + a[k] * sn;
                a[k] = ya;
                bb[k] = yb;
            }
        }
        store_f32<N>(out + lo, a);
        store_f32<N>(out + hi, bb);
        if (cache) {
            store_f32<N>(cache + lo, a);
            store_f32<N>(cache + hi, bb);
        }
    }
}

}  // namespace olmo::kernels
