// Rotary position embedding, non-interleaved ("rotate_half") form, and its backward (the transposed
// rotation). The angle pos · inv_freq is formed in f32 as in HF; cos and sin are then evaluated in
// the tensor's precision, once per row and shared by all its heads.
#include <cmath>

#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

namespace {

// out = R(sign · angle) x per row, both laid out as `layout` [N, H, D]; sign = −1 gives the
// transpose for the backward.
template <class T>
void rotate(const Tensor& out, const Tensor& x, const Tensor& layout, const Tensor& positions,
            const Tensor& inv_freq, float attention_scaling, T sign) {
    const int64_t D = layout.shape[layout.ndim - 1], H = layout.shape[layout.ndim - 2],
                  half = D / 2;
    const int64_t N = positions.numel();
    const float* freq = inv_freq.as<const float>();
    const T* px = x.as<T>();
    T* po = out.as<T>();
    parallel_for(N, H * D + 20 * half, [&](int64_t n) {
        T* cs = scratch<T>(0, size_t(D));  // [D/2] cos, then [D/2] sin
        const float pos = float(index_at(positions, n));
        for (int64_t i = 0; i < half; ++i) {
            const float angle = pos * freq[i];
            cs[i] = std::cos(T(angle)) * T(attention_scaling);
            cs[half + i] = sign * std::sin(T(angle)) * T(attention_scaling);
        }
        for (int64_t h = 0; h < H; ++h) {
            const T* xr = px + (n * H + h) * D;
            T* yr = po + (n * H + h) * D;
            for (int64_t i = 0; i < half; ++i) {
                const T a = xr[i], b = xr[i + half], c = cs[i], s = cs[half + i];
                yr[i] = a * c - b * s;
                yr[i + half] = b * c + a * s;
            }
        }
    });
}

}  // namespace

void rope(const Tensor& out, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
          float attention_scaling) {
    dispatch_float("rope", out.dtype, [&](auto tag) {
        using T = decltype(tag);
        rotate<T>(out, x, x, positions, inv_freq, attention_scaling, T(1));
    });
}

void rope_backward(const Tensor& d_x, const Tensor& d_out, const Tensor& positions,
                   const Tensor& inv_freq, float attention_scaling) {
    dispatch_float("rope_backward", d_x.dtype, [&](auto tag) {
        using T = decltype(tag);
        rotate<T>(d_x, d_out, d_x, positions, inv_freq, attention_scaling, T(-1));
    });
}

}  // namespace olmo::cpu
