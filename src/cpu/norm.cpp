// Row normalisations: RMSNorm (block, QK and final norms), the gated RMSNorm of the GDN output and
// the L2 norm of GDN queries and keys, forward and backward.
//
// Statistics are summed in double; the normalised value is formed in the tensor's precision and
// then multiplied by the weight, which is HF's order for f32 (weight multiply before any cast).
// Backward passes that also produce a weight gradient compute per-row statistics first, then the
// weight gradient, then d_x, so that d_x may overwrite d_out.
#include <cmath>

#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

namespace {

// 1 / sqrt(mean(x²) + eps) of one row.
template <class T>
Acc rms_inverse(const T* x, int64_t C, float eps) {
    Acc ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; ++c) ss += Acc(x[c]) * Acc(x[c]);
    return 1.0 / std::sqrt(ss / Acc(C) + Acc(eps));
}

// d_w[c] += Σ_n term(n, c) over all rows, threads splitting the columns.
template <class T, class F>
void reduce_rows_into(T* d_w, int64_t N, int64_t C, F&& term) {
    parallel_columns(C, N, [&](int64_t c0, int64_t c1) {
        Acc* acc = scratch<Acc>(2, size_t(c1 - c0));
        for (int64_t c = c0; c < c1; ++c) acc[c - c0] = 0;
        for (int64_t n = 0; n < N; ++n)
            for (int64_t c = c0; c < c1; ++c) acc[c - c0] += term(n, c);
        for (int64_t c = c0; c < c1; ++c) d_w[c] += T(acc[c - c0]);
    });
}

}  // namespace

void rmsnorm(const Tensor& out, const Tensor& x, const Tensor& w, float eps) {
    dispatch_float("rmsnorm", out.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t N = rows_of(x), C = w.shape[0];
        const T* px = x.as<T>();
        const T* pw = w.as<T>();
        T* po = out.as<T>();
        parallel_for(N, 3 * C, [&](int64_t n) {
            const T* xr = px + n * C;
            T* yr = po + n * C;
            const T r = T(rms_inverse(xr, C, eps));
            for (int64_t c = 0; c < C; ++c) yr[c] = pw[c] * (xr[c] * r);
        });
    });
}

void rmsnorm_backward(const Tensor& d_x, const Tensor& d_w, const Tensor& d_out, const Tensor& x,
                      const Tensor& w, float eps) {
    dispatch_float("rmsnorm_backward", d_x.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t N = rows_of(x), C = w.shape[0];
        const T* px = x.as<T>();
        const T* pw = w.as<T>();
        const T* dy = d_out.as<T>();
        T* dx = d_x.as<T>();
        Acc* rinv = scratch<Acc>(0, size_t(N));  // [N] 1/rms
        Acc* dot = scratch<Acc>(1, size_t(N));   // [N] Σ_c w dy x
        parallel_for(N, 4 * C, [&](int64_t n) {
            const T* xr = px + n * C;
            const T* gr = dy + n * C;
            rinv[n] = rms_inverse(xr, C, eps);
            Acc s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t c = 0; c < C; ++c) s += Acc(pw[c]) * Acc(gr[c]) * Acc(xr[c]);
            dot[n] = s;
        });
        // y = w ⊙ x r  →  d_w = Σ_n dy ⊙ x r
        reduce_rows_into(d_w.as<T>(), N, C, [&](int64_t n, int64_t c) {
            return Acc(dy[n * C + c]) * Acc(px[n * C + c]) * rinv[n];
        });
        // d_x = r (w ⊙ dy) − r³ x (Σ w dy x) / C
        parallel_for(N, 3 * C, [&](int64_t n) {
            const T* xr = px + n * C;
            const T* gr = dy + n * C;
            T* out = dx + n * C;
            const Acc r = rinv[n];
            const T a = T(r), b = T(r * r * r * dot[n] / Acc(C));
            for (int64_t c = 0; c < C; ++c) out[c] = a * (pw[c] * gr[c]) - b * xr[c];
        });
    });
}

void rmsnorm_gated(const Tensor& out, const Tensor& x, const Tensor& z, const Tensor& w,
                   float eps) {
    dispatch_float("rmsnorm_gated", out.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t N = rows_of(x), D = w.shape[0];
        const T* px = x.as<T>();
        const T* pz = z.as<T>();
        const T* pw = w.as<T>();
        T* po = out.as<T>();
        parallel_for(N, 8 * D, [&](int64_t n) {
            const T* xr = px + n * D;
            const T* zr = pz + n * D;
            T* yr = po + n * D;
            const T r = T(rms_inverse(xr, D, eps));
            for (int64_t c = 0; c < D; ++c) yr[c] = pw[c] * (xr[c] * r) * silu(zr[c]);
        });
    });
}

void rmsnorm_gated_backward(const Tensor& d_x, const Tensor& d_z, const Tensor& d_w,
                            const Tensor& d_out, const Tensor& x, const Tensor& z, const Tensor& w,
                            float eps) {
    dispatch_float("rmsnorm_gated_backward", d_x.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t N = rows_of(x), D = w.shape[0];
        const T* px = x.as<T>();
        const T* pz = z.as<T>();
        const T* pw = w.as<T>();
        const T* dy = d_out.as<T>();
        T* dx = d_x.as<T>();
        T* dz = d_z.as<T>();
        Acc* rinv = scratch<Acc>(0, size_t(N));  // [N]
        Acc* dot = scratch<Acc>(1, size_t(N));   // [N] Σ_c dn·n with dn = dy w silu(z), n = x r
        parallel_for(N, 10 * D, [&](int64_t n) {
            const T* xr = px + n * D;
            const T* zr = pz + n * D;
            const T* gr = dy + n * D;
            const Acc r = rms_inverse(xr, D, eps);
            Acc s = 0;
            for (int64_t c = 0; c < D; ++c)
                s += Acc(gr[c]) * Acc(pw[c]) * Acc(silu(zr[c])) * Acc(xr[c]) * r;
            rinv[n] = r;
            dot[n] = s;
        });
        reduce_rows_into(d_w.as<T>(), N, D, [&](int64_t n, int64_t c) {
            const int64_t i = n * D + c;
            return Acc(dy[i]) * Acc(px[i]) * rinv[n] * Acc(silu(pz[i]));
        });
        parallel_for(N, 10 * D, [&](int64_t n) {
            const T* xr = px + n * D;
            const T* zr = pz + n * D;
            const T* gr = dy + n * D;
            T* dxr = dx + n * D;
            T* dzr = dz + n * D;
            const T r = T(rinv[n]), mean_dot = T(dot[n] / Acc(D));
            for (int64_t c = 0; c < D; ++c) {
                const T nc = xr[c] * r, zc = zr[c], g = gr[c];
                const T dn = g * pw[c] * silu(zc);
                dzr[c] = g * pw[c] * nc * silu_grad(zc);
                dxr[c] = r * (dn - nc * mean_dot);
            }
        });
    });
}

void l2norm(const Tensor& out, const Tensor& x, float eps, float scale) {
    dispatch_float("l2norm", out.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t N = rows_of(x), D = x.shape[x.ndim - 1];
        const T* px = x.as<T>();
        T* po = out.as<T>();
        parallel_for(N, 3 * D, [&](int64_t n) {
            const T* xr = px + n * D;
            T* yr = po + n * D;
            Acc ss = 0;
#pragma omp simd reduction(+ : ss)
            for (int64_t c = 0; c < D; ++c) ss += Acc(xr[c]) * Acc(xr[c]);
            // eps inside the square root, on the sum of squares (fla / HF l2norm)
            const T r = T(Acc(scale) / std::sqrt(ss + Acc(eps)));
            for (int64_t c = 0; c < D; ++c) yr[c] = xr[c] * r;
        });
    });
}

void l2norm_backward(const Tensor& d_x, const Tensor& d_out, const Tensor& x, float eps,
                     float scale) {
    dispatch_float("l2norm_backward", d_x.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t N = rows_of(x), D = x.shape[x.ndim - 1];
        const T* px = x.as<T>();
        const T* dy = d_out.as<T>();
        T* dx = d_x.as<T>();
        parallel_for(N, 6 * D, [&](int64_t n) {
            const T* xr = px + n * D;
            const T* gr = dy + n * D;
            T* out = dx + n * D;
            Acc ss = 0, s = 0;
#pragma omp simd reduction(+ : ss, s)
            for (int64_t c = 0; c < D; ++c) {
                ss += Acc(xr[c]) * Acc(xr[c]);
                s += Acc(xr[c]) * Acc(gr[c]);
            }
            // y = s·x·r with r = (Σx² + eps)^-½:  d_x = s·r·(dy − x r² (x·dy))
            const Acc r = 1.0 / std::sqrt(ss + Acc(eps));
            const T a = T(Acc(scale) * r), b = T(Acc(scale) * r * r * r * s);
            for (int64_t c = 0; c < D; ++c) out[c] = a * gr[c] - b * xr[c];
        });
    });
}

}  // namespace olmo::cpu
