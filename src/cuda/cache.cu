// kv_append: writes x[B, T, H, D] into cache[B, L, H, D] at rows start[b] .. start[b]+T−1 (start
// i32 on the device; kernels/cache.cuh). One block per token row, 16-byte words when aligned.
#include <algorithm>

#include "cuda/kernels/cache.cuh"
#include "cuda/launch.h"
#include "cuda/ops_cuda.h"

namespace olmo::cuda {

void kv_append(const Tensor& cache, const Tensor& x, const Tensor& start) {
    const int64_t B = x.shape[0], T = x.shape[1], L = cache.shape[1];
    const size_t row_bytes = size_t(x.shape[2] * x.shape[3]) * dtype_size(x.dtype);
    if (B == 0 || T == 0 || row_bytes == 0) return;
    dispatch_word(row_bytes, {cache.data, x.data}, [&](auto word_tag) {
        using W = decltype(word_tag);
        const int64_t words = int64_t(row_bytes / sizeof(W));
        const int threads = int(std::clamp<int64_t>((words + 31) / 32 * 32, 32, 256));
        const unsigned blocks = unsigned(std::min<int64_t>(B * T, int64_t(1) << 20));
        kernels::kv_append_kernel<W><<<blocks, threads, 0, current_stream()>>>(
            static_cast<W*>(cache.data), static_cast<const W*>(x.data),
            static_cast<const int32_t*>(start.data), B, T, L, words);
        CUDA_CHECK_LAUNCH();
    });
}

}  // namespace olmo::cuda
