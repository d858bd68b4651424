// Cross-entropy over rows of logits[N, V] with the optional z-loss (z · lse² per row) and its
// gradient.
//   1. ce_count_kernel (one block): the number of counted rows (target ≠ ignore_index) and the
//   first
//      row whose target is outside [0, V) (reported by the host; such rows count as ignored here).
//   2. ce_row_kernel (one block per row): an online max and sum of exp over the row (exp in f32,
//   sums
//      in f64), combined across the block, the row loss lse − l_t + z·lse² in f64, and, when asked,
//      the gradient p·(1 + 2z·lse)/count − [v = t]/count. The row (and the target logit) is read
//      completely before any gradient is written, so d_logits may alias logits.
//   3. ce_sum_kernel (one block): the sum of the row losses, in a fixed order.
#pragma once

#include "vec.cuh"

namespace olmo::kernels {

// stats[0] = counted rows, stats[1] = first bad row (or −1).
template <class Id>
__global__ void ce_count_kernel(long long* stats, const Id* targets, int64_t N, int64_t V,
                                int64_t ignore_index) {
    long long count = 0, bad = LLONG_MAX;
    for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
        const int64_t t = int64_t(targets[n]);
        if (t == ignore_index) continue;
        if (t < 0 || t >= V) {
            bad = min(bad, (long long)n);
        } else {
            ++count;
        }
    }
    count = block_sum_i64(count);
    bad = block_min_i64(bad);
    if (threadIdx.x == 0) {
        stats[0] = count;
        stats[1] = bad == LLONG_MAX ? -1 : bad;
    }
}

template <class T, class Id, int N>
__global__ void ce_row_kernel(T* d_logits, double* row_loss, const T* logits, const Id* targets,
                              const long long* stats, int64_t V, int64_t ignore_index,
                              float z_loss) {
    const int64_t n = blockIdx.x;
    const int64_t t = int64_t(targets[n]);
    const T* l = logits + n * V;
    T* d = d_logits ? d_logits + n * V : nullptr;
    const int64_t packs = V / N;
    if (t == ignore_index || t < 0 || t >= V) {
        if (threadIdx.x == 0) row_loss[n] = 0.0;
        if (d) {
            float zero[N];
#pragma unroll
            for (int k = 0; k < N; ++k) zero[k] = 0.0f;
            for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) store_f32<N>(d + p * N, zero);
        }
        return;
    }
    const float target_logit = to_f32(l[t]);
    // Online max and sum of exp(l − max) over this thread's elements (the sum in f64).
    float m = -INFINITY;
    double s = 0.0;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
        float v[N];
        load_f32<N>(v, l + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) {
            if (v[k] > m) {
                s = s * double(expf(m - v[k])) + 1.0;
                m = v[k];
            } else if (m != -INFINITY) {  // (−inf − −inf would be NaN)
                s += double(expf(v[k] - m));
            }
        }
    }
    const float row_max = block_max(m);
    const double sum = block_sum_f64(m == -INFINITY ? 0.0 : s * double(expf(m - row_max)));
    const double lse = double(row_max) + log(sum);
    if (threadIdx.x == 0) row_loss[n] = lse - double(target_logit) + double(z_loss) * lse * lse;
    if (!d) return;
    const double inv_count = stats[0] > 0 ? 1.0 / double(stats[0]) : 0.0;
    const float coef = float(inv_count * (1.0 + 2.0 * double(z_loss) * lse) / sum);
    const float hit = float(inv_count);
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
        float v[N];
        load_f32<N>(v, l + p * N);
#pragma unroll
        for (int k = 0; k < N; ++k) {
            v[k] = expf(v[k] - row_max) * coef;
            if (p * N + k == t) v[k] -= hit;
        }
        store_f32<N>(d + p * N, v);
    }
}

// total[0] = Σ_n row_loss[n], in a fixed order (one block).
__global__ void ce_sum_kernel(double* total, const double* row_loss, int64_t N) {
    double s = 0.0;
    for (int64_t n = threadIdx.x; n < N; n += blockDim.x) s += row_loss[n];
    s = block_sum_f64(s);
    if (threadIdx.x == 0) total[0] = s;
}

}  // namespace olmo::kernels
