// Launcher of the fused attention prologue (kernels/attention_prologue.cuh): QK-norms, RoPE and
// the KV-cache appends of N token rows in one kernel of (N, 3) blocks.
#include <algorithm>
#include <cstdint>

#include "cuda/dispatch.h"
#include "cuda/kernels/attention_prologue.cuh"
#include "cuda/launch.h"
#include "cuda/ops_cuda.h"

namespace olmo::cuda {

void attention_prologue(const Tensor& q, const Tensor& k, const Tensor& k_cache,
                        const Tensor& v_cache, const Tensor& q_raw, const Tensor& k_raw,
                        const Tensor& v, const Tensor& q_norm, const Tensor& k_norm,
                        const Tensor& positions, const Tensor& inv_freq, const Tensor& start,
                        float eps, float attention_scaling) {
    const int64_t B = q.shape[0], Tn = q.shape[1], Hq = q.shape[2], D = q.shape[3];
    const int64_t Hkv = k.shape[2], Dv = v.shape[3], N = B * Tn;
    if (N == 0) return;
    OLMO_CHECK(N <= int64_t(INT32_MAX), "[attention_prologue] ", N, " rows exceed the CUDA grid");
    dispatch_float(q, "attention_prologue", [&](auto tag) {
        using T = decltype(tag);
        kernels::AttentionPrologueArgs<T> p{};
        p.q = ptr<T>(q);
        p.k = ptr<T>(k);
        p.k_cache = ptr<T>(k_cache);
        p.v_cache = ptr<T>(v_cache);
        p.q_raw = ptr<T>(q_raw);
        p.k_raw = ptr<T>(k_raw);
        p.v = ptr<T>(v);
        p.q_norm = ptr<T>(q_norm);
        p.k_norm = ptr<T>(k_norm);
        p.positions = ptr<int32_t>(positions);
        p.inv_freq = inv_freq.empty() ? nullptr : ptr<float>(inv_freq);
        p.start = ptr<int32_t>(start);
        p.T_len = Tn;
        p.L = k_cache.shape[1];
        p.Hq = int(Hq);
        p.Hkv = int(Hkv);
        p.D = int(D);
        p.Dv = int(Dv);
        p.eps = eps;
        p.scaling = attention_scaling;
        const size_t smem = p.inv_freq ? size_t(D) * sizeof(float) : 0;
        constexpr int V = kernels::kVec16<T>;
        const bool packed = (D / 2) % V == 0 && (Hkv * Dv) % V == 0 &&
                            aligned_to(16, {p.q, p.k, p.k_cache, p.v_cache, p.q_raw, p.k_raw, p.v,
                                            p.q_norm, p.k_norm});
        // A thread per RoPE pair (packed: per pair of 16-byte packs), at most 512: one pair of
        // packs, or about four pairs of elements, per thread on the 3840-wide rows of the
        // released models.
        const int64_t pairs = std::max(Hq, Hkv) * D / (packed ? 2 * V : 2);
        const int threads = int(std::clamp<int64_t>((pairs + 31) / 32 * 32, 64, 512));
        const dim3 grid(unsigned(N), 3);
        if (packed)
            kernels::attention_prologue_packed_kernel<T, V>
                <<<grid, threads, smem, current_stream()>>>(p);
        else
            kernels::attention_prologue_kernel<T><<<grid, threads, smem, current_stream()>>>(p);
        CUDA_CHECK_LAUNCH();
    });
}

}  // namespace olmo::cuda
