// Chunked gated delta rule on tensor cores (spec §3), bf16 operands with f32 accumulation, in three
// kernels (chunk C = 64, key dim padded to DKP, value dim handled in tiles of 64 columns):
//   1. wy:     per (b, h, chunk), in parallel: γ = cumsum(g), A = strict_lower(β kkᵀ ⊙ Γ), T = (I +
//   A)⁻¹
//              by forward substitution in f32, W = T·diag(β e^γ)·K and U = T·diag(β)·V (spec §3.2).
//   2. state:  per (b, h, value tile), sequential over chunks: stores the chunk-start state H_n
//   (bf16),
//              V'_n = U_n − W_n·H_n (bf16), and H ← e^{γ_C} H + (K ⊙ e^{γ_C−γ})ᵀ V'_n kept in f32
//              accumulators (spec §3.3); writes the final state.
//   3. output: per (b, h, chunk, value tile), in parallel: O = (Q ⊙ e^γ)·H_n + ((QKᵀ) ⊙ Γ ⊙
//   M_≤)·V'_n.
// Padding rows (past the sequence end) have zero q, k, v, β, g, so they leave every real output and
// the state unchanged. Never is exp(γ_i − γ_j) evaluated for j > i.
#pragma once

#include <cuda_pipeline.h>
#include <mma.h>

#include "common.cuh"

namespace olmo::kernels {

namespace wmma = nvcuda::wmma;

constexpr int kChunk = 64;
constexpr int kTileV = 64;          // value columns per state / output block
constexpr int kChunkThreads = 128;  // 4 warps

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragAcol = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragBcol = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

struct GdnChunkArgs {
    const __nv_bfloat16 *q, *k, *v;  // [B, T, H, Dk|Dv]
    const float *g, *beta;           // [B, T, H]
    __nv_bfloat16* o;                // [B, T, H, Dv]
    float* state;                    // [B, H, Dk, Dv] in: initial, out: final
    // workspace: per (b, h) rows padded to NC·64, value dim padded to DVP (multiple of 64)
    __nv_bfloat16 *w, *u;  // [B, H, Tp, DKP], [B, H, Tp, DVP]
    __nv_bfloat16* kd;  // [B, H, Tp, DKP] k ⊙ e^{γ_C − γ} (the state update's left operand)
    float* gamma;       // [B, H, Tp]
    __nv_bfloat16* hs;  // [B, H, NC, DKP, DVP] chunk-start states
    __nv_bfloat16* vn;  // [B, H, Tp, DVP] V'
    int B, T, H, Dk, Dv, NC, DVP;
};

__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}

// Shared-memory carving: 128-byte aligned pieces.
struct Carve {
    char* p;
    template <class X>
    __device__ X* take(size_t n) {
        X* r = reinterpret_cast<X*>(p);
        p += (n * sizeof(X) + 127) / 128 * 128;
        return r;
    }
};

__device__ __forceinline__ size_t bh_index(int b, int h, int H) {
    return size_t(b) * H + h;
}

// Copies `rows` (≤ R) rows of `cols` bf16 values, rows `stride` elements apart in global memory,
// into a shared [R × LD] tile, zero-filling the rest. 16-byte vectors when the layout allows, else
// scalars.
template <int R, int LD>
__device__ __forceinline__ void load_tile(__nv_bfloat16* __restrict__ dst,
                                          const __nv_bfloat16* __restrict__ src, size_t stride,
                                          int rows, int cols) {
    const bool vec =
        (cols % 8 == 0) && (stride % 8 == 0) && (reinterpret_cast<uintptr_t>(src) % 16 == 0);
    if (vec) {
        constexpr int kVec = LD / 8;
        for (int idx = threadIdx.x; idx < R * kVec; idx += blockDim.x) {
            const int r = idx / kVec, c = (idx % kVec) * 8;
            uint4 x = make_uint4(0, 0, 0, 0);
            if (r < rows && c < cols)
                x = *reinterpret_cast<const uint4*>(src + size_t(r) * stride + c);
            *reinterpret_cast<uint4*>(dst + r * LD + c) = x;
        }
    } else {
        for (int idx = threadIdx.x; idx < R * LD; idx += blockDim.x) {
            const int r = idx / LD, c = idx % LD;
            dst[idx] =
                (r < rows && c < cols) ? src[size_t(r) * stride + c] : __float2bfloat16(0.0f);
        }
    }
}

// Converts a shared f32 [R × LD] tile to bf16 and stores rows [0, rows) × cols [0, cols) to global
// memory, rows `stride` elements apart; 8 values per store when aligned.
template <int R, int LD>
__device__ __forceinline__ void store_tile(__nv_bfloat16* __restrict__ dst, size_t stride,
                                           const float* __restrict__ src, int rows, int cols) {
    const bool vec =
        (cols % 8 == 0) && (stride % 8 == 0) && (reinterpret_cast<uintptr_t>(dst) % 16 == 0);
    if (vec) {
        constexpr int kVec = LD / 8;
        for (int idx = threadIdx.x; idx < R * kVec; idx += blockDim.x) {
            const int r = idx / kVec, c = (idx % kVec) * 8;
            if (r >= rows || c >= cols) continue;
            const float* p = src + r * LD + c;
            uint4 x;
            x.x = pack2(p[0], p[1]);
            x.y = pack2(p[2], p[3]);
            x.z = pack2(p[4], p[5]);
            x.w = pack2(p[6], p[7]);
            *reinterpret_cast<uint4*>(dst + size_t(r) * stride + c) = x;
        }
    } else {
        for (int idx = threadIdx.x; idx < R * LD; idx += blockDim.x) {
            const int r = idx / LD, c = idx % LD;
            if (r < rows && c < cols) dst[size_t(r) * stride + c] = __float2bfloat16(src[idx]);
        }
    }
}

// ---- 1. WY representation ----------------------------------------------------------------------

template <int DKP>
__global__ void __launch_bounds__(kChunkThreads) gdn_wy_kernel(GdnChunkArgs a) {
    extern __shared__ __align__(128) char smem_raw[];
    Carve cv{smem_raw};
    __nv_bfloat16* s_k = cv.take<__nv_bfloat16>(kChunk * DKP);      // k
    __nv_bfloat16* s_kb = cv.take<__nv_bfloat16>(kChunk * DKP);     // β e^γ k
    __nv_bfloat16* s_vb = cv.take<__nv_bfloat16>(kChunk * kTileV);  // β v (one value tile)
    float* s_a = cv.take<float>(kChunk * kChunk);                   // kkᵀ, then A
    float* s_t = cv.take<float>(kChunk * kChunk);                   // T = (I + A)⁻¹
    __nv_bfloat16* s_tb = cv.take<__nv_bfloat16>(kChunk * kChunk);
    float* s_out = cv.take<float>(kChunk * (DKP > kTileV ? DKP : kTileV));
    float* s_gamma = cv.take<float>(kChunk);
    float* s_beta = cv.take<float>(kChunk);

    const int n = blockIdx.x % a.NC, bh = blockIdx.x / a.NC, b = bh / a.H, h = bh % a.H;
    const int t0 = n * kChunk, rows = min(kChunk, a.T - t0);
    const int tid = threadIdx.x, warp = tid / 32;
    const size_t Tp = size_t(a.NC) * kChunk;

    if (tid < kChunk) {
        const bool ok = tid < rows;
        const size_t head = (size_t(b) * a.T + t0 + tid) * a.H + h;
        s_gamma[tid] = ok ? a.g[head] : 0.0f;
        s_beta[tid] = ok ? a.beta[head] : 0.0f;
    }
    __syncthreads();
    if (tid == 0) {  // chunk-local cumulative log decay, f32
        float acc = 0.0f;
        for (int i = 0; i < kChunk; ++i) s_gamma[i] = acc += s_gamma[i];
    }
    __syncthreads();
    const size_t tok_stride_k = size_t(a.H) * a.Dk, tok_stride_v = size_t(a.H) * a.Dv;
    load_tile<kChunk, DKP>(s_k, a.k + ((size_t(b) * a.T + t0) * a.H + h) * a.Dk, tok_stride_k, rows,
                           a.Dk);
    __syncthreads();
    // β e^γ k (left operand of W), and k ⊙ e^{γ_C − γ} (the state kernel's, stored for it).
    const size_t Tp_rows = size_t(a.NC) * kChunk;
    __nv_bfloat16* kd_out = a.kd + (bh_index(b, h, a.H) * Tp_rows + t0) * DKP;
    const float gamma_last = s_gamma[kChunk - 1];
    for (int idx = tid; idx < kChunk * DKP; idx += blockDim.x) {
        const int i = idx / DKP;
        const float x = __bfloat162float(s_k[idx]);
        s_kb[idx] = __float2bfloat16(x * s_beta[i] * expf(s_gamma[i]));
        kd_out[idx] = __float2bfloat16(x * expf(gamma_last - s_gamma[i]));
    }
    __syncthreads();
    // kkᵀ (64×64): warp w computes row tile w.
    for (int c = 0; c < 4; ++c) {
        FragC acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int kk = 0; kk < DKP; kk += 16) {
            FragA fa;
            FragBcol fb;
            wmma::load_matrix_sync(fa, s_k + warp * 16 * DKP + kk, DKP);
            wmma::load_matrix_sync(fb, s_k + c * 16 * DKP + kk, DKP);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(s_a + warp * 16 * kChunk + c * 16, acc, kChunk,
                                wmma::mem_row_major);
    }
    __syncthreads();
    // A_ij = β_i (k_i·k_j) e^{γ_i − γ_j} for i > j, else 0 (the exponent masked first).
    for (int idx = tid; idx < kChunk * kChunk; idx += blockDim.x) {
        const int i = idx / kChunk, j = idx % kChunk;
        s_a[idx] = i > j ? s_beta[i] * s_a[idx] * expf(s_gamma[i] - s_gamma[j]) : 0.0f;
        s_t[idx] = i == j ? 1.0f : 0.0f;
    }
    __syncthreads();
    // T = (I + A)⁻¹, unit lower triangular: T[i, c] = −Σ_{c ≤ j < i} A[i, j] T[j, c] for c < i.
    for (int i = 1; i < kChunk; ++i) {
        if (tid < i) {
            const int c = tid;
            float acc = 0.0f;
            for (int j = c; j < i; ++j) acc += s_a[i * kChunk + j] * s_t[j * kChunk + c];
            s_t[i * kChunk + c] = -acc;
        }
        __syncthreads();
    }
    for (int idx = tid; idx < kChunk * kChunk; idx += blockDim.x)
        s_tb[idx] = __float2bfloat16(s_t[idx]);
    __syncthreads();
    // W = T · (β e^γ K): [64, DKP], warp w computes row tile w.
    for (int c = 0; c < DKP / 16; ++c) {
        FragC acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int kk = 0; kk < kChunk; kk += 16) {
            FragA fa;
            FragB fb;
            wmma::load_matrix_sync(fa, s_tb + warp * 16 * kChunk + kk, kChunk);
            wmma::load_matrix_sync(fb, s_kb + kk * DKP + c * 16, DKP);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(s_out + warp * 16 * DKP + c * 16, acc, DKP, wmma::mem_row_major);
    }
    __syncthreads();
    store_tile<kChunk, DKP>(a.w + (bh_index(b, h, a.H) * Tp + t0) * DKP, DKP, s_out, kChunk, DKP);
    __syncthreads();
    // U = T · (β V), one tile of 64 value columns at a time.
    for (int v0 = 0; v0 < a.DVP; v0 += kTileV) {
        load_tile<kChunk, kTileV>(s_vb, a.v + ((size_t(b) * a.T + t0) * a.H + h) * a.Dv + v0,
                                  tok_stride_v, rows, min(kTileV, a.Dv - v0));
        __syncthreads();
        for (int idx = tid; idx < kChunk * kTileV; idx += blockDim.x)
            s_vb[idx] = __float2bfloat16(__bfloat162float(s_vb[idx]) * s_beta[idx / kTileV]);
        __syncthreads();
        for (int c = 0; c < kTileV / 16; ++c) {
            FragC acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < kChunk; kk += 16) {
                FragA fa;
                FragB fb;
                wmma::load_matrix_sync(fa, s_tb + warp * 16 * kChunk + kk, kChunk);
                wmma::load_matrix_sync(fb, s_vb + kk * kTileV + c * 16, kTileV);
                wmma::mma_sync(acc, fa, fb, acc);
            }
            wmma::store_matrix_sync(s_out + warp * 16 * kTileV + c * 16, acc, kTileV,
                                    wmma::mem_row_major);
        }
        __syncthreads();
        store_tile<kChunk, kTileV>(a.u + (bh_index(b, h, a.H) * Tp + t0) * a.DVP + v0, a.DVP, s_out,
                                   kChunk, kTileV);
        __syncthreads();
    }
    if (tid < kChunk) a.gamma[bh_index(b, h, a.H) * Tp + t0 + tid] = s_gamma[tid];
}

template <int DKP>
constexpr size_t gdn_wy_smem() {
    auto r = [](size_t n) { return (n + 127) / 128 * 128; };
    return 2 * r(kChunk * DKP * 2) + r(kChunk * kTileV * 2) + 2 * r(kChunk * kChunk * 4) +
           r(kChunk * kChunk * 2) + r(kChunk * (DKP > kTileV ? DKP : kTileV) * 4) +
           2 * r(kChunk * 4);
}

// ---- 2. the state recurrence over chunks
// -----------------------------------------------------------

// TV value columns per block (32 or 64). The chunk's W, K_d and U tile are prefetched with cp.async
// into a second buffer while the current chunk computes. Warp w keeps the H tiles (r, c) with c = w
// mod (TV/16), r = w / (TV/16), r += 4 / (TV/16), in f32 accumulator fragments for the whole
// sequence.
template <int DKP, int TV>
__global__ void __launch_bounds__(kChunkThreads) gdn_state_kernel(GdnChunkArgs a) {
    constexpr int NCT = TV / 16, WPC = 4 / NCT, R = DKP / 16, PER_WARP = (R + WPC - 1) / WPC;
    extern __shared__ __align__(128) char smem_raw[];
    Carve cv{smem_raw};
    // Two buffers each (index with buf · size, not an array of pointers, which would live in local
    // memory).
    __nv_bfloat16* s_w2 = cv.take<__nv_bfloat16>(2 * kChunk * DKP);
    __nv_bfloat16* s_kd2 = cv.take<__nv_bfloat16>(2 * kChunk * DKP);
    __nv_bfloat16* s_u2 = cv.take<__nv_bfloat16>(2 * kChunk * TV);
    float* s_hf = cv.take<float>(DKP * TV);                  // state tile staging, f32
    __nv_bfloat16* s_hb = cv.take<__nv_bfloat16>(DKP * TV);  // state tile, bf16 operand
    float* s_p = cv.take<float>(kChunk * TV);                // W·H, then V' in f32
    __nv_bfloat16* s_vn = cv.take<__nv_bfloat16>(kChunk * TV);

    const int tiles_v = a.DVP / TV;
    const int vt = blockIdx.x % tiles_v, bh = blockIdx.x / tiles_v, b = bh / a.H, h = bh % a.H;
    const int v0 = vt * TV;
    const int tid = threadIdx.x, warp = tid / 32;
    const size_t Tp = size_t(a.NC) * kChunk, base = bh_index(b, h, a.H) * Tp;
    float* st = a.state + bh_index(b, h, a.H) * a.Dk * a.Dv;

    auto prefetch = [&](int n, int buf) {  // W, K_d (contiguous) and the U tile of chunk n
        const size_t row0 = base + size_t(n) * kChunk;
        const __nv_bfloat16* w = a.w + row0 * DKP;
        const __nv_bfloat16* kd = a.kd + row0 * DKP;
        for (int idx = tid; idx < kChunk * DKP / 8; idx += blockDim.x) {
            __pipeline_memcpy_async(s_w2 + buf * kChunk * DKP + idx * 8, w + idx * 8, 16);
            __pipeline_memcpy_async(s_kd2 + buf * kChunk * DKP + idx * 8, kd + idx * 8, 16);
        }
        constexpr int kVec = TV / 8;
        for (int idx = tid; idx < kChunk * kVec; idx += blockDim.x) {
            const int r = idx / kVec, c = (idx % kVec) * 8;
            __pipeline_memcpy_async(s_u2 + buf * kChunk * TV + r * TV + c,
                                    a.u + (row0 + r) * a.DVP + v0 + c, 16);
        }
        __pipeline_commit();
    };

    FragC hacc[PER_WARP];
    for (int idx = tid; idx < DKP * TV; idx += blockDim.x) {
        const int i = idx / TV, c = v0 + idx % TV;
        s_hf[idx] = (i < a.Dk && c < a.Dv) ? st[size_t(i) * a.Dv + c] : 0.0f;
    }
    prefetch(0, 0);
    __syncthreads();
#pragma unroll
    for (int j = 0; j < PER_WARP; ++j) {
        const int r = warp / NCT + j * WPC;
        if (r < R)
            wmma::load_matrix_sync(hacc[j], s_hf + r * 16 * TV + (warp % NCT) * 16, TV,
                                   wmma::mem_row_major);
    }

    for (int n = 0; n < a.NC; ++n) {
        const int buf = n & 1;
        const __nv_bfloat16* s_w = s_w2 + buf * kChunk * DKP;
        const __nv_bfloat16* s_kd = s_kd2 + buf * kChunk * DKP;
        const __nv_bfloat16* s_u = s_u2 + buf * kChunk * TV;
        __syncthreads();  // every warp is done with the other buffer and with s_hf / s_hb / s_p /
                          // s_vn
        if (n + 1 < a.NC) prefetch(n + 1, buf ^ 1);
#pragma unroll
        for (int j = 0; j < PER_WARP; ++j) {
            const int r = warp / NCT + j * WPC;
            if (r < R)
                wmma::store_matrix_sync(s_hf + r * 16 * TV + (warp % NCT) * 16, hacc[j], TV,
                                        wmma::mem_row_major);
        }
        __syncthreads();
        // H_n in bf16: this chunk's operand, and saved for the output kernel.
        for (int idx = tid; idx < DKP * TV; idx += blockDim.x)
            s_hb[idx] = __float2bfloat16(s_hf[idx]);
        store_tile<DKP, TV>(a.hs + ((bh_index(b, h, a.H) * a.NC + n) * DKP) * a.DVP + v0, a.DVP,
                            s_hf, DKP, TV);
        const float gamma_last = a.gamma[base + size_t(n) * kChunk + kChunk - 1];
        if (n + 1 < a.NC)
            __pipeline_wait_prior(1);  // chunk n's copies are complete (n + 1's may still fly)
        else
            __pipeline_wait_prior(0);
        __syncthreads();
        // P = W·H_n (64 × TV): warp w computes row tile w.
#pragma unroll
        for (int c = 0; c < NCT; ++c) {
            FragC acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int kk = 0; kk < DKP; kk += 16) {
                FragA fa;
                FragB fb;
                wmma::load_matrix_sync(fa, s_w + warp * 16 * DKP + kk, DKP);
                wmma::load_matrix_sync(fb, s_hb + kk * TV + c * 16, TV);
                wmma::mma_sync(acc, fa, fb, acc);
            }
            wmma::store_matrix_sync(s_p + warp * 16 * TV + c * 16, acc, TV, wmma::mem_row_major);
        }
        __syncthreads();
        // V'_n = U_n − W_n·H_n, in bf16 (operand here and in the output kernel).
        for (int idx = tid; idx < kChunk * TV; idx += blockDim.x) {
            const float x = __bfloat162float(s_u[idx]) - s_p[idx];
            s_p[idx] = x;
            s_vn[idx] = __float2bfloat16(x);
        }
        __syncthreads();
        store_tile<kChunk, TV>(a.vn + (base + size_t(n) * kChunk) * a.DVP + v0, a.DVP, s_p, kChunk,
                               TV);
        // H ← e^{γ_C} H + (K ⊙ e^{γ_C − γ})ᵀ · V'_n, in the f32 accumulators.
        const float decay = expf(gamma_last);
#pragma unroll
        for (int j = 0; j < PER_WARP; ++j) {
            const int r = warp / NCT + j * WPC;
            if (r >= R) continue;
            for (int e = 0; e < hacc[j].num_elements; ++e) hacc[j].x[e] *= decay;
#pragma unroll
            for (int kk = 0; kk < kChunk; kk += 16) {
                FragAcol fa;  // (K_d)ᵀ tile: rows = key dims r·16.., cols = tokens kk..
                FragB fb;
                wmma::load_matrix_sync(fa, s_kd + kk * DKP + r * 16, DKP);
                wmma::load_matrix_sync(fb, s_vn + kk * TV + (warp % NCT) * 16, TV);
                wmma::mma_sync(hacc[j], fa, fb, hacc[j]);
            }
        }
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < PER_WARP; ++j) {
        const int r = warp / NCT + j * WPC;
        if (r < R)
            wmma::store_matrix_sync(s_hf + r * 16 * TV + (warp % NCT) * 16, hacc[j], TV,
                                    wmma::mem_row_major);
    }
    __syncthreads();
    for (int idx = tid; idx < DKP * TV; idx += blockDim.x) {
        const int i = idx / TV, c = v0 + idx % TV;
        if (i < a.Dk && c < a.Dv) st[size_t(i) * a.Dv + c] = s_hf[idx];
    }
}

template <int DKP, int TV>
constexpr size_t gdn_state_smem() {
    auto r = [](size_t n) { return (n + 127) / 128 * 128; };
    return 4 * r(kChunk * DKP * 2) + 2 * r(kChunk * TV * 2) + r(DKP * TV * 4) + r(DKP * TV * 2) +
           r(kChunk * TV * 4) + r(kChunk * TV * 2);
}

// ---- 3. outputs, all chunks in parallel
// ----------------------------------------------------------

template <int DKP>
__global__ void __launch_bounds__(kChunkThreads) gdn_output_kernel(GdnChunkArgs a) {
    extern __shared__ __align__(128) char smem_raw[];
    Carve cv{smem_raw};
    __nv_bfloat16* s_q = cv.take<__nv_bfloat16>(kChunk * DKP);
    __nv_bfloat16* s_k = cv.take<__nv_bfloat16>(kChunk * DKP);
    __nv_bfloat16* s_h = cv.take<__nv_bfloat16>(DKP * kTileV);
    __nv_bfloat16* s_vn = cv.take<__nv_bfloat16>(kChunk * kTileV);
    float* s_f = cv.take<float>(kChunk * kChunk);  // QKᵀ, then the output tile
    __nv_bfloat16* s_s = cv.take<__nv_bfloat16>(kChunk * kChunk);
    float* s_gamma = cv.take<float>(kChunk);

    const int tiles_v = a.DVP / kTileV;
    int rest = blockIdx.x;
    const int vt = rest % tiles_v;
    rest /= tiles_v;
    const int n = rest % a.NC, bh = rest / a.NC, b = bh / a.H, h = bh % a.H;
    const int t0 = n * kChunk, v0 = vt * kTileV;
    const int tid = threadIdx.x, warp = tid / 32;
    const size_t Tp = size_t(a.NC) * kChunk, row0 = bh_index(b, h, a.H) * Tp + t0;

    if (tid < kChunk) s_gamma[tid] = a.gamma[row0 + tid];
    const int rows = min(kChunk, a.T - t0);
    const size_t tok = (size_t(b) * a.T + t0) * a.H + h;
    load_tile<kChunk, DKP>(s_q, a.q + tok * a.Dk, size_t(a.H) * a.Dk, rows, a.Dk);
    load_tile<kChunk, DKP>(s_k, a.k + tok * a.Dk, size_t(a.H) * a.Dk, rows, a.Dk);
    load_tile<DKP, kTileV>(s_h, a.hs + ((bh_index(b, h, a.H) * a.NC + n) * DKP) * a.DVP + v0, a.DVP,
                           DKP, kTileV);
    load_tile<kChunk, kTileV>(s_vn, a.vn + row0 * a.DVP + v0, a.DVP, kChunk, kTileV);
    __syncthreads();
    // QKᵀ (64×64): warp w computes row tile w.
    for (int c = 0; c < 4; ++c) {
        FragC acc;
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int kk = 0; kk < DKP; kk += 16) {
            FragA fa;
            FragBcol fb;
            wmma::load_matrix_sync(fa, s_q + warp * 16 * DKP + kk, DKP);
            wmma::load_matrix_sync(fb, s_k + c * 16 * DKP + kk, DKP);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(s_f + warp * 16 * kChunk + c * 16, acc, kChunk,
                                wmma::mem_row_major);
    }
    __syncthreads();
    // S = QKᵀ ⊙ e^{γ_i − γ_j} on and below the diagonal; Q ⊙ e^{γ} for the inter-chunk term.
    for (int idx = tid; idx < kChunk * kChunk; idx += blockDim.x) {
        const int i = idx / kChunk, j = idx % kChunk;
        s_s[idx] = __float2bfloat16(j <= i ? s_f[idx] * expf(s_gamma[i] - s_gamma[j]) : 0.0f);
    }
    for (int idx = tid; idx < kChunk * DKP; idx += blockDim.x)
        s_q[idx] = __float2bfloat16(__bfloat162float(s_q[idx]) * expf(s_gamma[idx / DKP]));
    __syncthreads();
    // O = (Q e^γ)·H_n + S·V'_n: warp w computes row tile w.
    for (int c = 0; c < 4; ++c) {
        FragC acc;
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int kk = 0; kk < DKP; kk += 16) {
            FragA fa;
            FragB fb;
            wmma::load_matrix_sync(fa, s_q + warp * 16 * DKP + kk, DKP);
            wmma::load_matrix_sync(fb, s_h + kk * kTileV + c * 16, kTileV);
            wmma::mma_sync(acc, fa, fb, acc);
        }
#pragma unroll
        for (int kk = 0; kk < kChunk; kk += 16) {
            FragA fa;
            FragB fb;
            wmma::load_matrix_sync(fa, s_s + warp * 16 * kChunk + kk, kChunk);
            wmma::load_matrix_sync(fb, s_vn + kk * kTileV + c * 16, kTileV);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        // s_f is free again once every warp finished reading QKᵀ (the barrier above).
        wmma::store_matrix_sync(s_f + warp * 16 * kTileV + c * 16, acc, kTileV,
                                wmma::mem_row_major);
    }
    __syncthreads();
    store_tile<kChunk, kTileV>(a.o + tok * a.Dv + v0, size_t(a.H) * a.Dv, s_f, rows,
                               min(kTileV, a.Dv - v0));
}

template <int DKP>
constexpr size_t gdn_output_smem() {
    auto r = [](size_t n) { return (n + 127) / 128 * 128; };
    return 2 * r(kChunk * DKP * 2) + r(DKP * kTileV * 2) + r(kChunk * kTileV * 2) +
           r(kChunk * kChunk * 4) + r(kChunk * kChunk * 2) + r(kChunk * 4);
}

}  // namespace olmo::kernels
