// Chunked gated delta rule on tensor cores (spec §3): what the two kernels share. bf16 operands,
// f32 accumulation and an f32 state; chunk C = 64; the key dim padded to DKP (a multiple of 16).
//   1. gdn_wy.cuh:   per (b, h, chunk), all chunks in parallel: γ = cumsum(g); A =
//                    strict_lower(β kkᵀ ⊙ Γ) and T = (I + A)⁻¹ in f32; W = T·diag(β e^γ)·K,
//                    U = T·diag(β)·V (spec §3.2) and the intra-chunk attention S = (QKᵀ) ⊙ Γ ⊙ M_≤,
//                    stored in bf16 for the scan.
//   2. gdn_scan.cuh: per (b, h, tile of value columns), sequential over chunks: the state, V' and
//                    the outputs (spec §3.3).
// Padding rows (past the sequence end) have zero q, k, v, β and g, so they leave every real output
// and the state unchanged. Never is exp(γ_i − γ_j) evaluated for j > i.
#pragma once

#include <cuda_pipeline.h>

#include "common.cuh"
#include "mma.cuh"

namespace olmo::kernels {

constexpr int kChunk = 64;

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

__host__ __device__ constexpr size_t carve_bytes(size_t n) {
    return (n + 127) / 128 * 128;
}

// Shared-memory carving: 128-byte aligned pieces.
struct Carve {
    char* p;
    template <class X>
    __device__ X* take(size_t n) {
        X* r = reinterpret_cast<X*>(p);
        p += carve_bytes(n * sizeof(X));
        return r;
    }
};

// Copies a 64-row tile: `rows` rows of `cols` bf16 values, rows `stride` elements apart in global
// memory, into shared memory of pitch `ld` and `width` columns (a multiple of 8), zero-filling the
// rest, by threads tid = 0 .. nthreads − 1 of the block.
//   async: 16-byte cp.async copies (cols, stride and src multiples of 8 elements); the caller
//          commits and waits.
//   sync:  element by element, any layout; visible after the caller's next barrier.
__device__ __forceinline__ void copy_rows_async(__nv_bfloat16* __restrict__ dst, int ld, int width,
                                                const __nv_bfloat16* __restrict__ src,
                                                size_t stride, int rows, int cols, int tid,
                                                int nthreads) {
    const int per_row = width / 8;
    for (int idx = tid; idx < kChunk * per_row; idx += nthreads) {
        const int r = idx / per_row, c = (idx % per_row) * 8;
        const bool ok = r < rows && c < cols;
        __pipeline_memcpy_async(dst + r * ld + c, src + (ok ? size_t(r) * stride + c : 0), 16,
                                ok ? 0 : 16);
    }
}

__device__ __forceinline__ void copy_rows_sync(__nv_bfloat16* __restrict__ dst, int ld, int width,
                                               const __nv_bfloat16* __restrict__ src, size_t stride,
                                               int rows, int cols, int tid, int nthreads) {
    for (int idx = tid; idx < kChunk * width; idx += nthreads) {
        const int r = idx / width, c = idx % width;
        dst[r * ld + c] =
            (r < rows && c < cols) ? src[size_t(r) * stride + c] : __float2bfloat16(0.0f);
    }
}

__device__ __forceinline__ void copy_rows(__nv_bfloat16* __restrict__ dst, int ld, int width,
                                          const __nv_bfloat16* __restrict__ src, size_t stride,
                                          int rows, int cols, bool vec, int tid, int nthreads) {
    if (vec)
        copy_rows_async(dst, ld, width, src, stride, rows, cols, tid, nthreads);
    else
        copy_rows_sync(dst, ld, width, src, stride, rows, cols, tid, nthreads);
}

// Synchronises the `nthreads` threads (a multiple of 32) that use named barrier `id` (1..15; 0 is
// __syncthreads).
__device__ __forceinline__ void named_barrier(int id, int nthreads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(nthreads) : "memory");
}

}  // namespace olmo::kernels
