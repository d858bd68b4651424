// The GDN gates (spec §2.6.4-5): log decay g = −exp(A_log)·softplus(a + dt_bias) and write strength
// β = s·sigmoid(b) (s = 2 when negative eigenvalues are allowed), with their backward. softplus
// follows PyTorch: x itself above 20, so its derivative there is exactly 1.
#include <cmath>

#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

namespace {
template <class T>
T softplus(T x) {
    return x > T(20) ? x : std::log1p(std::exp(x));
}
template <class T>
T softplus_grad(T x) {
    return x > T(20) ? T(1) : sigmoid(x);
}
}  // namespace

void gdn_gates(const Tensor& g, const Tensor& beta, const Tensor& a, const Tensor& b,
               const Tensor& A_log, const Tensor& dt_bias, bool allow_neg_eigval) {
    dispatch_float("gdn_gates", a.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t H = A_log.shape[0], N = rows_of(a);
        const T* pa = a.as<T>();
        const T* pb = b.as<T>();
        const T* alog = A_log.as<T>();
        const T* dtb = dt_bias.as<T>();
        T* pg = g.as<T>();
        T* pbeta = beta.as<T>();
        const T s = allow_neg_eigval ? T(2) : T(1);
        parallel_for(N, 40 * H, [&](int64_t n) {
            for (int64_t h = 0; h < H; ++h) {
                const int64_t i = n * H + h;
                pg[i] = -std::exp(alog[h]) * softplus(pa[i] + dtb[h]);
                pbeta[i] = s * sigmoid(pb[i]);
            }
        });
    });
}

void gdn_gates_backward(const Tensor& d_a, const Tensor& d_b, const Tensor& d_A_log,
                        const Tensor& d_dt_bias, const Tensor& d_g, const Tensor& d_beta,
                        const Tensor& a, const Tensor& b, const Tensor& A_log,
                        const Tensor& dt_bias, bool allow_neg_eigval) {
    dispatch_float("gdn_gates_backward", a.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t H = A_log.shape[0], N = rows_of(a);
        const T* pa = a.as<T>();
        const T* pb = b.as<T>();
        const T* alog = A_log.as<T>();
        const T* dtb = dt_bias.as<T>();
        const T* dg = d_g.as<T>();
        const T* dbeta = d_beta.as<T>();
        T* da = d_a.as<T>();
        T* db = d_b.as<T>();
        const T s = allow_neg_eigval ? T(2) : T(1);
        parallel_for(N, 40 * H, [&](int64_t n) {
            for (int64_t h = 0; h < H; ++h) {
                const int64_t i = n * H + h;
                da[i] = -dg[i] * std::exp(alog[h]) * softplus_grad(pa[i] + dtb[h]);
                const T sb = sigmoid(pb[i]);
                db[i] = dbeta[i] * s * sb * (T(1) - sb);
            }
        });
        // ∂g/∂A_log = g and ∂g/∂dt_bias = ∂g/∂a: sum over rows, in row order.
        Acc* acc = scratch<Acc>(0, size_t(2 * H));  // [H] d_A_log, [H] d_dt_bias
        for (int64_t h = 0; h < 2 * H; ++h) acc[h] = 0;
        for (int64_t n = 0; n < N; ++n)
            for (int64_t h = 0; h < H; ++h) {
                const int64_t i = n * H + h;
                const T gi = -std::exp(alog[h]) * softplus(pa[i] + dtb[h]);
                acc[h] += Acc(dg[i]) * Acc(gi);
                acc[H + h] += Acc(da[i]);
            }
        T* dalog = d_A_log.as<T>();
        T* ddtb = d_dt_bias.as<T>();
        for (int64_t h = 0; h < H; ++h) {
            dalog[h] += T(acc[h]);
            ddtb[h] += T(acc[H + h]);
        }
    });
}

}  // namespace olmo::cpu
