// Short causal depthwise convolution over time followed by SiLU (the GDN q/k/v convs), with the
// rolling state that lets a sequence be processed in pieces (chunked prefill, decode), and the
// training backward (zero initial state).
//
// The weight is read transposed to [W, Ch] so that the inner loops run along the contiguous channel
// axis. The backward first writes dL/d(pre-activation) into d_x, reduces it into d_w, and then
// turns d_x into the input gradient in place, walking time forwards (each row only needs later
// rows).
#include <cstring>

#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

namespace {

// wt[j, c] = w[c, j]
template <class T>
T* transposed_weight(const Tensor& w, int slot) {
    const int64_t Ch = w.shape[0], W = w.shape[1];
    T* wt = scratch<T>(slot, size_t(W * Ch));
    const T* pw = w.as<T>();
    for (int64_t c = 0; c < Ch; ++c)
        for (int64_t j = 0; j < W; ++j) wt[j * Ch + c] = pw[c * W + j];
    return wt;
}

// pre[c] = Σ_j w[c, j] · x̂[t − (W−1) + j, c] for one (b, t), x̂ = concat(state, x) of sequence b
// (state rows absent = zeros).
template <class T>
void conv_row(T* pre, const T* x, const T* state, const T* wt, int64_t t, int64_t W, int64_t Ch) {
    for (int64_t c = 0; c < Ch; ++c) pre[c] = 0;
    for (int64_t j = 0; j < W; ++j) {
        const int64_t tau = t - (W - 1) + j;
        const T* src = tau >= 0 ? x + tau * Ch : state ? state + (W - 1 + tau) * Ch : nullptr;
        if (!src) continue;
        const T* wj = wt + j * Ch;
        for (int64_t c = 0; c < Ch; ++c) pre[c] += wj[c] * src[c];
    }
}

}  // namespace

void conv1d_silu(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& state) {
    dispatch_float("conv1d_silu", out.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t B = x.shape[0], Tn = x.shape[1], Ch = x.shape[2], W = w.shape[1];
        const T* wt = transposed_weight<T>(w, 0);
        const T* px = x.as<T>();
        T* ps = state.empty() ? nullptr : state.as<T>();
        T* po = out.as<T>();
        parallel_for(B * Tn, 2 * W * Ch, [&](int64_t row) {
            const int64_t b = row / Tn, t = row % Tn;
            T* y = po + row * Ch;
            conv_row(y, px + b * Tn * Ch, ps ? ps + b * (W - 1) * Ch : nullptr, wt, t, W, Ch);
            for (int64_t c = 0; c < Ch; ++c) y[c] = silu(y[c]);
        });
        if (!ps) return;
        // New state row r = x̂[T − (W−1) + r]: from x, or (short input) from a later row of the
        // old state, so ascending r never reads a row already overwritten.
        for (int64_t b = 0; b < B; ++b) {
            T* s = ps + b * (W - 1) * Ch;
            for (int64_t r = 0; r < W - 1; ++r) {
                const int64_t tau = Tn - (W - 1) + r;
                const T* src = tau >= 0 ? px + (b * Tn + tau) * Ch : s + (W - 1 + tau) * Ch;
                std::memmove(s + r * Ch, src, size_t(Ch) * sizeof(T));
            }
        }
    });
}

void conv1d_silu_backward(const Tensor& d_x, const Tensor& d_w, const Tensor& d_out,
                          const Tensor& x, const Tensor& w) {
    dispatch_float("conv1d_silu_backward", d_x.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t B = x.shape[0], Tn = x.shape[1], Ch = x.shape[2], W = w.shape[1];
        const T* wt = transposed_weight<T>(w, 0);
        const T* px = x.as<T>();
        const T* dy = d_out.as<T>();
        T* dx = d_x.as<T>();
        // d_x ← dL/dpre = dy · silu'(pre)
        parallel_for(B * Tn, 2 * W * Ch, [&](int64_t row) {
            const int64_t b = row / Tn, t = row % Tn;
            T* pre = scratch<T>(1, size_t(Ch));
            conv_row<T>(pre, px + b * Tn * Ch, nullptr, wt, t, W, Ch);
            for (int64_t c = 0; c < Ch; ++c)
                dx[row * Ch + c] = dy[row * Ch + c] * silu_grad(pre[c]);
        });
        // d_w[c, j] += Σ_{b,t} dpre[b, t, c] · x[b, t − (W−1) + j, c]
        T* dw = d_w.as<T>();
        parallel_columns(Ch, B * Tn * W, [&](int64_t c0, int64_t c1) {
            const int64_t nc = c1 - c0;
            Acc* acc = scratch<Acc>(2, size_t(W * nc));  // [W, nc]
            for (int64_t i = 0; i < W * nc; ++i) acc[i] = 0;
            for (int64_t b = 0; b < B; ++b)
                for (int64_t t = 0; t < Tn; ++t) {
                    const T* g = dx + (b * Tn + t) * Ch;
                    for (int64_t j = std::max<int64_t>(0, W - 1 - t); j < W; ++j) {
                        const T* xr = px + (b * Tn + t - (W - 1) + j) * Ch;
                        Acc* a = acc + j * nc - c0;
                        for (int64_t c = c0; c < c1; ++c) a[c] += Acc(g[c]) * Acc(xr[c]);
                    }
                }
            for (int64_t c = c0; c < c1; ++c)
                for (int64_t j = 0; j < W; ++j) dw[c * W + j] += T(acc[j * nc + c - c0]);
        });
        // d_x[τ] = Σ_j w[:, j] ⊙ dpre[τ + (W−1) − j], in place, τ ascending.
        parallel_columns(Ch, B * Tn * W, [&](int64_t c0, int64_t c1) {
            for (int64_t b = 0; b < B; ++b)
                for (int64_t tau = 0; tau < Tn; ++tau) {
                    T* out = dx + (b * Tn + tau) * Ch;
                    for (int64_t c = c0; c < c1; ++c) {
                        T s = 0;
                        for (int64_t j = std::max<int64_t>(0, tau + W - Tn); j < W; ++j)
                            s += wt[j * Ch + c] * out[(W - 1 - j) * Ch + c];
                        out[c] = s;
                    }
                }
        });
    });
}

}  // namespace olmo::cpu
