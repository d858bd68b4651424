// Skinny matrix products for decoding: out[N, O] = x[N, I] · w[O, I]ᵀ with N ≤ 16 (one token per
// sequence). The work is reading w once, so the kernel is a streaming dot product: each warp owns
// ROWS rows of w, every lane reads 16-byte vectors of them (8 / ROWS vectors per row in flight),
// multiplies them by the same slice of every token's x (small, served from L1/L2) and accumulates
// in f32; a warp reduction finishes each dot product. Outputs may be split into segments (w's row
// blocks written to separate tensors), so that q|k|v|... of a layer are one pass over their
// concatenated weights.
#pragma once

#include "common.cuh"

namespace olmo::kernels {

constexpr int kGemvWarps = 8;
constexpr int kGemvMaxSegments = 8;

struct GemvSegments {
    int count = 0;
    int64_t start[kGemvMaxSegments + 1] = {};  // first row of each segment; start[count] = O
    void* out[kGemvMaxSegments] = {};          // [N, start[s+1] − start[s]] each
};

__device__ __forceinline__ void fma8(float& acc, const uint4& w, const uint4& x) {
    const __nv_bfloat162* wp = reinterpret_cast<const __nv_bfloat162*>(&w);
    const __nv_bfloat162* xp = reinterpret_cast<const __nv_bfloat162*>(&x);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 a = __bfloat1622float2(wp[i]), b = __bfloat1622float2(xp[i]);
        acc = fmaf(a.x, b.x, acc);
        acc = fmaf(a.y, b.y, acc);
    }
}

template <int NT, int ROWS, class TO>
__global__ void __launch_bounds__(32 * kGemvWarps)
    gemv_kernel(GemvSegments seg, const __nv_bfloat16* __restrict__ x,
                const __nv_bfloat16* __restrict__ w, int N, int64_t I, int64_t O, bool accumulate) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t row0 = (int64_t(blockIdx.x) * kGemvWarps + warp) * ROWS;
    if (row0 >= O) return;
    float acc[ROWS][NT];
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
    const int64_t nvec = I / 8;
    const uint4* wv = reinterpret_cast<const uint4*>(w);
    const uint4* xv = reinterpret_cast<const uint4*>(x);
    int64_t wrow[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
        wrow[r] = (row0 + r < O ? row0 + r : O - 1) * nvec;  // clamp: valid reads
    // U vectors per row in flight per lane, ROWS·U = 8 (16 bytes each): small-O products (one row
    // per warp) need the deeper unroll to keep enough bytes in flight per SM.
    constexpr int U = 8 / ROWS;
    int64_t c = lane;
    for (; c + 32 * (U - 1) < nvec; c += 32 * U) {
        uint4 wv_[ROWS][U];
#pragma unroll
        for (int r = 0; r < ROWS; ++r)
#pragma unroll
            for (int u = 0; u < U; ++u) wv_[r][u] = __ldg(wv + wrow[r] + c + 32 * u);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            if (t >= N) break;
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const uint4 xa = xv[t * nvec + c + 32 * u];
#pragma unroll
                for (int r = 0; r < ROWS; ++r) fma8(acc[r][t], wv_[r][u], xa);
            }
        }
    }
    for (; c < nvec; c += 32) {
        uint4 a[ROWS];
#pragma unroll
        for (int r = 0; r < ROWS; ++r) a[r] = __ldg(wv + wrow[r] + c);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            if (t >= N) break;
            const uint4 xa = xv[t * nvec + c];
#pragma unroll
            for (int r = 0; r < ROWS; ++r) fma8(acc[r][t], a[r], xa);
        }
    }
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[r][t] = warp_sum(acc[r][t]);
    if (lane != 0) return;
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
        const int64_t o = row0 + r;
        if (o >= O) break;
        int s = 0;
        while (o >= seg.start[s + 1]) ++s;
        const int64_t cols = seg.start[s + 1] - seg.start[s], col = o - seg.start[s];
        TO* out = static_cast<TO*>(seg.out[s]);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            if (t >= N) break;
            float v = acc[r][t];
            if (accumulate) v += to_f32(out[t * cols + col]);
            out[t * cols + col] = from_f32<TO>(v);
        }
    }
}

}  // namespace olmo::kernels
