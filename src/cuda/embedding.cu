// Token embedding lookup and its backward (see kernels/embedding.cuh). Ids are i32 or i64 on the
// device and are not validated there: callers check user input first (ops.h).
#include "cuda/dispatch.h"
#include "cuda/kernels/embedding.cuh"
#include "cuda/launch.h"
#include "cuda/ops_cuda.h"

namespace olmo::cuda {

namespace {

// Calls fn(Id{}) with Id = int32_t or int64_t for an index tensor.
template <class Fn>
void dispatch_index(const Tensor& ids, const char* op, Fn&& fn) {
    if (ids.dtype == DType::i32) {
        fn(int32_t{});
    } else if (ids.dtype == DType::i64) {
        fn(int64_t{});
    } else {
        fail("[", op, "] ids must be i32 or i64, got ", dtype_name(ids.dtype));
    }
}

}  // namespace

void embedding(const Tensor& out, const Tensor& ids, const Tensor& table) {
    const int64_t N = ids.numel(), V = table.shape[0], C = table.shape[1];
    if (N == 0 || C == 0) return;
    const size_t row_bytes = size_t(C) * dtype_size(table.dtype);
    dispatch_index(ids, "embedding", [&](auto id_tag) {
        using Id = decltype(id_tag);
        dispatch_word(row_bytes, {out.data, table.data}, [&](auto word_tag) {
            using W = decltype(word_tag);
            const int64_t words = int64_t(row_bytes / sizeof(W));
            const int threads = int(std::clamp<int64_t>((words + 31) / 32 * 32, 32, 256));
            const unsigned blocks = unsigned(std::min<int64_t>(N, int64_t(1) << 20));
            kernels::embedding_kernel<W, Id><<<blocks, threads, 0, current_stream()>>>(
                static_cast<W*>(out.data), ptr<Id>(ids), static_cast<const W*>(table.data), N, V,
                words);
            CUDA_CHECK_LAUNCH();
        });
    });
}

void embedding_backward(const Tensor& d_table, const Tensor& d_out, const Tensor& ids) {
    const int64_t N = ids.numel(), V = d_table.shape[0], C = d_table.shape[1];
    if (N == 0 || C == 0) return;
    const size_t smem = size_t(C) * sizeof(float);
    dispatch_float(d_table, "embedding_backward", [&](auto tag) {
        using T = decltype(tag);
        dispatch_index(ids, "embedding_backward", [&](auto id_tag) {
            using Id = decltype(id_tag);
            auto kernel = kernels::embedding_backward_kernel<T, Id>;
            if (smem > 48 * 1024) {
                int device = 0, limit = 0;
                CUDA_CHECK(cudaGetDevice(&device));
                CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                                  device));
                if (smem > size_t(limit))
                    fail("[embedding_backward] rows of ", C, " columns need ", smem,
                         " bytes of shared memory, more than the device's ", limit);
                CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                int(smem)));
            }
            kernel<<<unsigned(N), kBlockThreads, smem, current_stream()>>>(
                ptr<T>(d_table), ptr<T>(d_out), ptr<Id>(ids), N, V, C);
            CUDA_CHECK_LAUNCH();
        });
    });
}

}  // namespace olmo::cuda
