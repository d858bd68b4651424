// Causal softmax attention over a key/value buffer (spec §2.4.5; contract in src/ops/ops.h):
//   * attention_rowwise_kernel: any head dims and dtypes; one block per (query, head, sequence),
//     four warps splitting the visible keys with an online softmax each, merged at the end. The
//     reference path (f32, other head dims); bf16 decode with head dim 64/128 runs the split-key
//     kernel of attention_decode.cuh.
//   * flash_attention_kernel: bf16, head dim 64 or 128, tensor cores (mma.sync m16n8k16): 64
//   queries per
//     block, 16 per warp, keys in blocks of 64 staged in shared memory, online softmax in
//     registers.
// Query at absolute position p sees key j iff j ≤ p and (window == 0 or p − j < window); queries
// are the last Tq of each sequence's kv_len keys. GQA: query head h reads kv head h / (Hq / Hkv).
#pragma once

#include "common.cuh"
#include "mma.cuh"

namespace olmo::kernels {

constexpr float kLog2e = 1.4426950408889634f;

// ---- generic row-wise kernel
// ---------------------------------------------------------------------

// WARPS warps per block split the visible keys; each warp takes 4 keys per step (their loads in
// flight together), with one online-softmax update per step.
template <class T, int DPL, int WARPS>  // DPL: dims per lane, ceil(max(D, Dv) / 32)
__global__ void __launch_bounds__(32 * WARPS)
    attention_rowwise_kernel(T* __restrict__ out, const T* __restrict__ q, const T* __restrict__ k,
                             const T* __restrict__ v, const int* __restrict__ kv_lens, int Tq,
                             int L, int Hq, int Hkv, int D, int Dv, int window, float scale) {
    constexpr int U = 4;  // keys per warp step
    const int qi = blockIdx.x, hq = blockIdx.y, b = blockIdx.z;
    const int hk = hq / (Hq / Hkv);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kv_len = kv_lens[b];
    const int p = kv_len - Tq + qi;  // absolute position of this query
    const int lo = window > 0 ? max(0, p - window + 1) : 0;
    float qr[DPL], acc[DPL];
    const T* qrow = q + ((size_t(b) * Tq + qi) * Hq + hq) * D;
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
        const int d = i * 32 + lane;
        qr[i] = d < D ? to_f32(qrow[d]) * scale * kLog2e : 0.0f;  // base-2 exponent
        acc[i] = 0.0f;
    }
    const size_t kstride = size_t(Hkv) * D, vstride = size_t(Hkv) * Dv;
    const T* kbase = k + (size_t(b) * L * Hkv + hk) * D;
    const T* vbase = v + (size_t(b) * L * Hkv + hk) * Dv;
    float m = -INFINITY, l = 0.0f;
    for (int j0 = lo + warp * U; j0 <= p; j0 += WARPS * U) {
        float s[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int j = min(j0 + u, p);  // past p: a duplicate of p, masked below
            const T* krow = kbase + size_t(j) * kstride;
            float dot = 0.0f;
#pragma unroll
            for (int i = 0; i < DPL; ++i) {
                const int d = i * 32 + lane;
                if (d < D) dot += qr[i] * to_f32(krow[d]);
            }
            s[u] = dot;
        }
        float m_step = m;
#pragma unroll
        for (int u = 0; u < U; ++u) {
            s[u] = j0 + u <= p ? warp_sum(s[u]) : -INFINITY;
            m_step = fmaxf(m_step, s[u]);
        }
        const float corr = exp2f(m - m_step);
        l *= corr;
#pragma unroll
        for (int i = 0; i < DPL; ++i) acc[i] *= corr;
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const float pj = s[u] == -INFINITY ? 0.0f : exp2f(s[u] - m_step);
            l += pj;
            const T* vrow = vbase + size_t(min(j0 + u, p)) * vstride;
#pragma unroll
            for (int i = 0; i < DPL; ++i) {
                const int d = i * 32 + lane;
                if (d < Dv) acc[i] += pj * to_f32(vrow[d]);
            }
        }
        m = m_step;
    }
    // Merge the warps' partial softmaxes.
    __shared__ float s_m[WARPS], s_l[WARPS];
    __shared__ float s_acc[WARPS][32 * DPL];
    if (lane == 0) {
        s_m[warp] = m;
        s_l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < DPL; ++i) s_acc[warp][i * 32 + lane] = acc[i];
    __syncthreads();
    if (warp == 0) {
        float mt = -INFINITY;
        for (int w = 0; w < WARPS; ++w) mt = fmaxf(mt, s_m[w]);
        float lt = 0.0f;
        for (int w = 0; w < WARPS; ++w)
            lt += s_m[w] == -INFINITY ? 0.0f : s_l[w] * exp2f(s_m[w] - mt);
        T* orow = out + ((size_t(b) * Tq + qi) * Hq + hq) * Dv;
#pragma unroll
        for (int i = 0; i < DPL; ++i) {
            const int d = i * 32 + lane;
            if (d >= Dv) continue;
            float o = 0.0f;
            for (int w = 0; w < WARPS; ++w)
                if (s_m[w] != -INFINITY) o += s_acc[w][d] * exp2f(s_m[w] - mt);
            orow[d] = from_f32<T>(o / lt);
        }
    }
}

// ---- tensor-core kernel (bf16)
// -------------------------------------------------------------------

constexpr int kFlashQ = 64, kFlashK = 64, kFlashThreads = 128;

template <int HD>
__global__ void __launch_bounds__(kFlashThreads)
    flash_attention_kernel(__nv_bfloat16* __restrict__ out, const __nv_bfloat16* __restrict__ q,
                           const __nv_bfloat16* __restrict__ k, const __nv_bfloat16* __restrict__ v,
                           const int* __restrict__ kv_lens, int Tq, int L, int Hq, int Hkv,
                           int window, float scale) {
    constexpr int PAD = HD + 8;  // row pitch in shared memory (breaks bank conflicts)
    __shared__ __align__(16) __nv_bfloat16 s_k[kFlashK * PAD];
    __shared__ __align__(16) __nv_bfloat16 s_v[kFlashK * PAD];
    const int qt = blockIdx.x, hq = blockIdx.y, b = blockIdx.z;
    const int hk = hq / (Hq / Hkv);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
    const int kv_len = kv_lens[b], q_base = kv_len - Tq;  // absolute position of query 0
    const int row0 = qt * kFlashQ + warp * 16;            // this warp's first query
    const float sl2 = scale * kLog2e;

    // Q fragments (16 rows × HD), loaded once.
    uint32_t qf[HD / 16][4];
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int row = row0 + g + (r & 1) * 8, col = kk * 16 + 2 * t4 + (r >> 1) * 8;
            uint32_t val = 0;
            if (row < Tq)
                val = *reinterpret_cast<const uint32_t*>(
                    q + ((size_t(b) * Tq + row) * Hq + hq) * HD + col);
            qf[kk][r] = val;
        }
    }
    float o[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
    const int p_first = q_base + qt * kFlashQ;
    const int p_last = q_base + min(qt * kFlashQ + kFlashQ, Tq) - 1;
    const int k_end = min(kv_len, p_last + 1);
    int k_begin = window > 0 ? max(0, p_first - window + 1) : 0;
    k_begin = k_begin / kFlashK * kFlashK;

    for (int kb = k_begin; kb < k_end; kb += kFlashK) {
        __syncthreads();                    // the previous block's s_k / s_v are no longer read
        constexpr int kVecPerRow = HD / 8;  // 16-byte vectors per row
        for (int idx = threadIdx.x; idx < kFlashK * kVecPerRow; idx += kFlashThreads) {
            const int r = idx / kVecPerRow, c = (idx % kVecPerRow) * 8;
            uint4 kvec = make_uint4(0, 0, 0, 0), vvec = make_uint4(0, 0, 0, 0);
            if (kb + r < kv_len) {
                const size_t at = ((size_t(b) * L + kb + r) * Hkv + hk) * HD + c;
                kvec = *reinterpret_cast<const uint4*>(k + at);
                vvec = *reinterpret_cast<const uint4*>(v + at);
            }
            *reinterpret_cast<uint4*>(s_k + r * PAD + c) = kvec;
            *reinterpret_cast<uint4*>(s_v + r * PAD + c) = vvec;
        }
        __syncthreads();
        if (row0 >= Tq) continue;  // this warp has no queries (the block's last tile)
        // S = Q·Kᵀ for 16 queries × 64 keys: 8 tiles of 8 keys.
        float s[kFlashK / 8][4];
#pragma unroll
        for (int n = 0; n < kFlashK / 8; ++n) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < HD / 16; ++kk) {
                const __nv_bfloat16* kr = s_k + (n * 8 + g) * PAD + kk * 16 + 2 * t4;
                mma_bf16(s[n], qf[kk], *reinterpret_cast<const uint32_t*>(kr),
                         *reinterpret_cast<const uint32_t*>(kr + 8));
            }
        }
        // Mask, scale to base 2, row maxima (rows g and g + 8; the 4 lanes of a row hold its
        // columns).
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int n = 0; n < kFlashK / 8; ++n) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int key = kb + n * 8 + 2 * t4 + (e & 1), half = e >> 1;
                const int qrow = row0 + g + half * 8, pos = q_base + qrow;
                const bool ok =
                    qrow < Tq && key <= pos && key < kv_len && (window == 0 || pos - key < window);
                s[n][e] = ok ? s[n][e] * sl2 : -INFINITY;
                mx[half] = fmaxf(mx[half], s[n][e]);
            }
        }
        float corr[2];
#pragma unroll
        for (int h2 = 0; h2 < 2; ++h2) {
            mx[h2] = fmaxf(mx[h2], __shfl_xor_sync(0xffffffffu, mx[h2], 1));
            mx[h2] = fmaxf(mx[h2], __shfl_xor_sync(0xffffffffu, mx[h2], 2));
            const float m_new = fmaxf(m_run[h2], mx[h2]);
            corr[h2] = m_new == -INFINITY ? 1.0f : exp2f(m_run[h2] - m_new);
            m_run[h2] = m_new;
            l_run[h2] *= corr[h2];
        }
#pragma unroll
        for (int n = 0; n < kFlashK / 8; ++n) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int h2 = e >> 1;
                const float pe = s[n][e] == -INFINITY ? 0.0f : exp2f(s[n][e] - m_run[h2]);
                s[n][e] = pe;
                l_run[h2] += pe;
            }
        }
#pragma unroll
        for (int n = 0; n < HD / 8; ++n) {
            o[n][0] *= corr[0];
            o[n][1] *= corr[0];
            o[n][2] *= corr[1];
            o[n][3] *= corr[1];
        }
        // O += P·V: P (16 × 64 keys) from the S registers, V from shared memory.
#pragma unroll
        for (int kt = 0; kt < kFlashK / 16; ++kt) {
            const uint32_t pa[4] = {pack_bf16(s[2 * kt][0], s[2 * kt][1]),
                                    pack_bf16(s[2 * kt][2], s[2 * kt][3]),
                                    pack_bf16(s[2 * kt + 1][0], s[2 * kt + 1][1]),
                                    pack_bf16(s[2 * kt + 1][2], s[2 * kt + 1][3])};
            const int key0 = kt * 16 + 2 * t4;
#pragma unroll
            for (int n = 0; n < HD / 8; ++n) {
                const int col = n * 8 + g;
                const uint32_t b0 = pack_bf16(s_v[key0 * PAD + col], s_v[(key0 + 1) * PAD + col]);
                const uint32_t b1 =
                    pack_bf16(s_v[(key0 + 8) * PAD + col], s_v[(key0 + 9) * PAD + col]);
                mma_bf16(o[n], pa, b0, b1);
            }
        }
    }
    if (row0 >= Tq) return;
#pragma unroll
    for (int h2 = 0; h2 < 2; ++h2) {
        l_run[h2] += __shfl_xor_sync(0xffffffffu, l_run[h2], 1);
        l_run[h2] += __shfl_xor_sync(0xffffffffu, l_run[h2], 2);
    }
#pragma unroll
    for (int h2 = 0; h2 < 2; ++h2) {
        const int row = row0 + g + h2 * 8;
        if (row >= Tq) continue;
        const float inv = 1.0f / l_run[h2];
        __nv_bfloat16* orow = out + ((size_t(b) * Tq + row) * Hq + hq) * HD;
#pragma unroll
        for (int n = 0; n < HD / 8; ++n)
            *reinterpret_cast<uint32_t*>(orow + n * 8 + 2 * t4) =
                pack_bf16(o[n][2 * h2] * inv, o[n][2 * h2 + 1] * inv);
    }
}

}  // namespace olmo::kernels
