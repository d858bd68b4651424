// Chunked gated delta rule on tensor cores (spec §3), bf16 operands with f32 accumulation and an
// f32 state, in two kernels (chunk C = 64, key dim padded to DKP, a multiple of 16):
//   1. wy:   per (b, h, chunk), all chunks in parallel: γ = cumsum(g);
//            A = strict_lower(β kkᵀ ⊙ Γ) and T = (I + A)⁻¹ in f32 (blocked: the four 16 × 16
//            diagonal blocks by substitution, then the off-diagonal blocks by distance from the
//            diagonal); W = T·diag(β e^γ)·K, U = T·diag(β)·V (spec §3.2) and the intra-chunk
//            attention S = (QKᵀ) ⊙ Γ ⊙ M_≤, all stored in bf16 for the scan.
//   2. scan: per (b, h, tile of 16·NW value columns), sequential over chunks, one warp per 16 value
//            columns holding its slice of the state Hᵀ in f32 mma accumulators for the whole
//            sequence (spec §3.3, in transposed form so that every product's result is the next
//            product's A operand without leaving registers):
//              Pᵀ = Hᵀ Wᵀ,  V'ᵀ = Uᵀ − Pᵀ,
//              Oᵀ = (Hᵀ Qᵀ) ⊙ e^γ + V'ᵀ Sᵀ,
//              Hᵀ ← e^{γ_C} Hᵀ + (V' ⊙ e^{γ_C − γ})ᵀ K.
//            The chunk's W, K, Q, S, U tile and γ are prefetched with cp.async into a second buffer
//            while the current chunk computes.
// Padding rows (past the sequence end) have zero q, k, v, β and g, so they leave every real output
// and the state unchanged. Never is exp(γ_i − γ_j) evaluated for j > i.
#pragma once

#include <cuda_pipeline.h>
#include <mma.h>

#include "common.cuh"
#include "mma.cuh"

namespace olmo::kernels {

namespace wmma = nvcuda::wmma;

constexpr int kChunk = 64;
constexpr int kWyThreads = 256;  // 8 warps

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragBcol = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

struct GdnChunkArgs {
    const __nv_bfloat16 *q, *k, *v;  // [B, T, H, Dk|Dv]
    const float *g, *beta;           // [B, T, H]
    __nv_bfloat16* o;                // [B, T, H, Dv]
    float* state;                    // [B, H, Dk, Dv] in: initial, out: final
    // Workspace, per (b, h): rows padded to Tp = NC·64, value columns padded to DVP.
    __nv_bfloat16* w;  // [B, H, Tp, DKP]
    __nv_bfloat16* u;  // [B, H, Tp, DVP]
    __nv_bfloat16* s;  // [B, H, NC, 64, 64] intra-chunk attention
    float* gamma;      // [B, H, Tp]
    int B, T, H, Dk, Dv, NC, DVP;
    bool qk_vec, v_vec, o_vec;  // 16-byte accesses allowed to q/k, v, o rows
};

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

__host__ __device__ constexpr size_t carve_bytes(size_t n) {
    return (n + 127) / 128 * 128;
}

// Copies `rows` (≤ R) rows of `cols` bf16 values, rows `stride` elements apart in global memory,
// into a shared [R × width] tile of pitch `ld`, zero-filling the rest; 16-byte vectors when `vec`
// (cols, stride and the pointer multiples of 8 elements), else scalars. Synchronous.
template <int R>
__device__ __forceinline__ void load_rows(__nv_bfloat16* __restrict__ dst, int ld, int width,
                                          const __nv_bfloat16* __restrict__ src, size_t stride,
                                          int rows, int cols, bool vec) {
    if (vec) {
        const int per_row = width / 8;
        for (int idx = threadIdx.x; idx < R * per_row; idx += blockDim.x) {
            const int r = idx / per_row, c = (idx % per_row) * 8;
            uint4 x = make_uint4(0, 0, 0, 0);
            if (r < rows && c < cols)
                x = *reinterpret_cast<const uint4*>(src + size_t(r) * stride + c);
            *reinterpret_cast<uint4*>(dst + r * ld + c) = x;
        }
    } else {
        for (int idx = threadIdx.x; idx < R * width; idx += blockDim.x) {
            const int r = idx / width, c = idx % width;
            dst[r * ld + c] =
                (r < rows && c < cols) ? src[size_t(r) * stride + c] : __float2bfloat16(0.0f);
        }
    }
}

// As load_rows, for the vector layout (cols, stride and the pointer multiples of 8 elements), with
// cp.async: every copy is in flight at once; the caller commits and waits.
template <int R>
__device__ __forceinline__ void load_rows_async(__nv_bfloat16* __restrict__ dst, int ld, int width,
                                                const __nv_bfloat16* __restrict__ src,
                                                size_t stride, int rows, int cols) {
    const int per_row = width / 8;
    for (int idx = threadIdx.x; idx < R * per_row; idx += blockDim.x) {
        const int r = idx / per_row, c = (idx % per_row) * 8;
        const bool ok = r < rows && c < cols;
        __pipeline_memcpy_async(dst + r * ld + c, src + (ok ? size_t(r) * stride + c : 0), 16,
                                ok ? 0 : 16);
    }
}

// Loads rows with cp.async when the layout allows (see load_rows_async), else synchronously.
template <int R>
__device__ __forceinline__ void load_rows_any(__nv_bfloat16* __restrict__ dst, int ld, int width,
                                              const __nv_bfloat16* __restrict__ src, size_t stride,
                                              int rows, int cols, bool vec) {
    if (vec)
        load_rows_async<R>(dst, ld, width, src, stride, rows, cols);
    else
        load_rows<R>(dst, ld, width, src, stride, rows, cols, false);
}

// One warp: converts a 16 × 16 f32 tile in `stage` (pitch 16) to bf16 and stores it to global
// memory at `dst`, rows `stride` elements apart (16-byte aligned rows).
__device__ __forceinline__ void store_tile16(__nv_bfloat16* __restrict__ dst, size_t stride,
                                             const float* __restrict__ stage, int lane) {
    const int r = lane / 2, c = (lane % 2) * 8;
    const float* p = stage + r * 16 + c;
    uint4 x;
    x.x = pack_bf16(p[0], p[1]);
    x.y = pack_bf16(p[2], p[3]);
    x.z = pack_bf16(p[4], p[5]);
    x.w = pack_bf16(p[6], p[7]);
    *reinterpret_cast<uint4*>(dst + size_t(r) * stride + c) = x;
}

// ---- 1. WY representation and intra-chunk attention -------------------------------------------

template <int DKP>
struct WyLayout {
    static constexpr int LDK = DKP + 8, LDT = kChunk + 8;
    static __host__ __device__ constexpr size_t bytes(int DVP) {
        return 2 * carve_bytes(kChunk * LDK * 2) + carve_bytes(size_t(kChunk) * (DVP + 8) * 2) +
               2 * carve_bytes(kChunk * kChunk * 4) + carve_bytes(kChunk * LDT * 2) +
               carve_bytes(kWyThreads / 32 * 256 * 4) + 4 * carve_bytes(kChunk * 4);
    }
};

template <int DKP>
__global__ void __launch_bounds__(kWyThreads) gdn_wy_kernel(GdnChunkArgs a) {
    using L = WyLayout<DKP>;
    constexpr int LDK = L::LDK, LDT = L::LDT;
    const int LDV = a.DVP + 8;
    extern __shared__ __align__(128) char smem_raw[];
    Carve cv{smem_raw};
    __nv_bfloat16* s_q = cv.take<__nv_bfloat16>(kChunk * LDK);
    __nv_bfloat16* s_k = cv.take<__nv_bfloat16>(kChunk * LDK);          // k, then β e^γ k
    __nv_bfloat16* s_v = cv.take<__nv_bfloat16>(size_t(kChunk) * LDV);  // v, then β v
    float* s_a = cv.take<float>(kChunk * kChunk);                       // kkᵀ, then A
    float* s_t = cv.take<float>(kChunk * kChunk);                       // T = (I + A)⁻¹
    __nv_bfloat16* s_tb = cv.take<__nv_bfloat16>(kChunk * LDT);         // T in bf16
    float* s_stage = cv.take<float>(kWyThreads / 32 * 256);             // a 16 × 16 tile per warp
    float* s_gamma = cv.take<float>(kChunk);
    float* s_beta = cv.take<float>(kChunk);
    float* s_part = cv.take<float>(kChunk);
    float* s_kscale = cv.take<float>(kChunk);  // β e^γ per row

    const int n = blockIdx.x % a.NC, bh = blockIdx.x / a.NC, b = bh / a.H, h = bh % a.H;
    const int t0 = n * kChunk, rows = min(kChunk, a.T - t0);
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const size_t Tp = size_t(a.NC) * kChunk, row0 = size_t(bh) * Tp + t0;
    float* stage = s_stage + warp * 256;

    // γ = inclusive cumulative sum of g over the chunk (warps 0 and 1 hold rows 0-31 and 32-63).
    if (tid < kChunk) {
        const bool ok = tid < rows;
        const size_t head = (size_t(b) * a.T + t0 + tid) * a.H + h;
        float x = ok ? a.g[head] : 0.0f;
        s_beta[tid] = ok ? a.beta[head] : 0.0f;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const float y = __shfl_up_sync(0xffffffffu, x, o);
            if (lane >= o) x += y;
        }
        s_gamma[tid] = x;
        if (lane == 31) s_part[warp] = x;
    }
    const size_t tok = (size_t(b) * a.T + t0) * a.H + h;
    load_rows_any<kChunk>(s_q, LDK, DKP, a.q + tok * a.Dk, size_t(a.H) * a.Dk, rows, a.Dk,
                          a.qk_vec);
    load_rows_any<kChunk>(s_k, LDK, DKP, a.k + tok * a.Dk, size_t(a.H) * a.Dk, rows, a.Dk,
                          a.qk_vec);
    load_rows_any<kChunk>(s_v, LDV, a.DVP, a.v + tok * a.Dv, size_t(a.H) * a.Dv, rows, a.Dv,
                          a.v_vec);
    __pipeline_commit();
    __pipeline_wait_prior(0);
    __syncthreads();
    if (tid >= 32 && tid < kChunk) s_gamma[tid] += s_part[0];
    __syncthreads();
    if (tid < kChunk) s_kscale[tid] = s_beta[tid] * expf(s_gamma[tid]);

    // kkᵀ into s_a and S = (qkᵀ) ⊙ Γ ⊙ M_≤ straight to global memory, lower 16 × 16 tiles only
    // (10 of each).
    __nv_bfloat16* s_out = a.s + (size_t(bh) * a.NC + n) * kChunk * kChunk;
    for (int job = warp; job < 20; job += kWyThreads / 32) {
        const bool is_s = job >= 10;
        int rc = is_s ? job - 10 : job, r = 0;
        while (rc > r) rc -= ++r;  // job index → (r, c) with c ≤ r
        const int c = rc;
        const __nv_bfloat16* left = is_s ? s_q : s_k;
        FragC acc;
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int kk = 0; kk < DKP; kk += 16) {
            FragA fa;
            FragBcol fb;
            wmma::load_matrix_sync(fa, left + r * 16 * LDK + kk, LDK);
            wmma::load_matrix_sync(fb, s_k + c * 16 * LDK + kk, LDK);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        if (!is_s) {
            wmma::store_matrix_sync(s_a + r * 16 * kChunk + c * 16, acc, kChunk,
                                    wmma::mem_row_major);
            continue;
        }
        wmma::store_matrix_sync(stage, acc, 16, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 256; e += 32) {
            const int i = r * 16 + e / 16, j = c * 16 + e % 16;
            stage[e] = j <= i ? stage[e] * expf(s_gamma[i] - s_gamma[j]) : 0.0f;
        }
        __syncwarp();
        store_tile16(s_out + r * 16 * kChunk + c * 16, kChunk, stage, lane);
        __syncwarp();
    }
    // The upper tiles of S are zero.
    for (int idx = tid; idx < kChunk * kChunk / 8; idx += blockDim.x) {
        const int i = idx / 8, j = (idx % 8) * 8;
        if (j / 16 > i / 16)
            *reinterpret_cast<uint4*>(s_out + i * kChunk + j) = make_uint4(0, 0, 0, 0);
    }
    __syncthreads();

    // A_ij = β_i (k_i·k_j) e^{γ_i − γ_j} for i > j, else 0 (the exponent masked first); then the
    // left operands of W and U scaled in place: k ← β e^γ k, v ← β v.
    for (int idx = tid; idx < kChunk * kChunk; idx += blockDim.x) {
        const int i = idx / kChunk, j = idx % kChunk;
        s_a[idx] = i > j ? s_beta[i] * s_a[idx] * expf(s_gamma[i] - s_gamma[j]) : 0.0f;
        s_t[idx] = 0.0f;
    }
    for (int idx = tid; idx < kChunk * DKP; idx += blockDim.x) {
        const int i = idx / DKP, c = idx % DKP;
        __nv_bfloat16& x = s_k[i * LDK + c];
        x = __float2bfloat16(__bfloat162float(x) * s_kscale[i]);
    }
    for (int idx = tid; idx < kChunk * a.DVP; idx += blockDim.x) {
        const int i = idx / a.DVP, c = idx % a.DVP;
        __nv_bfloat16& x = s_v[i * LDV + c];
        x = __float2bfloat16(__bfloat162float(x) * s_beta[i]);
    }
    __syncthreads();

    // T = (I + A)⁻¹, unit lower triangular, in f32. Diagonal blocks: warp d, lane c < 16 solves
    // column c of (I + A_dd) x = e_c by forward substitution (each column on its own).
    if (warp < 4 && lane < 16) {
        const int d0 = warp * 16, c = lane;
        float x[16];
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            float acc = 0.0f;
#pragma unroll
            for (int j = 0; j < i; ++j) acc += s_a[(d0 + i) * kChunk + d0 + j] * x[j];
            x[i] = i < c ? 0.0f : (i == c ? 1.0f : -acc);
        }
#pragma unroll
        for (int i = 0; i < 16; ++i) s_t[(d0 + i) * kChunk + d0 + c] = x[i];
    }
    __syncthreads();
    // Off-diagonal blocks, by distance from the diagonal: T_ij = −T_ii Σ_{j ≤ m < i} A_im T_mj.
    float* s_m = s_stage;  // (4 − dist) blocks of 16 × 16
    for (int dist = 1; dist < 4; ++dist) {
        const int blocks = 4 - dist;
        for (int e = tid; e < blocks * 256; e += blockDim.x) {
            const int j = e / 256, i = j + dist, r = (e % 256) / 16, cc = e % 16;
            float acc = 0.0f;
            for (int m = j * 16; m < i * 16; ++m)
                acc += s_a[(i * 16 + r) * kChunk + m] * s_t[m * kChunk + j * 16 + cc];
            s_m[e] = acc;
        }
        __syncthreads();
        for (int e = tid; e < blocks * 256; e += blockDim.x) {
            const int j = e / 256, i = j + dist, r = (e % 256) / 16, cc = e % 16;
            float acc = 0.0f;
#pragma unroll
            for (int m = 0; m < 16; ++m)
                acc += s_t[(i * 16 + r) * kChunk + i * 16 + m] * s_m[j * 256 + m * 16 + cc];
            s_t[(i * 16 + r) * kChunk + j * 16 + cc] = -acc;
        }
        __syncthreads();
    }
    for (int idx = tid; idx < kChunk * kChunk; idx += blockDim.x)
        s_tb[(idx / kChunk) * LDT + idx % kChunk] = __float2bfloat16(s_t[idx]);
    __syncthreads();

    // W = T·(β e^γ K) [64 × DKP] and U = T·(β V) [64 × DVP], 16 × 16 tiles over the warps; T is
    // lower triangular, so row tile r only needs k tiles ≤ r.
    constexpr int kw = DKP / 16;
    const int ku = a.DVP / 16;
    for (int job = warp; job < 4 * (kw + ku); job += kWyThreads / 32) {
        const bool is_w = job < 4 * kw;
        const int jj = is_w ? job : job - 4 * kw, per = is_w ? kw : ku;
        const int r = jj / per, c = jj % per;
        const __nv_bfloat16* right = is_w ? s_k : s_v;
        const int ld = is_w ? LDK : LDV;
        FragC acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int kk = 0; kk <= r; ++kk) {
            FragA fa;
            FragB fb;
            wmma::load_matrix_sync(fa, s_tb + r * 16 * LDT + kk * 16, LDT);
            wmma::load_matrix_sync(fb, right + kk * 16 * ld + c * 16, ld);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(stage, acc, 16, wmma::mem_row_major);
        __syncwarp();
        if (is_w)
            store_tile16(a.w + (row0 + r * 16) * DKP + c * 16, DKP, stage, lane);
        else
            store_tile16(a.u + (row0 + r * 16) * a.DVP + c * 16, a.DVP, stage, lane);
        __syncwarp();
    }
    if (tid < kChunk) a.gamma[row0 + tid] = s_gamma[tid];
}

// ---- 2. the scan over chunks: state, V' and outputs --------------------------------------------

template <int DKP, int NW>
struct ScanLayout {
    static constexpr int VT = 16 * NW;  // value columns per block
    static constexpr int LDK = DKP + 8, LDS = kChunk + 8, LDU = VT + 8;
    static constexpr size_t kW = 0, kK = kW + carve_bytes(kChunk * LDK * 2),
                            kQ = kK + carve_bytes(kChunk * LDK * 2),
                            kS = kQ + carve_bytes(kChunk * LDK * 2),
                            kU = kS + carve_bytes(kChunk * LDS * 2),
                            kG = kU + carve_bytes(kChunk * LDU * 2),
                            kStage = kG + carve_bytes(kChunk * 4);
    static constexpr size_t bytes = 2 * kStage;
};

template <int DKP, int NW>
__global__ void __launch_bounds__(NW * 32, 1) gdn_scan_kernel(GdnChunkArgs a) {
    using L = ScanLayout<DKP, NW>;
    constexpr int VT = L::VT, LDK = L::LDK, LDS = L::LDS, LDU = L::LDU;
    constexpr int KS = DKP / 16;  // k steps (and n-tile pairs) over the key dim
    extern __shared__ __align__(128) char smem_raw[];

    const int tiles_v = a.DVP / VT;
    const int vt = blockIdx.x % tiles_v, bh = blockIdx.x / tiles_v, b = bh / a.H, h = bh % a.H;
    const int v0 = vt * VT;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c4 = lane % 4;
    const int j0 = warp * 16;  // this warp's value columns within the tile
    const size_t Tp = size_t(a.NC) * kChunk;
    // ldmatrix addressing: lane l points at row l % 8 of matrix l / 8.
    const int lrow = lane % 8, lmat = lane / 8;

    auto stage_ptr = [&](int s, size_t off) { return smem_raw + s * L::kStage + off; };
    auto prefetch = [&](int n, int s) {
        const size_t row0 = size_t(bh) * Tp + size_t(n) * kChunk;
        const int t0 = n * kChunk, rows = min(kChunk, a.T - t0);
        auto* sW = reinterpret_cast<__nv_bfloat16*>(stage_ptr(s, L::kW));
        auto* sK = reinterpret_cast<__nv_bfloat16*>(stage_ptr(s, L::kK));
        auto* sQ = reinterpret_cast<__nv_bfloat16*>(stage_ptr(s, L::kQ));
        auto* sS = reinterpret_cast<__nv_bfloat16*>(stage_ptr(s, L::kS));
        auto* sU = reinterpret_cast<__nv_bfloat16*>(stage_ptr(s, L::kU));
        auto* sG = reinterpret_cast<float*>(stage_ptr(s, L::kG));
        constexpr int kRowVecs = DKP / 8;
        for (int idx = threadIdx.x; idx < kChunk * kRowVecs; idx += blockDim.x) {
            const int r = idx / kRowVecs, c = (idx % kRowVecs) * 8;
            __pipeline_memcpy_async(sW + r * LDK + c, a.w + (row0 + r) * DKP + c, 16);
        }
        for (int idx = threadIdx.x; idx < kChunk * kChunk / 8; idx += blockDim.x) {
            const int r = idx / 8, c = (idx % 8) * 8;
            __pipeline_memcpy_async(sS + r * LDS + c,
                                    a.s + ((size_t(bh) * a.NC + n) * kChunk + r) * kChunk + c, 16);
        }
        for (int idx = threadIdx.x; idx < kChunk * VT / 8; idx += blockDim.x) {
            const int r = idx / (VT / 8), c = (idx % (VT / 8)) * 8;
            __pipeline_memcpy_async(sU + r * LDU + c, a.u + (row0 + r) * a.DVP + v0 + c, 16);
        }
        if (threadIdx.x < kChunk / 4)
            __pipeline_memcpy_async(sG + threadIdx.x * 4, a.gamma + row0 + threadIdx.x * 4, 16);
        const size_t tok = (size_t(b) * a.T + t0) * a.H + h, stride = size_t(a.H) * a.Dk;
        if (a.qk_vec) {
            for (int idx = threadIdx.x; idx < kChunk * kRowVecs; idx += blockDim.x) {
                const int r = idx / kRowVecs, c = (idx % kRowVecs) * 8;
                const bool ok = r < rows && c < a.Dk;
                const size_t off = ok ? (tok + size_t(r) * a.H) * a.Dk + c : 0;
                __pipeline_memcpy_async(sK + r * LDK + c, a.k + off, 16, ok ? 0 : 16);
                __pipeline_memcpy_async(sQ + r * LDK + c, a.q + off, 16, ok ? 0 : 16);
            }
        } else {  // synchronous; visible after the barrier that precedes the chunk's use
            load_rows<kChunk>(sK, LDK, DKP, a.k + tok * a.Dk, stride, rows, a.Dk, false);
            load_rows<kChunk>(sQ, LDK, DKP, a.q + tok * a.Dk, stride, rows, a.Dk, false);
        }
        __pipeline_commit();
    };

    // This warp's slice of Hᵀ: rows (value columns) j0 + g and j0 + g + 8, key n-tiles of 8.
    float hs[2 * KS][4];
    float* st = a.state + size_t(bh) * a.Dk * a.Dv;
#pragma unroll
    for (int nt = 0; nt < 2 * KS; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int i = nt * 8 + 2 * c4 + (e & 1), j = v0 + j0 + g + (e >> 1) * 8;
            hs[nt][e] = (i < a.Dk && j < a.Dv) ? st[size_t(i) * a.Dv + j] : 0.0f;
        }

    prefetch(0, 0);
    for (int n = 0; n < a.NC; ++n) {
        const int s = n & 1;
        if (n + 1 < a.NC) {
            prefetch(n + 1, s ^ 1);
            __pipeline_wait_prior(1);  // chunk n's copies are complete (n + 1's may still fly)
        } else {
            __pipeline_wait_prior(0);
        }
        __syncthreads();
        const auto* sW = reinterpret_cast<const __nv_bfloat16*>(stage_ptr(s, L::kW));
        const auto* sK = reinterpret_cast<const __nv_bfloat16*>(stage_ptr(s, L::kK));
        const auto* sQ = reinterpret_cast<const __nv_bfloat16*>(stage_ptr(s, L::kQ));
        const auto* sS = reinterpret_cast<const __nv_bfloat16*>(stage_ptr(s, L::kS));
        auto* sU = reinterpret_cast<__nv_bfloat16*>(stage_ptr(s, L::kU));
        const auto* sG = reinterpret_cast<const float*>(stage_ptr(s, L::kG));

        // Hᵀ as bf16 A tiles (the chunk-start state of both products below).
        uint32_t ha[KS][4];
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) accumulators_to_a(ha[ks], hs[2 * ks], hs[2 * ks + 1]);

        // Pᵀ = Hᵀ Wᵀ (16 value rows × 64 tokens), then V'ᵀ = Uᵀ − Pᵀ in place.
        float p[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) p[nt][0] = p[nt][1] = p[nt][2] = p[nt][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks)
#pragma unroll
            for (int np = 0; np < 4; ++np) {
                uint32_t bw[4];
                ldsm_x4(bw,
                        sW + (np * 16 + (lmat / 2) * 8 + lrow) * LDK + ks * 16 + (lmat % 2) * 8);
                mma_bf16(p[2 * np], ha[ks], bw[0], bw[1]);
                mma_bf16(p[2 * np + 1], ha[ks], bw[2], bw[3]);
            }
#pragma unroll
        for (int np = 0; np < 4; ++np) {
            uint32_t ut[4];  // Uᵀ accumulator-shaped: (n-tile 2np rows g | g+8), (2np+1 ...)
            ldsm_x4_trans(ut, sU + (np * 16 + (lmat / 2) * 8 + lrow) * LDU + j0 + (lmat % 2) * 8);
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const float2 lo = unpack_bf16(ut[2 * half]), hi = unpack_bf16(ut[2 * half + 1]);
                float(&d)[4] = p[2 * np + half];
                d[0] = lo.x - d[0];
                d[1] = lo.y - d[1];
                d[2] = hi.x - d[2];
                d[3] = hi.y - d[3];
            }
        }
        // Per-token factors of this lane's columns (tokens 8·nt + 2·c4 + {0, 1}).
        const float gamma_last = sG[kChunk - 1];
        uint32_t vn[4][4], vd[4][4];  // V'ᵀ and (V' ⊙ e^{γ_C − γ})ᵀ as bf16 A tiles over tokens
        float eg[8][2];               // e^{γ_t}
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
            const int t = nt * 8 + 2 * c4;
            const float g0 = sG[t], g1 = sG[t + 1];
            eg[nt][0] = __expf(g0);
            eg[nt][1] = __expf(g1);
            const float d0 = __expf(gamma_last - g0), d1 = __expf(gamma_last - g1);
            const float(&x)[4] = p[nt];
            const uint32_t plain_lo = pack_bf16(x[0], x[1]), plain_hi = pack_bf16(x[2], x[3]);
            const uint32_t dec_lo = pack_bf16(x[0] * d0, x[1] * d1),
                           dec_hi = pack_bf16(x[2] * d0, x[3] * d1);
            const int ks = nt / 2, part = (nt % 2) * 2;
            vn[ks][part] = plain_lo;
            vn[ks][part + 1] = plain_hi;
            vd[ks][part] = dec_lo;
            vd[ks][part + 1] = dec_hi;
        }

        // Oᵀ = (Hᵀ Qᵀ) ⊙ e^γ + V'ᵀ Sᵀ (S is lower triangular: k tiles ≤ the n-tile pair only).
        float o[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks)
#pragma unroll
            for (int np = 0; np < 4; ++np) {
                uint32_t bq[4];
                ldsm_x4(bq,
                        sQ + (np * 16 + (lmat / 2) * 8 + lrow) * LDK + ks * 16 + (lmat % 2) * 8);
                mma_bf16(o[2 * np], ha[ks], bq[0], bq[1]);
                mma_bf16(o[2 * np + 1], ha[ks], bq[2], bq[3]);
            }
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
            o[nt][0] *= eg[nt][0];
            o[nt][1] *= eg[nt][1];
            o[nt][2] *= eg[nt][0];
            o[nt][3] *= eg[nt][1];
        }
#pragma unroll
        for (int np = 0; np < 4; ++np)
#pragma unroll
            for (int ks = 0; ks <= np; ++ks) {
                uint32_t bs[4];
                ldsm_x4(bs,
                        sS + (np * 16 + (lmat / 2) * 8 + lrow) * LDS + ks * 16 + (lmat % 2) * 8);
                mma_bf16(o[2 * np], vn[ks], bs[0], bs[1]);
                mma_bf16(o[2 * np + 1], vn[ks], bs[2], bs[3]);
            }

        // Outputs through this warp's own 16 columns of the U tile (read above, dead now).
        __syncwarp();
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int t = nt * 8 + 2 * c4 + (e & 1), jj = j0 + g + (e >> 1) * 8;
                sU[t * LDU + jj] = __float2bfloat16(o[nt][e]);
            }
        __syncwarp();
        {
            const int t0 = n * kChunk, rows = min(kChunk, a.T - t0);
            const size_t tok = (size_t(b) * a.T + t0) * a.H + h;
            for (int idx = lane; idx < kChunk * 2; idx += 32) {
                const int r = idx / 2, c = v0 + j0 + (idx % 2) * 8;
                if (r >= rows) continue;
                __nv_bfloat16* dst = a.o + (tok + size_t(r) * a.H) * a.Dv + c;
                const __nv_bfloat16* src = sU + r * LDU + j0 + (idx % 2) * 8;
                if (a.o_vec && c + 8 <= a.Dv) {
                    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
                } else {
                    for (int e = 0; e < 8 && c + e < a.Dv; ++e) dst[e] = src[e];
                }
            }
        }

        // Hᵀ ← e^{γ_C} Hᵀ + (V' ⊙ e^{γ_C − γ})ᵀ K.
        const float decay = expf(gamma_last);
#pragma unroll
        for (int nt = 0; nt < 2 * KS; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) hs[nt][e] *= decay;
#pragma unroll
        for (int ks = 0; ks < 4; ++ks)
#pragma unroll
            for (int np = 0; np < KS; ++np) {
                uint32_t bk[4];
                ldsm_x4_trans(
                    bk, sK + (ks * 16 + (lmat % 2) * 8 + lrow) * LDK + np * 16 + (lmat / 2) * 8);
                mma_bf16(hs[2 * np], vd[ks], bk[0], bk[1]);
                mma_bf16(hs[2 * np + 1], vd[ks], bk[2], bk[3]);
            }
        __syncthreads();  // every warp is done with this stage before it is refilled
    }

#pragma unroll
    for (int nt = 0; nt < 2 * KS; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int i = nt * 8 + 2 * c4 + (e & 1), j = v0 + j0 + g + (e >> 1) * 8;
            if (i < a.Dk && j < a.Dv) st[size_t(i) * a.Dv + j] = hs[nt][e];
        }
}

}  // namespace olmo::kernels
