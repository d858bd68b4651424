// Launchers of the GDN gates and their backward (kernels/gdn_gates.cuh). The backward adds the
// per-head gradients d_A_log and d_dt_bias from f32 partial sums over slices of rows, in slice
// order.
#include "cuda/dispatch.h"
#include "cuda/kernels/gdn_gates.cuh"
#include "cuda/launch.h"
#include "cuda/ops_cuda.h"

namespace olmo::cuda {

void gdn_gates(const Tensor& g, const Tensor& beta, const Tensor& a, const Tensor& b,
               const Tensor& A_log, const Tensor& dt_bias, bool allow_neg_eigval) {
    const int64_t H = A_log.shape[0], N = H > 0 ? a.numel() / H : 0;
    if (N == 0 || H == 0) return;
    const float s = allow_neg_eigval ? 2.0f : 1.0f;
    dispatch_float(a, "gdn_gates", [&](auto tag) {
        using T = decltype(tag);
        kernels::gdn_gates_kernel<T><<<grid_for(N * H), kBlockThreads, 0, current_stream()>>>(
            ptr<float>(g), ptr<float>(beta), ptr<T>(a), ptr<T>(b), ptr<T>(A_log), ptr<T>(dt_bias),
            N, H, s);
        CUDA_CHECK_LAUNCH();
    });
}

void gdn_gates_backward(const Tensor& d_a, const Tensor& d_b, const Tensor& d_A_log,
                        const Tensor& d_dt_bias, const Tensor& d_g, const Tensor& d_beta,
                        const Tensor& a, const Tensor& b, const Tensor& A_log,
                        const Tensor& dt_bias, bool allow_neg_eigval) {
    const int64_t H = A_log.shape[0], N = H > 0 ? a.numel() / H : 0;
    if (N == 0 || H == 0) return;
    const float s = allow_neg_eigval ? 2.0f : 1.0f;
    dispatch_float(a, "gdn_gates_backward", [&](auto tag) {
        using T = decltype(tag);
        const int64_t head_blocks = (H + 31) / 32;
        // At least 256 rows per slice, at most 512 slices.
        int64_t slices = std::clamp<int64_t>((N + 255) / 256, 1, 512);
        const int64_t per = (N + slices - 1) / slices;
        slices = (N + per - 1) / per;
        float* partial =
            static_cast<float*>(scratch(kSmallOpsScratch, size_t(slices * 2 * H) * sizeof(float)));
        const dim3 grid{unsigned(head_blocks), unsigned(slices)}, block{32, kernels::kGateRowLanes};
        kernels::gdn_gates_backward_kernel<T><<<grid, block, 0, current_stream()>>>(
            ptr<T>(d_a), ptr<T>(d_b), partial, ptr<float>(d_g), ptr<float>(d_beta), ptr<T>(a),
            ptr<T>(b), ptr<T>(A_log), ptr<T>(dt_bias), N, H, s, per);
        CUDA_CHECK_LAUNCH();
        kernels::add_partials_kernel<T><<<grid_for(H), kBlockThreads, 0, current_stream()>>>(
            ptr<T>(d_A_log), partial, slices, H, 2 * H);
        CUDA_CHECK_LAUNCH();
        kernels::add_partials_kernel<T><<<grid_for(H), kBlockThreads, 0, current_stream()>>>(
            ptr<T>(d_dt_bias), partial + H, slices, H, 2 * H);
        CUDA_CHECK_LAUNCH();
    });
}

}  // namespace olmo::cuda
