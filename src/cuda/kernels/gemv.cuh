// Skinny matrix products for decoding: out[N, O] = x[N, I] · w[O, I]ᵀ with N ≤ 8 (one token per
// sequence). The work is reading w once, so the kernel is a streaming dot product: each warp owns
// ROWS rows of w, every lane reads 16-byte vectors of them, multiplies them by the same slice of
// every token's x (small, served from L1/L2) and accumulates in f32; a warp reduction finishes each
// dot product. The weight loads are software-pipelined: the next batch of ROWS·U = 4 vectors per
// lane is issued before the current one is multiplied (measured on the H200: batches of 4 beat 8
// and 16, whose registers cost occupancy, and an unpipelined loop by 5-15%), with one row per warp
// the row's last, partial batch included. Outputs may be split into segments (w's row blocks
// written to separate tensors), so that q|k|v|... of a layer are one pass over their concatenated
// weights.
//
// With SWIGLU, the products are an MLP's gate and up projections and the epilogue also applies the
// activation: each warp owns ROWS/2 rows of w_gate and the same rows of w_up, and writes gate, up
// and act = silu(gate) ⊙ up for them, rounding as the unfused ops do (no SwiGLU kernel after).
//
// One token may also carry an RMSNorm across the product boundary instead of running it as a kernel
// of its own (GemvFuse): a product that writes the residual stream h also stores h ⊙ w_norm (the
// weight of the RMSNorm that reads h next) and the sums of squares of h, one per block
// (sumsq_out); the next product multiplies h ⊙ w_norm and scales its dot products by the norm's
// r = 1 / sqrt(mean(h²) + eps) (norm_in), which every block adds up from those partial sums in the
// same order while its first weight loads are in flight. Its loop is the plain product's: measured
// on the H200, normalising the input inside the loop took 70% more instructions (+6 to 8 us per
// product), and staging the normalised row per block cost more still.
#pragma once

#include "vec.cuh"

namespace olmo::kernels {

enum class GemvFuse { none, norm_in, sumsq_out };

constexpr int kGemvWarps = 4;
constexpr int kGemvMaxSegments = 8;
constexpr int kGemvBatch = 4;  // weight vectors per lane per pipeline stage (ROWS · U)
// GemvFuse::norm_in: the most partial sums a block adds up, kGemvSumsqPerThread per thread.
constexpr int kGemvSumsqPerThread = 8;
constexpr int kGemvMaxSumsq = 32 * kGemvWarps * kGemvSumsqPerThread;

struct GemvSegments {
    int count = 0;
    int64_t start[kGemvMaxSegments + 1] = {};  // first row of each segment; start[count] = O
    void* out[kGemvMaxSegments] = {};          // [N, start[s+1] − start[s]] each
};

struct GemvArgs {
    GemvSegments seg;
    const __nv_bfloat16* x;     // [N, I]
    const __nv_bfloat16* w;     // [O, I] (SWIGLU: w_gate)
    const __nv_bfloat16* w_up;  // SWIGLU: [O, I]
    void *gate, *up, *act;      // SWIGLU: [N, O] each; act may alias gate or up
    int N;
    int64_t I, O;
    bool accumulate;
    // GemvFuse::norm_in: x = h ⊙ w_norm; every output is scaled by
    // r = 1 / sqrt(Σ sumsq_in[0, sumsq_count) / I + norm_eps).
    const float* sumsq_in;
    int sumsq_count;
    float norm_eps;
    // GemvFuse::sumsq_out: sumsq_out[block] = Σ out² over the block's rows, of the stored values,
    // and scaled[o] = out[o] · norm_w[o] rounded to TO.
    float* sumsq_out;
    const void* norm_w;
    void* scaled;
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

// A streaming load of weights read once: not kept in L1, and a hint to fetch whole 256-byte L2
// lines from memory.
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// The RMSNorm scale r of GemvFuse::norm_in from the producer's partial sums (at most
// kGemvMaxSumsq), added in the same order in every block (so every block gets the same r). Each
// thread adds its share at the start (its loads issued together, while the first weights are on
// their way); the block adds the shares up after the products (every thread calls it).
__device__ __forceinline__ float gemv_sumsq_share(const GemvArgs& a) {
    float v[kGemvSumsqPerThread];
#pragma unroll
    for (int k = 0; k < kGemvSumsqPerThread; ++k) {
        const int i = int(threadIdx.x) + k * 32 * kGemvWarps;
        v[k] = i < a.sumsq_count ? a.sumsq_in[i] : 0.0f;
    }
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < kGemvSumsqPerThread; ++k) s += v[k];
    return s;
}

__device__ __forceinline__ float gemv_norm_scale(const GemvArgs& a, float share) {
    __shared__ float part[kGemvWarps];
    share = warp_sum(share);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = share;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kGemvWarps; ++w) total += part[w];
    return 1.0f / sqrtf(total / float(a.I) + a.norm_eps);  // as rmsnorm_kernel
}

// Finishes the dot products of a warp: every lane gets the sums of its lanes' partial products.
template <int NT, int ROWS>
__device__ __forceinline__ void gemv_warp_sums(float (&acc)[ROWS][NT]) {
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[r][t] = warp_sum(acc[r][t]);
}

// Finishes the dot products of a warp, scales them by `scale` and writes them, lane 0 for the warp.
// With SUMSQ (one token, one row per warp, one segment): also writes scaled[o] = out[o] · norm_w[o]
// (norm_w_row, lane 0's) and returns the square of the value stored (0 on other lanes).
template <int NT, int ROWS, class TO, bool SUMSQ = false>
__device__ __forceinline__ float gemv_store(const GemvArgs& a, float (&acc)[ROWS][NT], int64_t row0,
                                            int lane, float scale, float norm_w_row = 0.0f) {
    static_assert(!SUMSQ || (ROWS == 1 && NT == 1), "sums of squares: one row per warp");
    const GemvSegments& seg = a.seg;
    const int N = a.N;
    const int64_t O = a.O;
    gemv_warp_sums(acc);
    float squares = 0.0f;
    if (lane != 0) return squares;
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
            float v = acc[r][t] * scale;
            if (a.accumulate) v += to_f32(out[t * cols + col]);
            const TO stored = from_f32<TO>(v);
            out[t * cols + col] = stored;
            if constexpr (SUMSQ) {
                const float h = to_f32(stored);
                squares += h * h;
                static_cast<TO*>(a.scaled)[o] = from_f32<TO>(h * norm_w_row);
            }
        }
    }
    return squares;
}

// The SWIGLU epilogue: rows row0 .. row0 + H − 1 of gate (acc[0 .. H)) and of up (acc[H .. 2H)).
template <int NT, int ROWS, class TO>
__device__ __forceinline__ void gemv_swiglu_store(const GemvArgs& a, float (&acc)[ROWS][NT],
                                                  int64_t row0, int lane, float scale) {
    constexpr int H = ROWS / 2;
    gemv_warp_sums(acc);
    if (lane != 0) return;
    TO *gate = static_cast<TO*>(a.gate), *up = static_cast<TO*>(a.up),
       *act = static_cast<TO*>(a.act);
#pragma unroll
    for (int r = 0; r < H; ++r) {
        const int64_t o = row0 + r;
        if (o >= a.O) break;
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            if (t >= a.N) break;
            const TO g = from_f32<TO>(acc[r][t] * scale), u = from_f32<TO>(acc[H + r][t] * scale);
            const int64_t at = t * a.O + o;
            gate[at] = g;
            up[at] = u;
            act[at] = from_f32<TO>(silu_f(to_f32(g)) * to_f32(u));  // as SwigluOp
        }
    }
}

// grid ⌈O / (kGemvWarps · ROWS)⌉ blocks of 32 · kGemvWarps threads (SWIGLU: ROWS/2 rows of each
// of the two weights per warp). MIN_BLOCKS > 0 asks the compiler for that many resident blocks per
// SM (a register cap: 9 blocks of 4 warps leave 56 registers a thread); 0 leaves it free.
template <int NT, int ROWS, class TO, bool SWIGLU, int MIN_BLOCKS = 0,
          GemvFuse FUSE = GemvFuse::none>
__global__ void __launch_bounds__(32 * kGemvWarps, MIN_BLOCKS) gemv_kernel(GemvArgs a) {
    static_assert(!SWIGLU || ROWS % 2 == 0, "SWIGLU pairs gate and up rows");
    static_assert(FUSE == GemvFuse::none || NT == 1, "the carried norm is for one token");
    static_assert(FUSE != GemvFuse::sumsq_out || !SWIGLU, "sums of squares of plain products");
    constexpr int U = kGemvBatch / ROWS;
    constexpr int kOwnRows = SWIGLU ? ROWS / 2 : ROWS;  // rows of the output per warp
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t O = a.O, nvec = a.I / 8;
    const int64_t row0 = (int64_t(blockIdx.x) * kGemvWarps + warp) * kOwnRows;
    // The carried norm's block-wide steps need every warp; a warp past the last row then streams
    // the last row again (clamped below) and stores nothing.
    if (FUSE == GemvFuse::none && row0 >= O) return;
    const uint4* wrow[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
        const int64_t row = row0 + r % kOwnRows;
        const __nv_bfloat16* base = SWIGLU && r >= kOwnRows ? a.w_up : a.w;
        wrow[r] = reinterpret_cast<const uint4*>(base) + (row < O ? row : O - 1) * nvec +
                  lane;  // clamped: valid reads
    }
    const uint4* xv = reinterpret_cast<const uint4*>(a.x);
    const int N = a.N;
    float acc[ROWS][NT];
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
    constexpr int64_t kStep = 32 * U;
    const int64_t full = nvec / kStep;  // whole batches of U vectors per lane
    // The row's last, partial batch. One row per warp (the o and down products, ~3 vectors per lane
    // after the last whole batch): loaded inside the pipeline, vectors past the row end read from
    // the row's first vector (a valid address: no predicated loads in the stream) and skipped.
    // More rows per warp measured slower that way (the GDN q|k|v|a|b|z product +0.8 us): one vector
    // per lane at a time after the pipeline, each a memory latency. H200, decode step B = 1:
    // 4.33 -> 4.26 ms.
    constexpr bool kPipelinedTail = ROWS == 1;
    const bool partial = kPipelinedTail && full * kStep < nvec;
    uint4 cur[ROWS][U], nxt[ROWS][U];
    auto load_full = [&](uint4(&buf)[ROWS][U], int64_t c) {
#pragma unroll
        for (int r = 0; r < ROWS; ++r)
#pragma unroll
            for (int u = 0; u < U; ++u) buf[r][u] = load_stream(wrow[r] + c + 32 * u);
    };
    auto load_partial = [&](uint4(&buf)[ROWS][U], int64_t c) {
#pragma unroll
        for (int r = 0; r < ROWS; ++r)
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const bool in_row = c + 32 * u + lane < nvec;
                buf[r][u] = load_stream(in_row ? wrow[r] + c + 32 * u : wrow[r] - lane);
            }
    };
    if (full > 0)
        load_full(cur, 0);
    else if (partial)
        load_partial(cur, 0);
    [[maybe_unused]] float sumsq_share = 0.0f, norm_w_row = 0.0f;
    if constexpr (FUSE == GemvFuse::norm_in) sumsq_share = gemv_sumsq_share(a);
    if constexpr (FUSE == GemvFuse::sumsq_out)  // one row per warp: its norm weight, early
        if (lane == 0) norm_w_row = to_f32(static_cast<const TO*>(a.norm_w)[row0 < O ? row0 : 0]);
    for (int64_t it = 0; it < full; ++it) {
        const int64_t c = it * kStep;
        if (it + 1 < full)
            load_full(nxt, c + kStep);
        else if (partial)
            load_partial(nxt, c + kStep);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            if (t >= N) break;
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const uint4 xa = xv[t * nvec + c + lane + 32 * u];
#pragma unroll
                for (int r = 0; r < ROWS; ++r) fma8(acc[r][t], cur[r][u], xa);
            }
        }
        if (it + 1 < full || partial) {
#pragma unroll
            for (int r = 0; r < ROWS; ++r)
#pragma unroll
                for (int u = 0; u < U; ++u) cur[r][u] = nxt[r][u];
        }
    }
    if (partial) {
        const int64_t c = full * kStep;
#pragma unroll
        for (int u = 0; u < U; ++u) {
            if (c + 32 * u + lane >= nvec) continue;
#pragma unroll
            for (int t = 0; t < NT; ++t) {
                if (t >= N) break;
                const uint4 xa = xv[t * nvec + c + lane + 32 * u];
#pragma unroll
                for (int r = 0; r < ROWS; ++r) fma8(acc[r][t], cur[r][u], xa);
            }
        }
    }
    if constexpr (!kPipelinedTail) {
        for (int64_t c = full * kStep + lane; c < nvec; c += 32) {
            uint4 w[ROWS];
#pragma unroll
            for (int r = 0; r < ROWS; ++r) w[r] = load_stream(wrow[r] - lane + c);
#pragma unroll
            for (int t = 0; t < NT; ++t) {
                if (t >= N) break;
                const uint4 xa = xv[t * nvec + c];
#pragma unroll
                for (int r = 0; r < ROWS; ++r) fma8(acc[r][t], w[r], xa);
            }
        }
    }
    float scale = 1.0f;
    if constexpr (FUSE == GemvFuse::norm_in) scale = gemv_norm_scale(a, sumsq_share);
    if constexpr (SWIGLU) {
        gemv_swiglu_store<NT, ROWS, TO>(a, acc, row0, lane, scale);
    } else if constexpr (FUSE == GemvFuse::sumsq_out) {
        const float squares = gemv_store<NT, ROWS, TO, true>(a, acc, row0, lane, scale, norm_w_row);
        __shared__ float part[kGemvWarps];  // the block's sum, its warps in order
        if (lane == 0) part[warp] = squares;
        __syncthreads();
        if (threadIdx.x == 0) {
            float s = 0.0f;
#pragma unroll
            for (int w = 0; w < kGemvWarps; ++w) s += part[w];
            a.sumsq_out[blockIdx.x] = s;
        }
    } else {
        gemv_store<NT, ROWS, TO>(a, acc, row0, lane, scale);
    }
}

}  // namespace olmo::kernels
