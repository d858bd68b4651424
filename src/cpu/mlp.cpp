// The SwiGLU activation of the MLP, out = silu(gate) ⊙ up, and its backward. Elementwise, so every
// output may alias the input of the same role.
#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

namespace {
constexpr int64_t kBlock = 4096;  // elements per parallel work item
}

void swiglu(const Tensor& out, const Tensor& gate, const Tensor& up) {
    dispatch_float("swiglu", out.dtype, [&](auto tag) {
        using T = decltype(tag);
        const T* g = gate.as<T>();
        const T* u = up.as<T>();
        T* o = out.as<T>();
        const int64_t n = out.numel();
        parallel_for((n + kBlock - 1) / kBlock, 8 * kBlock, [&](int64_t blk) {
            const int64_t end = std::min(n, (blk + 1) * kBlock);
            for (int64_t i = blk * kBlock; i < end; ++i) o[i] = silu(g[i]) * u[i];
        });
    });
}

void swiglu_backward(const Tensor& d_gate, const Tensor& d_up, const Tensor& d_out,
                     const Tensor& gate, const Tensor& up) {
    dispatch_float("swiglu_backward", d_gate.dtype, [&](auto tag) {
        using T = decltype(tag);
        const T* g = gate.as<T>();
        const T* u = up.as<T>();
        const T* dy = d_out.as<T>();
        T* dg = d_gate.as<T>();
        T* du = d_up.as<T>();
        const int64_t n = d_gate.numel();
        parallel_for((n + kBlock - 1) / kBlock, 12 * kBlock, [&](int64_t blk) {
            const int64_t end = std::min(n, (blk + 1) * kBlock);
            for (int64_t i = blk * kBlock; i < end; ++i) {
                const T gi = g[i], ui = u[i], d = dy[i];
                dg[i] = d * ui * silu_grad(gi);
                du[i] = d * silu(gi);
            }
        });
    });
}

}  // namespace olmo::cpu
