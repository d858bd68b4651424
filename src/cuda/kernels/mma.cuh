// Warp-level tensor-core building blocks shared by the attention and gated-delta-rule kernels:
// bf16 packing, one m16n8k16 bf16 product with f32 accumulation, and ldmatrix loads from shared
// memory (plain and transposed).
//
// Fragment layouts (lane = 4·g + c): an accumulator tile holds (row g, cols 2c, 2c+1) in d0, d1
// and (row g+8, same cols) in d2, d3; an A tile (16 × 16) holds (row g | g+8, k 2c.. | 2c+8..) in
// a0..a3; a B tile (16 × 8) holds (k 2c, 2c+1 | 2c+8, 2c+9; col g) in b0, b1. An accumulator pair
// covering 16 columns is therefore an A tile after packing to bf16, which lets a product's result
// feed the next product without leaving registers.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace olmo::kernels {

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ uint32_t pack_bf16(__nv_bfloat16 lo, __nv_bfloat16 hi) {
    __nv_bfloat162 v;
    v.x = lo;
    v.y = hi;
    return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ float2 unpack_bf16(uint32_t x) {
    __nv_bfloat162 v;
    *reinterpret_cast<uint32_t*>(&v) = x;
    return __bfloat1622float2(v);
}

// d = a·b + d for one m16n8k16 tile (a: 4 regs of bf16 pairs, b: 2 regs, d: 4 f32).
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// A tile (16 × 16 bf16) from two f32 accumulator tiles covering its k columns 0-7 and 8-15.
__device__ __forceinline__ void accumulators_to_a(uint32_t (&a)[4], const float (&lo)[4],
                                                  const float (&hi)[4]) {
    a[0] = pack_bf16(lo[0], lo[1]);
    a[1] = pack_bf16(lo[2], lo[3]);
    a[2] = pack_bf16(hi[0], hi[1]);
    a[3] = pack_bf16(hi[2], hi[3]);
}

// Four 8 × 8 bf16 matrices from shared memory; lane l gives the address of row l % 8 of matrix
// l / 8. Plain: lane (g, c) receives (row g, cols 2c, 2c+1) of each matrix. Transposed: lane (g, c)
// receives (rows 2c, 2c+1; col g).
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
    const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void* p) {
    const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

// The inverse of ldsm_x4_trans (sm_90): lane (g, c) holds (row g, cols 2c, 2c+1) of four 8 × 8
// matrices and each is stored transposed; lane l gives the address of row l % 8 of matrix l / 8 of
// the stored (transposed) layout.
__device__ __forceinline__ void stsm_x4_trans(void* p, uint32_t r0, uint32_t r1, uint32_t r2,
                                              uint32_t r3) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
    asm volatile(
        "stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1,%2,%3,%4};\n" ::"r"(addr),
        "r"(r0), "r"(r1), "r"(r2), "r"(r3)
        : "memory");
#else
    (void)p, (void)r0, (void)r1, (void)r2, (void)r3;
    __trap();  // callers use it on sm_90 and later only
#endif
}

// Per-lane ldmatrix row addresses (lane l points at row l % 8 of matrix l / 8) for a 16 × 16 tile
// at (row0, col0) of a row-major bf16 matrix with pitch ld. The four 8 × 8 matrices are taken
//   a_tile_addr: down then right. With ldsm_x4: the A operand (rows = m, cols = k) → a0..a3. With
//                ldsm_x4_trans on a matrix stored k-major (rows = k, cols = n): b0, b1 of n-tile
//                col0, then b0, b1 of n-tile col0 + 8.
//   b_tile_addr: right then down. With ldsm_x4 on a matrix stored n-major (rows = n, cols = k):
//                b0, b1 of n-tile row0, then b0, b1 of n-tile row0 + 8. With ldsm_x4_trans on a
//                matrix stored (rows = n, cols = m): the accumulator pairs (rows g | g + 8) of
//                n-tile row0, then of n-tile row0 + 8, for the tile's m = col0 .. col0 + 15.
__device__ __forceinline__ const __nv_bfloat16* a_tile_addr(const __nv_bfloat16* base, int ld,
                                                            int row0, int col0, int lane) {
    const int lrow = lane % 8, lmat = lane / 8;
    return base + (row0 + (lmat % 2) * 8 + lrow) * ld + col0 + (lmat / 2) * 8;
}

__device__ __forceinline__ const __nv_bfloat16* b_tile_addr(const __nv_bfloat16* base, int ld,
                                                            int row0, int col0, int lane) {
    const int lrow = lane % 8, lmat = lane / 8;
    return base + (row0 + (lmat / 2) * 8 + lrow) * ld + col0 + (lmat % 2) * 8;
}

// acc[2·NP][4] += Σ_{ks ≤ last} a[ks] · B[16·ks .. +16, 0 .. 16·NP]: A's k tiles in registers, B
// stored k-major in shared memory (pitch ld), its fragments read with ldmatrix.trans. `last` < 3
// skips the k tiles past it (a triangular A).
template <int NP>
__device__ __forceinline__ void mma_tiles_times_kmajor(float (&acc)[2 * NP][4],
                                                       const uint32_t (&a)[4][4],
                                                       const __nv_bfloat16* b, int ld, int lane,
                                                       int last = 3) {
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
        if (ks > last) continue;
#pragma unroll
        for (int np = 0; np < NP; ++np) {
            uint32_t bk[4];
            ldsm_x4_trans(bk, a_tile_addr(b, ld, 16 * ks, 16 * np, lane));
            mma_bf16(acc[2 * np], a[ks], bk[0], bk[1]);
            mma_bf16(acc[2 * np + 1], a[ks], bk[2], bk[3]);
        }
    }
}

}  // namespace olmo::kernels
