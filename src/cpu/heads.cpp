// Grouped value attention helper: repeat each key head Hv/Hk times (torch.repeat_interleave on the
// head axis) and, backward, sum the copies.
#include <cstring>

#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

void repeat_heads(const Tensor& out, const Tensor& x) {
    const int64_t D = x.shape[x.ndim - 1], Hk = x.shape[x.ndim - 2], Hv = out.shape[out.ndim - 2];
    const int64_t N = Hk * D > 0 ? x.numel() / (Hk * D) : 0, rep = Hv / Hk;
    const size_t bytes = size_t(D) * dtype_size(x.dtype);
    const char* src = static_cast<const char*>(x.data);
    char* dst = static_cast<char*>(out.data);
    parallel_for(N, Hv * D, [&](int64_t n) {
        for (int64_t h = 0; h < Hv; ++h)
            std::memcpy(dst + (n * Hv + h) * bytes, src + (n * Hk + h / rep) * bytes, bytes);
    });
}

void repeat_heads_backward(const Tensor& d_x, const Tensor& d_out) {
    dispatch_float("repeat_heads_backward", d_x.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t D = d_x.shape[d_x.ndim - 1], Hk = d_x.shape[d_x.ndim - 2];
        const int64_t Hv = d_out.shape[d_out.ndim - 2], rep = Hv / Hk;
        const int64_t N = Hk * D > 0 ? d_x.numel() / (Hk * D) : 0;
        const T* g = d_out.as<T>();
        T* dx = d_x.as<T>();
        parallel_for(N, Hv * D, [&](int64_t n) {
            for (int64_t h = 0; h < Hk; ++h) {
                T* row = dx + (n * Hk + h) * D;
                for (int64_t c = 0; c < D; ++c) row[c] = 0;
                for (int64_t r = 0; r < rep; ++r) {
                    const T* src = g + (n * Hv + h * rep + r) * D;
                    for (int64_t c = 0; c < D; ++c) row[c] += src[c];
                }
            }
        });
    });
}

}  // namespace olmo::cpu
