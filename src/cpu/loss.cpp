// Mean cross-entropy over the non-ignored rows, with the optional OLMo z-loss (z · lse² per row)
// and the gradient with respect to the logits. The log-sum-exp and every sum are in double; each
// row is read completely before its gradient is written, so d_logits may overwrite logits.
#include <algorithm>
#include <cmath>

#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

double cross_entropy(const Tensor& d_logits, const Tensor& logits, const Tensor& targets,
                     float z_loss, int64_t ignore_index, int64_t* count) {
    const int64_t V = logits.shape[logits.ndim - 1], N = rows_of(logits);
    int64_t counted = 0;
    for (int64_t n = 0; n < N; ++n) {
        const int64_t t = index_at(targets, n);
        if (t == ignore_index) continue;
        if (t < 0 || t >= V)
            fail("[cross_entropy] target ", t, " at row ", n, " is outside [0, ", V, ")");
        ++counted;
    }
    if (count) *count = counted;
    double total = 0;
    dispatch_float("cross_entropy", logits.dtype, [&](auto tag) {
        using T = decltype(tag);
        const T* pl = logits.as<T>();
        T* pd = d_logits.empty() ? nullptr : d_logits.as<T>();
        Acc* row_loss = scratch<Acc>(0, size_t(N));  // [N]
        const Acc inv_count = counted ? 1.0 / Acc(counted) : 0.0;
        parallel_for(N, 4 * V, [&](int64_t n) {
            const T* l = pl + n * V;
            const int64_t t = index_at(targets, n);
            if (t == ignore_index) {
                row_loss[n] = 0;
                if (pd) std::fill(pd + n * V, pd + (n + 1) * V, T(0));
                return;
            }
            T m = l[0];
            for (int64_t v = 1; v < V; ++v) m = std::max(m, l[v]);
            const Acc target_logit = Acc(l[t]);
            // With a gradient to write, the exponentials are kept in it (once per element); d may
            // be the logits themselves, which are not read again.
            T* d = pd ? pd + n * V : nullptr;
            Acc sum = 0;
            for (int64_t v = 0; v < V; ++v) {
                const T e = std::exp(l[v] - m);
                sum += Acc(e);
                if (d) d[v] = e;
            }
            const Acc lse = Acc(m) + std::log(sum);
            row_loss[n] = lse - target_logit + Acc(z_loss) * lse * lse;
            if (!d) return;
            // d/dl_v of (lse − l_t + z lse²) = p_v (1 + 2 z lse) − [v = t], over the count
            const T coef = T(inv_count * (1.0 + 2.0 * Acc(z_loss) * lse) / sum);
            for (int64_t v = 0; v < V; ++v) d[v] *= coef;
            d[t] -= T(inv_count);
        });
        for (int64_t n = 0; n < N; ++n) total += row_loss[n];
    });
    return counted ? total / double(counted) : 0.0;
}

}  // namespace olmo::cpu
