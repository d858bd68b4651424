// Optimiser helpers on the CPU: the sum of squares behind the global gradient norm, and one AdamW
// step over a flat range of parameters.
//
// The sum of squares is taken in fixed blocks of elements whose partial sums are added in block
// order, so the result is the same for any number of threads.
#include <cmath>

#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

namespace {
constexpr int64_t kBlock = 1 << 14;  // elements per work item
}

double sum_squares(const Tensor& x) {
    double total = 0;
    dispatch_float("sum_squares", x.dtype, [&](auto tag) {
        using T = decltype(tag);
        const T* p = x.as<T>();
        const int64_t n = x.numel(), blocks = (n + kBlock - 1) / kBlock;
        Acc* part = scratch<Acc>(0, size_t(blocks));  // [blocks]
        parallel_for(blocks, kBlock, [&](int64_t blk) {
            const int64_t end = std::min(n, (blk + 1) * kBlock);
            Acc s = 0;
            for (int64_t i = blk * kBlock; i < end; ++i) s += Acc(p[i]) * Acc(p[i]);
            part[blk] = s;
        });
        for (int64_t b = 0; b < blocks; ++b) total += part[b];
    });
    return total;
}

void adamw(const Tensor& param, const Tensor& m, const Tensor& v, const Tensor& grad, float lr,
           float beta1, float beta2, float eps, float weight_decay, int64_t step,
           float grad_scale) {
    dispatch_float("adamw", param.dtype, [&](auto tag) {
        using T = decltype(tag);
        T* p = param.as<T>();
        T* pm = m.as<T>();
        T* pv = v.as<T>();
        const T* g = grad.as<T>();
        // Bias corrections in double, as PyTorch forms them from Python floats.
        const double bc1 = 1.0 - std::pow(double(beta1), double(step));
        const double bc2 = 1.0 - std::pow(double(beta2), double(step));
        const T decay = T(1.0 - double(lr) * double(weight_decay));
        const T step_size = T(double(lr) / bc1), bc2_sqrt = T(std::sqrt(bc2));
        const T b1 = T(beta1), b2 = T(beta2), e = T(eps), gs = T(grad_scale);
        const int64_t n = param.numel();
        parallel_for((n + kBlock - 1) / kBlock, 12 * kBlock, [&](int64_t blk) {
            const int64_t end = std::min(n, (blk + 1) * kBlock);
            for (int64_t i = blk * kBlock; i < end; ++i) {
                const T gi = gs * g[i];
                p[i] *= decay;
                pm[i] = b1 * pm[i] + (T(1) - b1) * gi;
                pv[i] = b2 * pv[i] + (T(1) - b2) * gi * gi;
                p[i] -= step_size * pm[i] / (std::sqrt(pv[i]) / bc2_sqrt + e);
            }
        });
    });
}

}  // namespace olmo::cpu
