// repeat_heads and its backward (kernels/heads.cuh): out[N, Hv, D] from x[N, Hk, D].
#include "cuda/dispatch.h"
#include "cuda/kernels/heads.cuh"
#include "cuda/launch.h"
#include "cuda/ops_cuda.h"

namespace olmo::cuda {

void repeat_heads(const Tensor& out, const Tensor& x) {
    const int64_t D = x.shape[x.ndim - 1], Hk = x.shape[x.ndim - 2], Hv = out.shape[out.ndim - 2];
    const int64_t N = Hk * D > 0 ? x.numel() / (Hk * D) : 0;
    if (N == 0 || Hv == 0 || D == 0) return;
    const size_t row_bytes = size_t(D) * dtype_size(x.dtype);
    dispatch_word(row_bytes, {out.data, x.data}, [&](auto word_tag) {
        using W = decltype(word_tag);
        const int64_t words = int64_t(row_bytes / sizeof(W)), rows = N * Hv;
        kernels::repeat_heads_kernel<W>
            <<<grid_for(rows * words), kBlockThreads, 0, current_stream()>>>(
                static_cast<W*>(out.data), static_cast<const W*>(x.data), rows, Hv, Hv / Hk, words);
        CUDA_CHECK_LAUNCH();
    });
}

void repeat_heads_backward(const Tensor& d_x, const Tensor& d_out) {
    const int64_t D = d_x.shape[d_x.ndim - 1], Hk = d_x.shape[d_x.ndim - 2];
    const int64_t Hv = d_out.shape[d_out.ndim - 2];
    const int64_t N = Hk * D > 0 ? d_x.numel() / (Hk * D) : 0;
    if (N == 0 || D == 0) return;
    dispatch_float(d_x, "repeat_heads_backward", [&](auto tag) {
        using T = decltype(tag);
        constexpr int V = kernels::kVec16<T>;
        const int64_t rows = N * Hk, rep = Hv / Hk;
        if (packable<T>(D, {d_x.data, d_out.data})) {
            kernels::repeat_heads_backward_kernel<T, V>
                <<<grid_for(rows * (D / V)), kBlockThreads, 0, current_stream()>>>(
                    ptr<T>(d_x), ptr<T>(d_out), rows, rep, D);
        } else {
            kernels::repeat_heads_backward_kernel<T, 1>
                <<<grid_for(rows * D), kBlockThreads, 0, current_stream()>>>(
                    ptr<T>(d_x), ptr<T>(d_out), rows, rep, D);
        }
        CUDA_CHECK_LAUNCH();
    });
}

}  // namespace olmo::cuda
