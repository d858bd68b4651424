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

// Pitches (in elements) of the scan's shared-memory tiles; the WY kernel writes the scan's
// operands in exactly these layouts, so that the scan's copies are linear 16-byte streams.
template <int DKP>
constexpr int key_pitch() {  // q, k, w rows: DKP + 8 breaks ldmatrix bank conflicts
    return DKP + 8;
}
constexpr int kSPitch = kChunk + 8;  // rows of S
__host__ __device__ constexpr int value_pitch(int VT) {
    return VT + 8;
}
// Per chunk, the state update's decays: e^{γ_C − γ_t} for its 64 tokens t, then e^{γ_C} (γ_C =
// γ of the last row), padded to whole 16-byte vectors.
constexpr int kStateDecays = kChunk + 4;

struct GdnChunkArgs {
    const __nv_bfloat16 *q, *k, *v;  // [B, T, H, Dk|Dv]
    const float *g, *beta;           // [B, T, H]
    __nv_bfloat16* o;                // [B, T, H, Dv]
    float* state;                    // [B, H, Dk, Dv] in: initial, out: final
    // Workspace written by the WY kernel for the scan, per (b, h) and chunk n (Tp = NC·64 rows):
    __nv_bfloat16* wk;  // [B·H, NC] × {W, K} [64, key_pitch]
    __nv_bfloat16*
        qs;  // [B·H, NC] × {Q [64, key_pitch], S [64, kSPitch]} (S: intra-chunk attention)
    __nv_bfloat16* u;    // [B·H, DVP / VT, Tp, value_pitch(VT)] U in tiles of VT value columns
    float* out_decay;    // [B·H, Tp] e^γ (the outputs' decay from the chunk start)
    float* state_decay;  // [B·H, NC, kStateDecays]
    int B, T, H, Dk, Dv, NC, DVP, VT;
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
// rest; warp w of WARPS takes rows w, w + WARPS, ...
//   async: 16-byte cp.async copies (cols, stride and src multiples of 8 elements); the caller
//          commits and waits.
//   sync:  element by element, any layout; visible after the caller's next barrier.
template <int WARPS>
__device__ __forceinline__ void copy_rows(__nv_bfloat16* __restrict__ dst, int ld, int width,
                                          const __nv_bfloat16* __restrict__ src, size_t stride,
                                          int rows, int cols, bool async, int warp, int lane) {
    if (async) {
        for (int c = lane * 8; c < width; c += 32 * 8) {
            const __nv_bfloat16* s = src + size_t(warp) * stride + c;
            __nv_bfloat16* d = dst + warp * ld + c;
#pragma unroll
            for (int i = 0; i < kChunk / WARPS; ++i) {
                const int r = warp + i * WARPS;
                const bool ok = r < rows && c < cols;
                __pipeline_memcpy_async(d + i * WARPS * ld, ok ? s + i * WARPS * stride : src, 16,
                                        ok ? 0 : 16);
            }
        }
    } else {
        for (int r = warp; r < kChunk; r += WARPS)
            for (int c = lane; c < width; c += 32)
                dst[r * ld + c] =
                    (r < rows && c < cols) ? src[size_t(r) * stride + c] : __float2bfloat16(0.0f);
    }
}

// NBYTES (a multiple of 16) from global to shared memory with 16-byte cp.async copies, by threads
// tid = 0 .. NT − 1; the caller commits and waits.
template <int NBYTES, int NT>
__device__ __forceinline__ void copy_linear(void* dst, const void* src, int tid) {
    static_assert(NBYTES % 16 == 0, "whole 16-byte vectors");
    constexpr int kVecs = NBYTES / 16, kRounds = (kVecs + NT - 1) / NT;
    char* d = static_cast<char*>(dst) + 16 * tid;
    const char* s = static_cast<const char*>(src) + 16 * tid;
#pragma unroll
    for (int k = 0; k < kRounds; ++k)
        if (kVecs % NT == 0 || tid + k * NT < kVecs)
            __pipeline_memcpy_async(d + 16 * k * NT, s + 16 * k * NT, 16);
}

// Synchronises the `nthreads` threads (a multiple of 32) that use named barrier `id` (1..15; 0 is
// __syncthreads).
__device__ __forceinline__ void named_barrier(int id, int nthreads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(nthreads) : "memory");
}

}  // namespace olmo::kernels
