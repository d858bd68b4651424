// Causal softmax attention (optionally windowed, with GQA) over a key/value buffer, its training
// backward, and the append of new keys/values into a cache.
//
// Work is split by (batch, kv head): the keys (and, backward, the values) of that head are copied
// once into a transposed [D, L] scratch, so that one query's scores against all its keys are D
// contiguous multiply-adds over the key axis instead of one short dot product per key; every query
// head of the GQA group reuses them. Softmax: max subtraction, exponentials summed in double. The
// backward recomputes each row's probabilities and owns the d_k, d_v rows of its kv head, so it
// needs neither atomics nor stored statistics. A few-query call (decode) skips the transpose.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

namespace {

// First key visible from position p.
inline int64_t first_key(int64_t p, int64_t window) {
    return window > 0 ? std::max<int64_t>(0, p - window + 1) : 0;
}

// xt[d, j] = x[b, j, hk, d] for j < n: the rows of one head, transposed to [D, n].
template <class T>
void transpose_head(T* xt, const T* x, int64_t b, int64_t hk, int64_t n, int64_t L, int64_t H,
                    int64_t D) {
    for (int64_t j = 0; j < n; ++j) {
        const T* row = x + ((b * L + j) * H + hk) * D;
        for (int64_t d = 0; d < D; ++d) xt[d * n + j] = row[d];
    }
}

// s[j − j0] = scale · a·x_j for j in [j0, j1) from the transposed rows xt [D, n].
template <class T>
void scores_t(T* s, const T* a, const T* xt, int64_t n, int64_t j0, int64_t j1, int64_t D,
              T scale) {
    const int64_t m = j1 - j0;
    for (int64_t j = 0; j < m; ++j) s[j] = 0;
    for (int64_t d = 0; d < D; ++d) {
        const T ad = scale * a[d];
        const T* row = xt + d * n + j0;
        for (int64_t j = 0; j < m; ++j) s[j] += ad * row[j];
    }
}

}  // namespace

void attention(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
               const Tensor& kv_lens, int64_t window, float scale) {
    const int64_t B = q.shape[0], Tq = q.shape[1], Hq = q.shape[2], D = q.shape[3];
    const int64_t L = k.shape[1], Hkv = k.shape[2], Dv = v.shape[3], group = Hq / Hkv;
    const int32_t* lens = kv_lens.as<const int32_t>();
    for (int64_t b = 0; b < B; ++b)
        if (lens[b] < Tq || lens[b] > L)
            fail("[attention] kv_lens[", b, "] = ", lens[b], " outside [", Tq, ", ", L,
                 "] (queries ", Tq, ", buffer ", L, ")");
    const bool transpose = Tq * group >= 4;  // enough queries per kv head to pay for the copy
    dispatch_float("attention", out.dtype, [&](auto tag) {
        using T = decltype(tag);
        const T* pq = q.as<T>();
        const T* pk = k.as<T>();
        const T* pv = v.as<T>();
        T* po = out.as<T>();
        const T sc = T(scale);
        const int64_t span = window ? std::min(window, L) : L;
        parallel_for(B * Hkv, Tq * group * span * (D + Dv), [&](int64_t item) {
            const int64_t b = item / Hkv, hk = item % Hkv, len = lens[b];
            T* kt = transpose ? scratch<T>(0, size_t(D * len)) : nullptr;  // [D, len]
            if (kt) transpose_head(kt, pk, b, hk, len, L, Hkv, D);
            T* s = scratch<T>(1, size_t(len));   // [keys] scores, then exponentials
            T* acc = scratch<T>(2, size_t(Dv));  // [Dv]
            for (int64_t h = hk * group; h < (hk + 1) * group; ++h)
                for (int64_t t = 0; t < Tq; ++t) {
                    const int64_t p = len - Tq + t, j0 = first_key(p, window), n = p - j0 + 1;
                    const T* qr = pq + ((b * Tq + t) * Hq + h) * D;
                    if (kt) {
                        scores_t(s, qr, kt, len, j0, p + 1, D, sc);
                    } else {
                        for (int64_t j = j0; j <= p; ++j)
                            s[j - j0] = sc * dot(qr, pk + ((b * L + j) * Hkv + hk) * D, D);
                    }
                    T m = -std::numeric_limits<T>::infinity();
                    for (int64_t i = 0; i < n; ++i) m = std::max(m, s[i]);
                    Acc sum = 0;
                    for (int64_t c = 0; c < Dv; ++c) acc[c] = 0;
                    for (int64_t i = 0; i < n; ++i) {
                        const T e = std::exp(s[i] - m);
                        sum += Acc(e);
                        const T* vr = pv + ((b * L + j0 + i) * Hkv + hk) * Dv;
                        for (int64_t c = 0; c < Dv; ++c) acc[c] += e * vr[c];
                    }
                    const T inv = T(1.0 / sum);
                    T* orow = po + ((b * Tq + t) * Hq + h) * Dv;
                    for (int64_t c = 0; c < Dv; ++c) orow[c] = acc[c] * inv;
                }
        });
    });
}

void attention_backward(const Tensor& d_q, const Tensor& d_k, const Tensor& d_v,
                        const Tensor& d_out, const Tensor& q, const Tensor& k, const Tensor& v,
                        int64_t window, float scale) {
    const int64_t B = q.shape[0], L = q.shape[1], Hq = q.shape[2], D = q.shape[3];
    const int64_t Hkv = k.shape[2], Dv = v.shape[3], group = Hq / Hkv;
    const int64_t span = window ? std::min(window, L) : L;
    dispatch_float("attention_backward", d_q.dtype, [&](auto tag) {
        using T = decltype(tag);
        const T* pq = q.as<T>();
        const T* pk = k.as<T>();
        const T* pv = v.as<T>();
        const T* pdo = d_out.as<T>();
        T* dq = d_q.as<T>();
        T* dk = d_k.as<T>();
        T* dv = d_v.as<T>();
        const T sc = T(scale);
        parallel_for(B * Hkv, L * group * span * (3 * D + 2 * Dv), [&](int64_t item) {
            const int64_t b = item / Hkv, hk = item % Hkv;
            auto kv_row = [&](int64_t j) { return (b * L + j) * Hkv + hk; };
            T* kt = scratch<T>(0, size_t(D * L));   // [D, L]
            T* vt = scratch<T>(1, size_t(Dv * L));  // [Dv, L]
            T* s = scratch<T>(2, size_t(2 * L));    // [keys] scores → P, [keys] dP → dS
            T* dp = s + L;
            transpose_head(kt, pk, b, hk, L, L, Hkv, D);
            transpose_head(vt, pv, b, hk, L, L, Hkv, Dv);
            for (int64_t j = 0; j < L; ++j) {
                std::fill(dk + kv_row(j) * D, dk + kv_row(j) * D + D, T(0));
                std::fill(dv + kv_row(j) * Dv, dv + kv_row(j) * Dv + Dv, T(0));
            }
            for (int64_t h = hk * group; h < (hk + 1) * group; ++h)
                for (int64_t t = 0; t < L; ++t) {
                    const int64_t j0 = first_key(t, window), n = t - j0 + 1;
                    const int64_t row = (b * L + t) * Hq + h;
                    const T* qr = pq + row * D;
                    const T* gr = pdo + row * Dv;
                    scores_t(s, qr, kt, L, j0, t + 1, D, sc);
                    scores_t(dp, gr, vt, L, j0, t + 1, Dv, T(1));  // dP_j = dO·v_j
                    T m = -std::numeric_limits<T>::infinity();
                    for (int64_t i = 0; i < n; ++i) m = std::max(m, s[i]);
                    Acc sum = 0;
                    for (int64_t i = 0; i < n; ++i) sum += Acc(s[i] = std::exp(s[i] - m));
                    const T inv = T(1.0 / sum);
                    Acc delta = 0;  // Σ P dP = dO·O
                    for (int64_t i = 0; i < n; ++i) {
                        s[i] *= inv;
                        delta += Acc(s[i]) * Acc(dp[i]);
                    }
                    // dS = P (dP − δ);  d_q = scale Σ dS k_j;  d_k_j += scale dS q;  d_v_j += P dO
                    T* dqr = dq + row * D;
                    for (int64_t c = 0; c < D; ++c) dqr[c] = 0;
                    for (int64_t i = 0; i < n; ++i) {
                        const int64_t r = kv_row(j0 + i);
                        const T ds = sc * s[i] * (dp[i] - T(delta)), p = s[i];
                        const T* kr = pk + r * D;
                        T* dkr = dk + r * D;
                        T* dvr = dv + r * Dv;
                        for (int64_t c = 0; c < D; ++c) {
                            dqr[c] += ds * kr[c];
                            dkr[c] += ds * qr[c];
                        }
                        for (int64_t c = 0; c < Dv; ++c) dvr[c] += p * gr[c];
                    }
                }
        });
    });
}

void kv_append(const Tensor& cache, const Tensor& x, const Tensor& start) {
    const int64_t B = x.shape[0], T = x.shape[1], L = cache.shape[1];
    const int64_t row = x.shape[2] * x.shape[3] * int64_t(dtype_size(x.dtype));  // bytes per token
    const int32_t* st = start.as<const int32_t>();
    for (int64_t b = 0; b < B; ++b)
        if (st[b] < 0 || st[b] + T > L)
            fail("[kv_append] start[", b, "] = ", st[b], " with ", T,
                 " new rows overflows the cache of ", L, " rows");
    const char* src = static_cast<const char*>(x.data);
    char* dst = static_cast<char*>(cache.data);
    for (int64_t b = 0; b < B; ++b)
        std::copy_n(src + b * T * row, T * row, dst + (b * L + st[b]) * row);
}

}  // namespace olmo::cpu
