// Dense ops on the CPU: the three matrix products of a linear layer through OpenBLAS (sgemm/dgemm),
// and the elementwise add, scale and fill. BLAS runs its own threads, so these are called outside
// any OpenMP region.
#include <cblas.h>

#include <cstdint>
#include <cstring>

#include "core/rng.h"
#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

namespace {

// C[m, n] = alpha · op(A) · op(B) + beta · C, row-major, in the precision of T.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
    const auto ta = trans_a ? CblasTrans : CblasNoTrans;
    const auto tb = trans_b ? CblasTrans : CblasNoTrans;
    if constexpr (sizeof(T) == 4) {
        cblas_sgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), 1.0f, a, int(lda), b, int(ldb),
                    beta, c, int(ldc));
    } else {
        cblas_dgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), 1.0, a, int(lda), b, int(ldb),
                    beta, c, int(ldc));
    }
}

// C[m, n] (+)= op(A) · op(B); a product over an empty k only clears C (BLAS would reject ld = 0).
template <class T>
void product(bool accumulate, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
             const T* a, int64_t lda, const T* b, int64_t ldb, T* c) {
    OLMO_CHECK(m < (int64_t(1) << 31) && n < (int64_t(1) << 31) && k < (int64_t(1) << 31),
               "matrix dimension beyond the BLAS int range: ", m, " x ", n, " x ", k);
    if (m == 0 || n == 0) return;
    if (k == 0) {
        if (!accumulate) std::memset(c, 0, size_t(m * n) * sizeof(T));
        return;
    }
    gemm<T>(trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate ? T(1) : T(0), c, n);
}

}  // namespace

void matmul(const Tensor& out, const Tensor& x, const Tensor& w, bool accumulate) {
    dispatch_float("matmul", out.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t N = rows_of(x), I = w.shape[1], O = w.shape[0];
        // out[N, O] = x[N, I] · w[O, I]ᵀ
        product<T>(accumulate, false, true, N, O, I, x.as<T>(), I, w.as<T>(), I, out.as<T>());
    });
}

void matmul_backward_input(const Tensor& d_x, const Tensor& d_out, const Tensor& w,
                           bool accumulate) {
    dispatch_float("matmul_backward_input", d_x.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t N = rows_of(d_x), I = w.shape[1], O = w.shape[0];
        // d_x[N, I] = d_out[N, O] · w[O, I]
        product<T>(accumulate, false, false, N, I, O, d_out.as<T>(), O, w.as<T>(), I, d_x.as<T>());
    });
}

void matmul_backward_weight(const Tensor& d_w, const Tensor& d_out, const Tensor& x) {
    dispatch_float("matmul_backward_weight", d_w.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t N = rows_of(x), I = d_w.shape[1], O = d_w.shape[0];
        // d_w[O, I] += d_out[N, O]ᵀ · x[N, I]
        product<T>(true, true, false, O, I, N, d_out.as<T>(), O, x.as<T>(), I, d_w.as<T>());
    });
}

void add(const Tensor& out, const Tensor& a, const Tensor& b) {
    dispatch_float("add", out.dtype, [&](auto tag) {
        using T = decltype(tag);
        const T* pa = a.as<T>();
        const T* pb = b.as<T>();
        T* po = out.as<T>();
        const int64_t n = out.numel();
        constexpr int64_t kBlock = 4096;
        parallel_for((n + kBlock - 1) / kBlock, kBlock, [&](int64_t blk) {
            const int64_t end = std::min(n, (blk + 1) * kBlock);
            for (int64_t i = blk * kBlock; i < end; ++i) po[i] = pa[i] + pb[i];
        });
    });
}

void matmul_segments(std::span<const Tensor> outs, const Tensor& x, const Tensor& w) {
    int64_t row = 0;
    for (const Tensor& o : outs) {
        const int64_t n = o.shape[o.ndim - 1];
        matmul(o, x, w.narrow0(row, n), false);
        row += n;
    }
}

void scale(const Tensor& out, const Tensor& x, float s) {
    dispatch_float("scale", out.dtype, [&](auto tag) {
        using T = decltype(tag);
        const T* px = x.as<T>();
        T* po = out.as<T>();
        const T f = T(s);
        const int64_t n = out.numel();
        constexpr int64_t kBlock = 4096;
        parallel_for((n + kBlock - 1) / kBlock, kBlock, [&](int64_t blk) {
            const int64_t end = std::min(n, (blk + 1) * kBlock);
            for (int64_t i = blk * kBlock; i < end; ++i) po[i] = f * px[i];
        });
    });
}

void argmax(const Tensor& out, const Tensor& x) {
    dispatch_float("argmax", x.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t V = x.shape[x.ndim - 1], N = x.numel() / V;
        const T* px = x.as<T>();
        int32_t* po = out.as<int32_t>();
        for (int64_t n = 0; n < N; ++n) {
            const T* row = px + n * V;
            int64_t best = 0;
            for (int64_t i = 1; i < V; ++i)
                if (row[i] > row[best]) best = i;
            po[n] = int32_t(best);
        }
    });
}

void fill(const Tensor& out, float value) {
    const int64_t n = out.numel();
    switch (out.dtype) {
        case DType::f32: {
            float* p = out.as<float>();
            for (int64_t i = 0; i < n; ++i) p[i] = value;
            break;
        }
        case DType::f64: {
            double* p = out.as<double>();
            for (int64_t i = 0; i < n; ++i) p[i] = value;
            break;
        }
        case DType::bf16:
        case DType::f16: {
            const uint16_t h = out.dtype == DType::bf16 ? f32_to_bf16(value) : f32_to_f16(value);
            uint16_t* p = out.as<uint16_t>();
            for (int64_t i = 0; i < n; ++i) p[i] = h;
            break;
        }
        default:
            fail("[fill] unsupported dtype ", dtype_name(out.dtype));
    }
}

// The value is drawn in f64, rounded to f32 (as the weights' reference initialisation), then to
// out's dtype.
void fill_trunc_normal(const Tensor& out, uint64_t seed, uint64_t stream, double std) {
    const Rng rng(seed, stream);
    const int64_t n = out.numel();
    auto fill_as = [&](auto* p, auto convert) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) p[i] = convert(float(rng.trunc_normal(uint64_t(i), std)));
    };
    switch (out.dtype) {
        case DType::f32:
            fill_as(out.as<float>(), [](float v) { return v; });
            break;
        case DType::f64:
            fill_as(out.as<double>(), [](float v) { return double(v); });
            break;
        case DType::bf16:
            fill_as(out.as<uint16_t>(), [](float v) { return f32_to_bf16(v); });
            break;
        case DType::f16:
            fill_as(out.as<uint16_t>(), [](float v) { return f32_to_f16(v); });
            break;
        default:
            fail("[fill_trunc_normal] unsupported dtype ", dtype_name(out.dtype));
    }
}

}  // namespace olmo::cpu
