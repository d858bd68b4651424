// Rotary position embedding on x[N, H, D] at positions[N] (i32 on the device), forward and backward
// (kernels/rope.cuh). inv_freq[D/2] is f32; cos and sin are computed in f32 from the f32 angle.
#include "cuda/dispatch.h"
#include "cuda/kernels/rope.cuh"
#include "cuda/launch.h"
#include "cuda/ops_cuda.h"

namespace olmo::cuda {

namespace {

// out = R(sign · angle) x, both laid out as `layout` [..., H, D].
void rotate(const char* op, const Tensor& out, const Tensor& x, const Tensor& layout,
            const Tensor& positions, const Tensor& inv_freq, float scaling, float sign) {
    const int64_t D = layout.shape[layout.ndim - 1], H = layout.shape[layout.ndim - 2];
    const int64_t N = positions.numel();
    if (N == 0 || H == 0 || D == 0) return;
    dispatch_float(out, op, [&](auto tag) {
        using T = decltype(tag);
        kernels::rope_kernel<T><<<grid_for(N * (D / 2)), kBlockThreads, 0, current_stream()>>>(
            ptr<T>(out), ptr<T>(x), ptr<int32_t>(positions), ptr<float>(inv_freq), N, H, D, scaling,
            sign);
        CUDA_CHECK_LAUNCH();
    });
}

}  // namespace

void rope(const Tensor& out, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
          float attention_scaling) {
    rotate("rope", out, x, x, positions, inv_freq, attention_scaling, 1.0f);
}

void rope_backward(const Tensor& d_x, const Tensor& d_out, const Tensor& positions,
                   const Tensor& inv_freq, float attention_scaling) {
    rotate("rope_backward", d_x, d_out, d_x, positions, inv_freq, attention_scaling, -1.0f);
}

}  // namespace olmo::cuda
