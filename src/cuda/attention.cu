// Launchers of softmax attention, for bf16 with head dim 64/128: the tensor-core kernel for
// prefill (Tq ≥ 16), the split-key kernel for decode and short continuations (Tq ≤ 4); the
// row-wise kernel otherwise (f32, other head dims, 4 < Tq < 16). Backward runs on the CPU backend
// only for now.
#include <algorithm>
#include <mutex>

#include "cuda/dispatch.h"
#include "cuda/kernels/attention.cuh"
#include "cuda/kernels/attention_decode.cuh"
#include "cuda/launch.h"
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
    // Dims per lane: 1, 2, 4 or 8 for head dims up to 32, 64, 128, 256.
    dispatch_bound<32, 64, 128, 256>(dims, "attention", "head dims", [&](auto bound) {
        launch_rowwise<T, decltype(bound)::value / 32>(out, q, k, v, kv_lens, window, scale);
    });
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

// Split-key decode: queries per sequence up to which it is used, and the blocks per SM it aims at.
constexpr int64_t kDecodeMaxTq = 4, kDecodeBlocksPerSm = 4;

// Splits per query: enough for kDecodeBlocksPerSm blocks per SM (at most kDecodeMaxSplits), each
// over at least kDecodeSplitKeys of the keys a query can see (the kernel spreads a query's visible
// keys over them, so short sequences in a long buffer use fewer). Several only when rows < target,
// so then rows · splits < 2 · target: the scratch has one size for all calls and never grows after
// the first, whatever the shapes of the calls between a graph capture and its replays.
int64_t decode_splits(int64_t rows, int64_t visible, int64_t target) {
    return std::clamp<int64_t>(std::min(kernels::ceil_div(target, rows),
                                        kernels::ceil_div(visible, kernels::kDecodeSplitKeys)),
                               1, kernels::kDecodeMaxSplits);
}

// The arrival counters (`bytes`), zero: the kernel leaves them zero, so they are cleared (on the
// stream, no synchronisation) only when the slot is new.
int* decode_counters(size_t bytes) {
    static std::mutex mu;
    static void* cleared_at = nullptr;
    static size_t cleared = 0;  // bytes known to be zero at cleared_at
    void* p = scratch(kAttentionCountersScratch, bytes);
    std::lock_guard<std::mutex> lock(mu);
    // A grown slot may be at the old address, but then bytes > cleared.
    if (p != cleared_at || bytes > cleared) {
        CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, current_stream()));
        cleared_at = p;
        cleared = bytes;
    }
    return static_cast<int*>(p);
}

template <int HD>
void launch_decode(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& kv_lens, int64_t window, float scale) {
    const int64_t B = q.size(0), Tq = q.size(1), Hq = q.size(2);
    const int64_t L = k.size(1), Hkv = k.size(2);
    const int64_t rows = B * Tq * Hq, target = kDecodeBlocksPerSm * multiprocessor_count();
    const int64_t splits = decode_splits(rows, window > 0 ? std::min(L, window) : L, target);
    float2* part_ml = nullptr;
    float* part_o = nullptr;
    int* counters = nullptr;
    if (splits > 1) {
        OLMO_CHECK(rows < target && rows * splits < 2 * target, "[attention] ", splits,
                   " splits of ", rows, " rows");
        // Partials for 2 · target (row, split) pairs of the widest head dim: their (max, sum),
        // then their outputs. Counters for target rows.
        const size_t ml_bytes = size_t(2 * target) * sizeof(float2);
        char* base = static_cast<char*>(scratch(
            kAttentionPartialsScratch, ml_bytes + size_t(2 * target) * 128 * sizeof(float)));
        part_ml = reinterpret_cast<float2*>(base);
        part_o = reinterpret_cast<float*>(base + ml_bytes);
        counters = decode_counters(size_t(target) * sizeof(int));
    }
    const dim3 grid(unsigned(splits), unsigned(Hq), unsigned(B * Tq));
    kernels::attention_decode_kernel<HD><<<grid, kernels::kDecodeThreads, 0, current_stream()>>>(
        ptr<__nv_bfloat16>(out), ptr<__nv_bfloat16>(q), ptr<__nv_bfloat16>(k),
        ptr<__nv_bfloat16>(v), ptr<int>(kv_lens), part_ml, part_o, counters, int(Tq), int(L),
        int(Hq), int(Hkv), int(window), scale, int(splits));
    CUDA_CHECK_LAUNCH();
}

}  // namespace

void attention(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
               const Tensor& kv_lens, int64_t window, float scale) {
    const int64_t D = q.size(3), Dv = v.size(3), Tq = q.size(1);
    const bool bf16_64_128 = q.dtype == DType::bf16 && D == Dv && (D == 64 || D == 128);
    if (bf16_64_128 && Tq >= 16) {
        if (D == 64)
            launch_flash<64>(out, q, k, v, kv_lens, window, scale);
        else
            launch_flash<128>(out, q, k, v, kv_lens, window, scale);
        return;
    }
    // 16-byte rows of q, k and v (row starts are then aligned too: D is a multiple of 8).
    if (bf16_64_128 && Tq <= kDecodeMaxTq && aligned_to(16, {q.data, k.data, v.data})) {
        if (D == 64)
            launch_decode<64>(out, q, k, v, kv_lens, window, scale);
        else
            launch_decode<128>(out, q, k, v, kv_lens, window, scale);
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
