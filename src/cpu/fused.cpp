// The fused ops of the decode path, each the composition of the reference ops it replaces, called
// in the same order on the same operands, so that the fused and the unfused model compute the same
// bits on the CPU. Intermediates live in per-thread scratch slots (kFirstSlot and up, which the
// composed ops do not use), so steady-state calls allocate nothing.
#include <algorithm>
#include <type_traits>

#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

namespace {

constexpr int kFirstSlot = 9;

template <class T>
constexpr DType dtype_of() {
    return std::is_same_v<T, double> ? DType::f64 : DType::f32;
}

// A host temporary of the given shape in scratch slot `slot`.
template <class T>
Tensor temporary(int slot, std::initializer_list<int64_t> dims) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return Tensor(scratch<T>(slot, size_t(std::max<int64_t>(n, 1))), dtype_of<T>(), Device::cpu,
                  dims);
}

}  // namespace

// rmsnorm into a temporary, then add, over blocks of rows (the temporary stays small).
void rmsnorm_add(const Tensor& out, const Tensor& residual, const Tensor& x, const Tensor& w,
                 float eps) {
    dispatch_float("rmsnorm_add", out.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t C = w.shape[0], N = C > 0 ? x.numel() / C : 0;
        if (N == 0) return;
        const int64_t block = std::max<int64_t>(1, (int64_t(1) << 18) / C);
        const Tensor x2 = x.reshape({N, C}), r2 = residual.reshape({N, C}),
                     o2 = out.reshape({N, C});
        for (int64_t r0 = 0; r0 < N; r0 += block) {
            const int64_t n = std::min(block, N - r0);
            const Tensor normed = temporary<T>(kFirstSlot, {n, C});
            rmsnorm(normed, x2.narrow0(r0, n), w, eps);
            add(o2.narrow0(r0, n), r2.narrow0(r0, n), normed);
        }
    });
}

// rmsnorm, rmsnorm, rope, rope, kv_append, kv_append: the attention layer's statements.
void attention_prologue(const Tensor& q, const Tensor& k, const Tensor& k_cache,
                        const Tensor& v_cache, const Tensor& q_raw, const Tensor& k_raw,
                        const Tensor& v, const Tensor& q_norm, const Tensor& k_norm,
                        const Tensor& positions, const Tensor& inv_freq, const Tensor& start,
                        float eps, float attention_scaling) {
    const int64_t N = q.shape[0] * q.shape[1], Hq = q.shape[2], D = q.shape[3], Hkv = k.shape[2];
    const Tensor qn = q.reshape({N, Hq, D}), kn = k.reshape({N, Hkv, D});
    rmsnorm(q.reshape({N, Hq * D}), q_raw, q_norm, eps);
    rmsnorm(k.reshape({N, Hkv * D}), k_raw, k_norm, eps);
    if (!inv_freq.empty()) {
        rope(qn, qn, positions, inv_freq, attention_scaling);
        rope(kn, kn, positions, inv_freq, attention_scaling);
    }
    kv_append(k_cache, k, start);
    kv_append(v_cache, v, start);
}

}  // namespace olmo::cpu
