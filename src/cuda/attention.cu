// Launchers of softmax attention: the tensor-core kernel for bf16 prefill with head dim 64/128, the
// row-wise kernel otherwise (decode, f32, other head dims). Backward runs on the CPU backend only
// for now.
#include "cuda/dispatch.h"
#include "cuda/kernels/attention.cuh"
#include "cuda/ops_cuda.h"
#include "cuda/runtime_internal.h"

namespace olmo::cuda {

namespace {

template <class T, int DPL>
void launch_rowwise(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& kv_lens, int64_t window, float scale) {
    const int B = int(q.size(0)), Tq = int(q.size(1)), Hq = int(q.size(2)), D = int(q.size(3));
    const int L = int(k.size(1)), Hkv = int(k.size(2)), Dv = int(v.size(3));
    const dim3 grid{unsigned(Tq), unsigned(Hq), unsigned(B)};
    // Few (query, head) pairs (decode): many warps per pair to split the keys; else four.
    if (int64_t(B) * Hq * Tq < 2 * multiprocessor_count()) {
        kernels::attention_rowwise_kernel<T, DPL, 16><<<grid, 32 * 16, 0, current_stream()>>>(
            ptr<T>(out), ptr<T>(q), ptr<T>(k), ptr<T>(v), ptr<int>(kv_lens), Tq, L, Hq, Hkv, D, Dv,
            int(window), scale);
    } else {
        kernels::attention_rowwise_kernel<T, DPL, 4><<<grid, 32 * 4, 0, current_stream()>>>(
            ptr<T>(out), ptr<T>(q), ptr<T>(k), ptr<T>(v), ptr<int>(kv_lens), Tq, L, Hq, Hkv, D, Dv,
            int(window), scale);
    }
    CUDA_CHECK_LAUNCH();
}

template <class T>
void rowwise(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
             const Tensor& kv_lens, int64_t window, float scale) {
    const int64_t dims = std::max(q.size(3), v.size(3));
    if (dims <= 32)
        launch_rowwise<T, 1>(out, q, k, v, kv_lens, window, scale);
    else if (dims <= 64)
        launch_rowwise<T, 2>(out, q, k, v, kv_lens, window, scale);
    else if (dims <= 128)
        launch_rowwise<T, 4>(out, q, k, v, kv_lens, window, scale);
    else if (dims <= 256)
        launch_rowwise<T, 8>(out, q, k, v, kv_lens, window, scale);
    else
        fail("[attention] CUDA supports head dims up to 256, got ", dims);
}

template <int HD>
void launch_flash(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
                  const Tensor& kv_lens, int64_t window, float scale) {
    const int B = int(q.size(0)), Tq = int(q.size(1)), Hq = int(q.size(2));
    const int L = int(k.size(1)), Hkv = int(k.size(2));
    const dim3 grid(unsigned((Tq + kernels::kFlashQ - 1) / kernels::kFlashQ), unsigned(Hq),
                    unsigned(B));
    kernels::flash_attention_kernel<HD><<<grid, kernels::kFlashThreads, 0, current_stream()>>>(
        ptr<__nv_bfloat16>(out), ptr<__nv_bfloat16>(q), ptr<__nv_bfloat16>(k),
        ptr<__nv_bfloat16>(v), ptr<int>(kv_lens), Tq, L, Hq, Hkv, int(window), scale);
    CUDA_CHECK_LAUNCH();
}

}  // namespace

void attention(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
               const Tensor& kv_lens, int64_t window, float scale) {
    const int64_t D = q.size(3), Dv = v.size(3), Tq = q.size(1);
    if (q.dtype == DType::bf16 && D == Dv && (D == 64 || D == 128) && Tq >= 16) {
        if (D == 64)
            launch_flash<64>(out, q, k, v, kv_lens, window, scale);
        else
            launch_flash<128>(out, q, k, v, kv_lens, window, scale);
        return;
    }
    dispatch_float(q, "attention",
                   [&](auto t) { rowwise<decltype(t)>(out, q, k, v, kv_lens, window, scale); });
}

void attention_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                        const Tensor&, const Tensor&, int64_t, float) {
    fail("[attention_backward] not available on CUDA yet: train on the CPU backend");
}

}  // namespace olmo::cuda
