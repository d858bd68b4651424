// The fused ops of the decode path, each the composition of the reference ops it replaces, called
// in the same order on the same operands, so that the fused and the unfused model compute the same
// bits on the CPU. Intermediates live in per-thread scratch slots (kFirstSlot and up, which the
// composed ops do not use), so steady-state calls allocate nothing.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

namespace {

constexpr int kFirstSlot = 9;
static_assert(kFirstSlot + 7 <= kScratchSlots, "gdn_decode_step needs seven slots");

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

// The MLP's two products, then the activation.
void matmul_swiglu(const Tensor& act, const Tensor& gate, const Tensor& up, const Tensor& x,
                   const Tensor& w_gate, const Tensor& w_up) {
    matmul(gate, x, w_gate, false);
    matmul(up, x, w_up, false);
    swiglu(act, gate, up);
}

// The reference provides no sums of squares; the norms below are computed in full.
void matmul_sumsq(const Tensor& out, SumSquares& sumsq, const Tensor& x, const Tensor& w,
                  bool accumulate, const Tensor& /*norm_w*/) {
    matmul(out, x, w, accumulate);
    sumsq.count = 0;
}

void rmsnorm_matmul_segments(std::span<const Tensor> outs, const Tensor& normed, const Tensor& h,
                             const Tensor& norm_w, float eps, const SumSquares& /*sumsq*/,
                             const Tensor& w) {
    rmsnorm(normed, h, norm_w, eps);
    matmul_segments(outs, normed, w);
}

void rmsnorm_matmul_swiglu(const Tensor& act, const Tensor& gate, const Tensor& up,
                           const Tensor& normed, const Tensor& h, const Tensor& norm_w, float eps,
                           const SumSquares& /*sumsq*/, const Tensor& w_gate, const Tensor& w_up) {
    rmsnorm(normed, h, norm_w, eps);
    matmul_swiglu(act, gate, up, normed, w_gate, w_up);
}

// conv1d_silu ×3, l2norm ×2, repeat_heads ×2 (GVA), gdn_gates, gdn_recurrent, rmsnorm_gated: the
// GDN layer's statements for one token with a decoding state.
void gdn_decode_step(const Tensor& y, const Tensor& state, const Tensor& conv_q_state,
                     const Tensor& conv_k_state, const Tensor& conv_v_state, const Tensor& q,
                     const Tensor& k, const Tensor& v, const Tensor& a, const Tensor& b,
                     const Tensor& z, const Tensor& conv_q, const Tensor& conv_k,
                     const Tensor& conv_v, const Tensor& A_log, const Tensor& dt_bias,
                     const Tensor& o_norm, bool allow_neg_eigval, float l2_eps, float norm_eps) {
    dispatch_float("gdn_decode_step", q.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t B = state.shape[0], H = state.shape[1], Dk = state.shape[2],
                      Dv = state.shape[3];
        const int64_t Kd = conv_q.shape[0], Vd = conv_v.shape[0], Hk = Kd / Dk;
        int slot = kFirstSlot;
        const Tensor q_conv = temporary<T>(slot++, {B, 1, Kd});
        const Tensor k_conv = temporary<T>(slot++, {B, 1, Kd});
        const Tensor v_conv = temporary<T>(slot++, {B, 1, Vd});
        conv1d_silu(q_conv, q.reshape({B, 1, Kd}), conv_q, conv_q_state);
        conv1d_silu(k_conv, k.reshape({B, 1, Kd}), conv_k, conv_k_state);
        conv1d_silu(v_conv, v.reshape({B, 1, Vd}), conv_v, conv_v_state);
        const Tensor q_n = q_conv.reshape({B * Hk, Dk}), k_n = k_conv.reshape({B * Hk, Dk});
        l2norm(q_n, q_n, l2_eps, 1.0f / std::sqrt(float(Dk)));
        l2norm(k_n, k_n, l2_eps, 1.0f);
        Tensor q_rep = q_conv, k_rep = k_conv;
        if (H != Hk) {
            q_rep = temporary<T>(slot++, {B, 1, H, Dk});
            k_rep = temporary<T>(slot++, {B, 1, H, Dk});
            repeat_heads(q_rep.reshape({B, H, Dk}), q_conv.reshape({B, Hk, Dk}));
            repeat_heads(k_rep.reshape({B, H, Dk}), k_conv.reshape({B, Hk, Dk}));
        }
        const Tensor gates = temporary<T>(slot++, {2, B, 1, H});  // g, then β
        const Tensor g = gates.select0(0), beta = gates.select0(1);
        gdn_gates(g.reshape({B, H}), beta.reshape({B, H}), a.reshape({B, H}), b.reshape({B, H}),
                  A_log, dt_bias, allow_neg_eigval);
        const Tensor o = temporary<T>(slot++, {B, 1, H, Dv});
        gdn_recurrent(o, state, q_rep.reshape({B, 1, H, Dk}), k_rep.reshape({B, 1, H, Dk}),
                      v_conv.reshape({B, 1, H, Dv}), g, beta);
        rmsnorm_gated(y, o.reshape({B * H, Dv}), z, o_norm, norm_eps);
    });
}

}  // namespace olmo::cpu
