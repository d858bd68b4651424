// Optimiser ops on the device: sum_squares (returns to the host, so it synchronises) and the AdamW
// step (kernels/optim.cuh).
#include <cmath>

#include "cuda/dispatch.h"
#include "cuda/kernels/optim.cuh"
#include "cuda/launch.h"
#include "cuda/ops_cuda.h"
#include "cuda/runtime.h"

namespace olmo::cuda {

double sum_squares(const Tensor& x) {
    const int64_t n = x.numel();
    if (n == 0) return 0.0;
    // Scratch: the result, then the partial sums of the blocks.
    double* base = static_cast<double*>(
        scratch(kSmallOpsScratch, size_t(1 + kernels::kSumSquaresBlocks) * sizeof(double)));
    dispatch_float(x, "sum_squares", [&](auto tag) {
        using T = decltype(tag);
        if (aligned_to(16, {x.data})) {
            kernels::sum_squares_kernel<T, kernels::kVec16<T>>
                <<<kernels::kSumSquaresBlocks, kernels::kSumSquaresThreads, 0, current_stream()>>>(
                    base + 1, ptr<T>(x), n);
        } else {
            kernels::sum_squares_kernel<T, 1>
                <<<kernels::kSumSquaresBlocks, kernels::kSumSquaresThreads, 0, current_stream()>>>(
                    base + 1, ptr<T>(x), n);
        }
        CUDA_CHECK_LAUNCH();
    });
    kernels::sum_partials_f64_kernel<<<1, 1024, 0, current_stream()>>>(base, base + 1,
                                                                       kernels::kSumSquaresBlocks);
    CUDA_CHECK_LAUNCH();
    double result = 0.0;
    copy_bytes(&result, false, base, true, sizeof(double));
    return result;
}

void adamw(const Tensor& param, const Tensor& m, const Tensor& v, const Tensor& grad, float lr,
           float beta1, float beta2, float eps, float weight_decay, int64_t step,
           float grad_scale) {
    const int64_t n = param.numel();
    if (n == 0) return;
    // Bias corrections in double, as PyTorch forms them from Python floats.
    const double bc1 = 1.0 - std::pow(double(beta1), double(step));
    const double bc2 = 1.0 - std::pow(double(beta2), double(step));
    kernels::AdamwArgs a{};
    a.decay = float(1.0 - double(lr) * double(weight_decay));
    a.beta1 = beta1;
    a.beta2 = beta2;
    a.eps = eps;
    a.step_size = float(double(lr) / bc1);
    a.bc2_sqrt = float(std::sqrt(bc2));
    a.grad_scale = grad_scale;
    dispatch_float(param, "adamw", [&](auto tag) {
        using T = decltype(tag);
        constexpr int V = kernels::kVec16<T>;
        if (aligned_to(16, {param.data, m.data, v.data, grad.data})) {
            kernels::adamw_kernel<T, V>
                <<<grid_for(n / V + 1), kBlockThreads, 0, current_stream()>>>(
                    ptr<T>(param), ptr<T>(m), ptr<T>(v), ptr<T>(grad), n, a);
        } else {
            kernels::adamw_kernel<T, 1><<<grid_for(n), kBlockThreads, 0, current_stream()>>>(
                ptr<T>(param), ptr<T>(m), ptr<T>(v), ptr<T>(grad), n, a);
        }
        CUDA_CHECK_LAUNCH();
    });
}

}  // namespace olmo::cuda
