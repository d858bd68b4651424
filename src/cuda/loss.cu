// Mean cross-entropy with optional z-loss and gradient (kernels/loss.cuh). Returns to the host, so
// it synchronises; targets are validated on the device and a bad one is reported after the copy.
#include "cuda/dispatch.h"
#include "cuda/kernels/loss.cuh"
#include "cuda/launch.h"
#include "cuda/ops_cuda.h"
#include "cuda/runtime.h"

namespace olmo::cuda {

double cross_entropy(const Tensor& d_logits, const Tensor& logits, const Tensor& targets,
                     float z_loss, int64_t ignore_index, int64_t* count) {
    const int64_t V = logits.shape[logits.ndim - 1],
                  N = V > 0 ? logits.numel() / V : targets.numel();
    if (N == 0) {
        if (count) *count = 0;
        return 0.0;
    }
    // Scratch: stats {count, first bad row} (i64), the total (f64), then row_loss[N] (f64).
    char* base = static_cast<char*>(scratch(kSmallOpsScratch, 64 + size_t(N) * sizeof(double)));
    long long* stats = reinterpret_cast<long long*>(base);
    double* total = reinterpret_cast<double*>(base + 16);
    double* row_loss = reinterpret_cast<double*>(base + 64);
    auto run = [&](auto id_tag) {
        using Id = decltype(id_tag);
        const Id* tg = ptr<Id>(targets);
        kernels::ce_count_kernel<Id>
            <<<1, 1024, 0, current_stream()>>>(stats, tg, N, V, ignore_index);
        CUDA_CHECK_LAUNCH();
        dispatch_float(logits, "cross_entropy", [&](auto tag) {
            using T = decltype(tag);
            T* d = d_logits.empty() ? nullptr : ptr<T>(d_logits);
            auto rows = [&](auto n_tag) {
                constexpr int P = decltype(n_tag)::value;
                const int threads = int(std::clamp<int64_t>((V / P + 31) / 32 * 32, 32, 1024));
                kernels::ce_row_kernel<T, Id, P><<<unsigned(N), threads, 0, current_stream()>>>(
                    d, row_loss, ptr<T>(logits), tg, stats, V, ignore_index, z_loss);
                CUDA_CHECK_LAUNCH();
            };
            if (packable<T>(V, {logits.data, d})) {
                rows(std::integral_constant<int, kernels::kVec16<T>>{});
            } else {
                rows(std::integral_constant<int, 1>{});
            }
        });
        kernels::ce_sum_kernel<<<1, 1024, 0, current_stream()>>>(total, row_loss, N);
        CUDA_CHECK_LAUNCH();
    };
    if (targets.dtype == DType::i64) {
        run(int64_t{});
    } else {
        run(int32_t{});
    }
    struct {
        long long count, bad;
        double total;
    } host{};
    static_assert(sizeof(host) == 24);
    copy_bytes(&host, false, base, true, sizeof(host));
    if (host.bad >= 0) {
        int64_t t = 0;
        if (targets.dtype == DType::i64) {
            copy_bytes(&t, false, ptr<int64_t>(targets) + host.bad, true, sizeof(int64_t));
        } else {
            int32_t t32 = 0;
            copy_bytes(&t32, false, ptr<int32_t>(targets) + host.bad, true, sizeof(int32_t));
            t = t32;
        }
        fail("[cross_entropy] target ", t, " at row ", host.bad, " is outside [0, ", V, ")");
    }
    if (count) *count = host.count;
    return host.count > 0 ? host.total / double(host.count) : 0.0;
}

}  // namespace olmo::cuda
