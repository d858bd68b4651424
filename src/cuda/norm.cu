// Launchers of the row normalisations (kernels/norm.cuh): RMSNorm (also fused with the residual
// add), gated RMSNorm and the L2 norm, forward and backward. Rows of at most kWarpPacks packs go
// one per warp (eight per block: the GDN heads of 96 or 192), longer rows one per block (the
// 3840-wide block and QK norms).
#include <type_traits>

#include "cuda/dispatch.h"
#include "cuda/kernels/norm.cuh"
#include "cuda/launch.h"
#include "cuda/ops_cuda.h"

namespace olmo::cuda {

namespace {

constexpr int64_t kWarpPacks = 128;

int64_t rows_of(const Tensor& t) {
    int64_t n = 1;
    for (int i = 0; i + 1 < t.ndim; ++i) n *= t.shape[i];
    return n;
}

// Chooses the pack width N and the row grouping for rows of C elements of T at the given pointers,
// and calls launch(std::integral_constant<int, N>, std::bool_constant<kWarp>, grid, threads).
template <class T, class Fn>
void for_rows(int64_t rows, int64_t C, std::initializer_list<const void*> ptrs, Fn&& launch) {
    constexpr int V = kernels::kVec16<T>;
    const bool vec = packable<T>(C, ptrs);
    const int64_t packs = vec ? C / V : C;
    auto go = [&](auto n_tag) {
        if (packs <= kWarpPacks) {
            const int64_t rows_per_block = kBlockThreads / 32;
            launch(n_tag, std::true_type{}, unsigned((rows + rows_per_block - 1) / rows_per_block),
                   kBlockThreads);
        } else {
            const int threads = int(std::clamp<int64_t>((packs + 31) / 32 * 32, 128, 1024));
            launch(n_tag, std::false_type{}, unsigned(rows), threads);
        }
    };
    if (vec) {
        go(std::integral_constant<int, V>{});
    } else {
        go(std::integral_constant<int, 1>{});
    }
}

// Scratch for a backward with a weight gradient: rinv[rows], coef[rows] and partial[S, C].
struct NormScratch {
    float* rinv;
    float* coef;
    float* partial;
    int64_t slices, rows_per_slice;
};

NormScratch norm_scratch(int64_t rows, int64_t C) {
    const int64_t column_blocks = (C + kernels::kColumnTile - 1) / kernels::kColumnTile;
    // Enough blocks to fill the GPU (about 2048), at least 64 rows per slice, at most 256 slices.
    int64_t slices =
        std::clamp<int64_t>((rows + 63) / 64, 1, std::clamp<int64_t>(2048 / column_blocks, 1, 256));
    const int64_t per = (rows + slices - 1) / slices;
    slices = (rows + per - 1) / per;
    const int64_t rows_padded = (rows + 63) / 64 * 64;
    float* base = static_cast<float*>(
        scratch(kSmallOpsScratch, size_t(2 * rows_padded + slices * C) * sizeof(float)));
    return {base, base + rows_padded, base + 2 * rows_padded, slices, per};
}

// d_w[C] += the partial sums of the slices, after norm_dw_partial_kernel.
template <class T, bool kGated>
void weight_grad(const Tensor& d_w, const Tensor& d_out, const Tensor& x, const T* z,
                 const NormScratch& s, int64_t rows, int64_t C) {
    const dim3 grid(unsigned((C + kernels::kColumnTile - 1) / kernels::kColumnTile),
                    unsigned(s.slices));
    const dim3 block(kernels::kColumnTile, kernels::kRowLanes);
    kernels::norm_dw_partial_kernel<T, kGated><<<grid, block, 0, current_stream()>>>(
        s.partial, ptr<T>(d_out), ptr<T>(x), z, s.rinv, rows, C, s.rows_per_slice);
    CUDA_CHECK_LAUNCH();
    kernels::add_partials_kernel<T><<<grid_for(C), kBlockThreads, 0, current_stream()>>>(
        ptr<T>(d_w), s.partial, s.slices, C, C);
    CUDA_CHECK_LAUNCH();
}

// RMSNorm, plus the residual when there is one (rmsnorm_add).
void launch_rmsnorm(const char* op, const Tensor& out, const Tensor* residual, const Tensor& x,
                    const Tensor& w, float eps) {
    const int64_t rows = rows_of(x), C = w.shape[0];
    if (rows == 0 || C == 0) return;
    dispatch_float(out, op, [&](auto tag) {
        using T = decltype(tag);
        const T* res = residual ? ptr<T>(*residual) : nullptr;
        for_rows<T>(rows, C, {out.data, residual ? residual->data : x.data, x.data, w.data},
                    [&](auto n, auto warp, unsigned grid, int threads) {
                        kernels::rmsnorm_kernel<T, decltype(n)::value, decltype(warp)::value>
                            <<<grid, threads, 0, current_stream()>>>(ptr<T>(out), res, ptr<T>(x),
                                                                     ptr<T>(w), rows, C, eps);
                        CUDA_CHECK_LAUNCH();
                    });
    });
}

}  // namespace

void rmsnorm(const Tensor& out, const Tensor& x, const Tensor& w, float eps) {
    launch_rmsnorm("rmsnorm", out, nullptr, x, w, eps);
}

void rmsnorm_add(const Tensor& out, const Tensor& residual, const Tensor& x, const Tensor& w,
                 float eps) {
    launch_rmsnorm("rmsnorm_add", out, &residual, x, w, eps);
}

void rmsnorm_backward(const Tensor& d_x, const Tensor& d_w, const Tensor& d_out, const Tensor& x,
                      const Tensor& w, float eps) {
    const int64_t rows = rows_of(x), C = w.shape[0];
    if (rows == 0 || C == 0) return;
    dispatch_float(d_x, "rmsnorm_backward", [&](auto tag) {
        using T = decltype(tag);
        const NormScratch s = norm_scratch(rows, C);
        const std::initializer_list<const void*> ptrs = {d_x.data, d_out.data, x.data, w.data};
        for_rows<T>(rows, C, ptrs, [&](auto n, auto warp, unsigned grid, int threads) {
            kernels::rmsnorm_stats_kernel<T, decltype(n)::value, decltype(warp)::value>
                <<<grid, threads, 0, current_stream()>>>(s.rinv, s.coef, ptr<T>(d_out), ptr<T>(x),
                                                         ptr<T>(w), rows, C, eps);
            CUDA_CHECK_LAUNCH();
        });
        weight_grad<T, false>(d_w, d_out, x, nullptr, s, rows, C);
        for_rows<T>(rows, C, ptrs, [&](auto n, auto warp, unsigned grid, int threads) {
            kernels::rmsnorm_dx_kernel<T, decltype(n)::value, decltype(warp)::value>
                <<<grid, threads, 0, current_stream()>>>(ptr<T>(d_x), ptr<T>(d_out), ptr<T>(x),
                                                         ptr<T>(w), s.rinv, s.coef, rows, C);
            CUDA_CHECK_LAUNCH();
        });
    });
}

void rmsnorm_gated(const Tensor& out, const Tensor& x, const Tensor& z, const Tensor& w,
                   float eps) {
    const int64_t rows = rows_of(x), D = w.shape[0];
    if (rows == 0 || D == 0) return;
    dispatch_float(out, "rmsnorm_gated", [&](auto tag) {
        using T = decltype(tag);
        for_rows<T>(rows, D, {out.data, x.data, z.data, w.data},
                    [&](auto n, auto warp, unsigned grid, int threads) {
                        kernels::rmsnorm_gated_kernel<T, decltype(n)::value, decltype(warp)::value>
                            <<<grid, threads, 0, current_stream()>>>(
                                ptr<T>(out), ptr<T>(x), ptr<T>(z), ptr<T>(w), rows, D, eps);
                        CUDA_CHECK_LAUNCH();
                    });
    });
}

void rmsnorm_gated_backward(const Tensor& d_x, const Tensor& d_z, const Tensor& d_w,
                            const Tensor& d_out, const Tensor& x, const Tensor& z, const Tensor& w,
                            float eps) {
    const int64_t rows = rows_of(x), D = w.shape[0];
    if (rows == 0 || D == 0) return;
    dispatch_float(d_x, "rmsnorm_gated_backward", [&](auto tag) {
        using T = decltype(tag);
        const NormScratch s = norm_scratch(rows, D);
        const std::initializer_list<const void*> ptrs = {d_x.data, d_z.data, d_out.data,
                                                         x.data,   z.data,   w.data};
        for_rows<T>(rows, D, ptrs, [&](auto n, auto warp, unsigned grid, int threads) {
            kernels::rmsnorm_gated_stats_kernel<T, decltype(n)::value, decltype(warp)::value>
                <<<grid, threads, 0, current_stream()>>>(s.rinv, s.coef, ptr<T>(d_out), ptr<T>(x),
                                                         ptr<T>(z), ptr<T>(w), rows, D, eps);
            CUDA_CHECK_LAUNCH();
        });
        weight_grad<T, true>(d_w, d_out, x, ptr<T>(z), s, rows, D);
        for_rows<T>(rows, D, ptrs, [&](auto n, auto warp, unsigned grid, int threads) {
            kernels::rmsnorm_gated_dx_kernel<T, decltype(n)::value, decltype(warp)::value>
                <<<grid, threads, 0, current_stream()>>>(ptr<T>(d_x), ptr<T>(d_z), ptr<T>(d_out),
                                                         ptr<T>(x), ptr<T>(z), ptr<T>(w), s.rinv,
                                                         s.coef, rows, D);
            CUDA_CHECK_LAUNCH();
        });
    });
}

void l2norm(const Tensor& out, const Tensor& x, float eps, float scale) {
    const int64_t rows = rows_of(x), D = x.shape[x.ndim - 1];
    if (rows == 0 || D == 0) return;
    dispatch_float(out, "l2norm", [&](auto tag) {
        using T = decltype(tag);
        for_rows<T>(rows, D, {out.data, x.data},
                    [&](auto n, auto warp, unsigned grid, int threads) {
                        kernels::l2norm_kernel<T, decltype(n)::value, decltype(warp)::value>
                            <<<grid, threads, 0, current_stream()>>>(ptr<T>(out), ptr<T>(x), rows,
                                                                     D, eps, scale);
                        CUDA_CHECK_LAUNCH();
                    });
    });
}

void l2norm_backward(const Tensor& d_x, const Tensor& d_out, const Tensor& x, float eps,
                     float scale) {
    const int64_t rows = rows_of(x), D = x.shape[x.ndim - 1];
    if (rows == 0 || D == 0) return;
    dispatch_float(d_x, "l2norm_backward", [&](auto tag) {
        using T = decltype(tag);
        for_rows<T>(
            rows, D, {d_x.data, d_out.data, x.data},
            [&](auto n, auto warp, unsigned grid, int threads) {
                kernels::l2norm_backward_kernel<T, decltype(n)::value, decltype(warp)::value>
                    <<<grid, threads, 0, current_stream()>>>(ptr<T>(d_x), ptr<T>(d_out), ptr<T>(x),
                                                             rows, D, eps, scale);
                CUDA_CHECK_LAUNCH();
            });
    });
}

}  // namespace olmo::cuda
