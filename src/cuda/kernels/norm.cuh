// Row normalisations: RMSNorm, gated RMSNorm (GDN output) and the L2 norm (GDN q, k), forward and
// backward. A row is handled by one warp (kWarp: short rows, blockDim.x / 32 rows per block) or by
// a whole block (one row per block), in packs of N elements (16 bytes, or N = 1 when rows are not
// 16-byte aligned). Statistics are f32 sums; outputs are rounded once. Each thread reads the
// elements it writes, after the reduction, so outputs may alias inputs of the same shape.
//
// Backward passes with a weight gradient run in steps: per-row statistics into a scratch array,
// the weight gradient as f32 partial sums over slices of rows (add_partials_kernel adds them in
// slice order, so results do not depend on timing), then the input gradients, which may overwrite
// d_out.
#pragma once

#include "vec.cuh"

namespace olmo::kernels {

template <bool kWarp>
struct RowGroup {
    __device__ static int64_t row() {
        if constexpr (kWarp) return int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
        return int64_t(blockIdx.x);
    }
    __device__ static int lane() { return kWarp ? int(threadIdx.x & 31) : int(threadIdx.x); }
    __device__ static int size() { return kWarp ? 32 : int(blockDim.x); }
    __device__ static float sum(float v) {
        if constexpr (kWarp) return warp_sum(v);
        return block_sum(v);
    }
};

// ---- RMSNorm -----------------------------------------------------------------------------------

// out = w ⊙ x · r, r = 1 / sqrt(mean(x²) + eps); with a residual (the post-norm update, out may
// alias residual or x) out = residual + w ⊙ x · r.
template <class T, int N, bool kWarp>
__global__ void rmsnorm_kernel(T* out, const T* residual, const T* x, const T* w, int64_t rows,
                               int64_t C, float eps) {
    using G = RowGroup<kWarp>;
    const int64_t row = G::row();
    if (row >= rows) return;
    const T* xr = x + row * C;
    T* yr = out + row * C;
    const int64_t packs = C / N;
    // The first K packs of each thread stay in registers between the two passes (with their weight
    // and residual, loaded at once): one memory round trip instead of two for rows of up to
    // K · group size packs (a decode row of 3,840 in one block). Sums run in the same order.
    constexpr int K = 2;
    // One pack of x, its weight and residual; then w ⊙ (x · r) (+ residual) stored.
    auto load_pack = [&](int64_t p, float(&xv)[N], float(&wp)[N], float(&rp)[N]) {
        load_f32<N>(xv, xr + p * N);
        load_f32<N>(wp, w + p * N);
        if (residual) load_f32<N>(rp, residual + row * C + p * N);
    };
    auto store_pack = [&](int64_t p, float(&xv)[N], const float(&wp)[N], const float(&rp)[N],
                          float r) {
#pragma unroll
        for (int n = 0; n < N; ++n) {
            xv[n] = wp[n] * (xv[n] * r);
            if (residual) xv[n] += rp[n];
        }
        store_f32<N>(yr + p * N, xv);
    };
    float v[K][N], wv[K][N], res[K][N];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < K; ++k) {
        const int64_t p = G::lane() + int64_t(k) * G::size();
        if (p >= packs) continue;
        load_pack(p, v[k], wv[k], res[k]);
#pragma unroll
        for (int n = 0; n < N; ++n) ss += v[k][n] * v[k][n];
    }
    for (int64_t p = G::lane() + int64_t(K) * G::size(); p < packs; p += G::size()) {
        float u[N];
        load_f32<N>(u, xr + p * N);
#pragma unroll
        for (int n = 0; n < N; ++n) ss += u[n] * u[n];
    }
    ss = G::sum(ss);
    const float r = 1.0f / sqrtf(ss / float(C) + eps);
#pragma unroll
    for (int k = 0; k < K; ++k) {
        const int64_t p = G::lane() + int64_t(k) * G::size();
        if (p < packs) store_pack(p, v[k], wv[k], res[k], r);
    }
    for (int64_t p = G::lane() + int64_t(K) * G::size(); p < packs; p += G::size()) {
        float u[N], uw[N], ur[N];
        load_pack(p, u, uw, ur);
        store_pack(p, u, uw, ur, r);
    }
}

// rinv[row] = r, coef[row] = r³ · Σ w dy x / C
template <class T, int N, bool kWarp>
__global__ void rmsnorm_stats_kernel(float* rinv, float* coef, const T* d_out, const T* x,
                                     const T* w, int64_t rows, int64_t C, float eps) {
    using G = RowGroup<kWarp>;
    const int64_t row = G::row();
    if (row >= rows) return;
    const T* xr = x + row * C;
    const T* gr = d_out + row * C;
    float ss = 0.0f, dot = 0.0f;
    for (int64_t p = G::lane(); p < C / N; p += G::size()) {
        float v[N], g[N], wv[N];
        load_f32<N>(v, xr + p * N);
        load_f32<N>(g, gr + p * N);
        load_f32<N>(wv, w + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) {
            ss += v[k] * v[k];
            dot += wv[k] * g[k] * v[k];
        }
    }
    ss = G::sum(ss);
    dot = G::sum(dot);
    if (G::lane() == 0) {
        const float r = 1.0f / sqrtf(ss / float(C) + eps);
        rinv[row] = r;
        coef[row] = r * r * r * dot / float(C);
    }
}

// d_x = r (w ⊙ dy) − coef · x
template <class T, int N, bool kWarp>
__global__ void rmsnorm_dx_kernel(T* d_x, const T* d_out, const T* x, const T* w, const float* rinv,
                                  const float* coef, int64_t rows, int64_t C) {
    using G = RowGroup<kWarp>;
    const int64_t row = G::row();
    if (row >= rows) return;
    const float a = rinv[row], b = coef[row];
    const T* xr = x + row * C;
    const T* gr = d_out + row * C;
    T* dr = d_x + row * C;
    for (int64_t p = G::lane(); p < C / N; p += G::size()) {
        float v[N], g[N], wv[N];
        load_f32<N>(v, xr + p * N);
        load_f32<N>(g, gr + p * N);
        load_f32<N>(wv, w + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) v[k] = a * (wv[k] * g[k]) - b * v[k];
        store_f32<N>(dr + p * N, v);
    }
}

// ---- gated RMSNorm
// -------------------------------------------------------------------------------

// out = w ⊙ x · r ⊙ silu(z)
template <class T, int N, bool kWarp>
__global__ void rmsnorm_gated_kernel(T* out, const T* x, const T* z, const T* w, int64_t rows,
                                     int64_t D, float eps) {
    using G = RowGroup<kWarp>;
    const int64_t row = G::row();
    if (row >= rows) return;
    const T* xr = x + row * D;
    const T* zr = z + row * D;
    T* yr = out + row * D;
    float ss = 0.0f;
    for (int64_t p = G::lane(); p < D / N; p += G::size()) {
        float v[N];
        load_f32<N>(v, xr + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) ss += v[k] * v[k];
    }
    ss = G::sum(ss);
    const float r = 1.0f / sqrtf(ss / float(D) + eps);
    for (int64_t p = G::lane(); p < D / N; p += G::size()) {
        float v[N], zv[N], wv[N];
        load_f32<N>(v, xr + p * N);
        load_f32<N>(zv, zr + p * N);
        load_f32<N>(wv, w + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) v[k] = wv[k] * (v[k] * r) * silu_f(zv[k]);
        store_f32<N>(yr + p * N, v);
    }
}

// rinv[row] = r, coef[row] = Σ (dy w silu(z)) (x r) / D   (the mean of dn · n)
template <class T, int N, bool kWarp>
__global__ void rmsnorm_gated_stats_kernel(float* rinv, float* coef, const T* d_out, const T* x,
                                           const T* z, const T* w, int64_t rows, int64_t D,
                                           float eps) {
    using G = RowGroup<kWarp>;
    const int64_t row = G::row();
    if (row >= rows) return;
    const T* xr = x + row * D;
    const T* zr = z + row * D;
    const T* gr = d_out + row * D;
    float ss = 0.0f, dot = 0.0f;
    for (int64_t p = G::lane(); p < D / N; p += G::size()) {
        float v[N], zv[N], g[N], wv[N];
        load_f32<N>(v, xr + p * N);
        load_f32<N>(zv, zr + p * N);
        load_f32<N>(g, gr + p * N);
        load_f32<N>(wv, w + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) {
            ss += v[k] * v[k];
            dot += g[k] * wv[k] * silu_f(zv[k]) * v[k];
        }
    }
    ss = G::sum(ss);
    dot = G::sum(dot);
    if (G::lane() == 0) {
        const float r = 1.0f / sqrtf(ss / float(D) + eps);
        rinv[row] = r;
        coef[row] = dot * r / float(D);
    }
}

// n = x r, dn = dy w silu(z):  d_z = dy w n silu'(z),  d_x = r (dn − n · coef)
template <class T, int N, bool kWarp>
__global__ void rmsnorm_gated_dx_kernel(T* d_x, T* d_z, const T* d_out, const T* x, const T* z,
                                        const T* w, const float* rinv, const float* coef,
                                        int64_t rows, int64_t D) {
    using G = RowGroup<kWarp>;
    const int64_t row = G::row();
    if (row >= rows) return;
    const float r = rinv[row], mean_dot = coef[row];
    const int64_t off = row * D;
    for (int64_t p = G::lane(); p < D / N; p += G::size()) {
        const int64_t i = off + p * N;
        float v[N], zv[N], g[N], wv[N], dx[N], dz[N];
        load_f32<N>(v, x + i);
        load_f32<N>(zv, z + i);
        load_f32<N>(g, d_out + i);
        load_f32<N>(wv, w + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) {
            const float nc = v[k] * r;
            const float dn = g[k] * wv[k] * silu_f(zv[k]);
            dz[k] = g[k] * wv[k] * nc * silu_grad_f(zv[k]);
            dx[k] = r * (dn - nc * mean_dot);
        }
        store_f32<N>(d_z + i, dz);
        store_f32<N>(d_x + i, dx);
    }
}

// ---- weight gradients of the two RMSNorms
// ----------------------------------------------------------

constexpr int kColumnTile = 32;  // blockDim (32, kRowLanes): 32 columns × kRowLanes row lanes
constexpr int kRowLanes = 8;

// partial[s·C + c] = Σ_{rows n of slice s} dy[n, c] x[n, c] rinv[n] (· silu(z[n, c]) if kGated).
// Grid (ceil(C / 32), S); the slice's rows are split over the row lanes, then summed in lane order.
template <class T, bool kGated>
__global__ void norm_dw_partial_kernel(float* partial, const T* d_out, const T* x, const T* z,
                                       const float* rinv, int64_t rows, int64_t C,
                                       int64_t rows_per_slice) {
    __shared__ float lane_sum[kRowLanes][kColumnTile + 1];
    const int64_t c = int64_t(blockIdx.x) * kColumnTile + threadIdx.x;
    const int64_t s = blockIdx.y;
    const int64_t r0 = s * rows_per_slice, r1 = min(rows, r0 + rows_per_slice);
    float acc = 0.0f;
    if (c < C) {
        for (int64_t n = r0 + threadIdx.y; n < r1; n += kRowLanes) {
            const int64_t i = n * C + c;
            float t = to_f32(d_out[i]) * to_f32(x[i]) * rinv[n];
            if constexpr (kGated) t *= silu_f(to_f32(z[i]));
            acc += t;
        }
    }
    lane_sum[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float t = 0.0f;
#pragma unroll
        for (int k = 0; k < kRowLanes; ++k) t += lane_sum[k][threadIdx.x];
        partial[s * C + c] = t;
    }
}

// ---- L2 norm
// -------------------------------------------------------------------------------------

// out = x · scale / sqrt(Σ x² + eps)
template <class T, int N, bool kWarp>
__global__ void l2norm_kernel(T* out, const T* x, int64_t rows, int64_t D, float eps, float scale) {
    using G = RowGroup<kWarp>;
    const int64_t row = G::row();
    if (row >= rows) return;
    const T* xr = x + row * D;
    T* yr = out + row * D;
    float ss = 0.0f;
    for (int64_t p = G::lane(); p < D / N; p += G::size()) {
        float v[N];
        load_f32<N>(v, xr + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) ss += v[k] * v[k];
    }
    ss = G::sum(ss);
    const float r = scale / sqrtf(ss + eps);
    for (int64_t p = G::lane(); p < D / N; p += G::size()) {
        float v[N];
        load_f32<N>(v, xr + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) v[k] *= r;
        store_f32<N>(yr + p * N, v);
    }
}

// r = (Σx² + eps)^-½:  d_x = scale·r·dy − scale·r³·(x·dy)·x
template <class T, int N, bool kWarp>
__global__ void l2norm_backward_kernel(T* d_x, const T* d_out, const T* x, int64_t rows, int64_t D,
                                       float eps, float scale) {
    using G = RowGroup<kWarp>;
    const int64_t row = G::row();
    if (row >= rows) return;
    const T* xr = x + row * D;
    const T* gr = d_out + row * D;
    T* dr = d_x + row * D;
    float ss = 0.0f, s = 0.0f;
    for (int64_t p = G::lane(); p < D / N; p += G::size()) {
        float v[N], g[N];
        load_f32<N>(v, xr + p * N);
        load_f32<N>(g, gr + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) {
            ss += v[k] * v[k];
            s += v[k] * g[k];
        }
    }
    ss = G::sum(ss);
    s = G::sum(s);
    const float r = 1.0f / sqrtf(ss + eps);
    const float a = scale * r, b = scale * r * r * r * s;
    for (int64_t p = G::lane(); p < D / N; p += G::size()) {
        float v[N], g[N];
        load_f32<N>(v, xr + p * N);
        load_f32<N>(g, gr + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) v[k] = a * g[k] - b * v[k];
        store_f32<N>(dr + p * N, v);
    }
}

}  // namespace olmo::kernels
