// The gated delta rule in its recurrent (token by token) form, spec §2.6.7: the decode path and the
// oracle that the chunked form is tested against. Per (batch, head), with h = Sᵀ [Dk, Dv]:
//   h ← exp(g_t)·h;  u = β_t (v_t − hᵀk_t);  h ← h + k_t uᵀ;  o_t = hᵀ q_t
// The backward is plain backpropagation through these four steps, one token at a time in reverse.
// It needs the state before every token: states are checkpointed every kSegment tokens on a forward
// sweep, and each segment's per-token states are recomputed from its checkpoint when the reverse
// sweep reaches it, so memory is O((T/kSegment + kSegment)·Dk·Dv) instead of O(T·Dk·Dv).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

namespace {

constexpr int64_t kSegment = 64;

// One token of the recurrence on h [Dk, Dv] in place; writes o [Dv] (needs q) if given.
// kh, u: [Dv] scratch.
template <class T>
void step(T* h, const T* q, const T* k, const T* v, T g, T beta, T* o, T* kh, T* u, int64_t Dk,
          int64_t Dv) {
    const T alpha = std::exp(g);
    for (int64_t j = 0; j < Dv; ++j) kh[j] = 0;
    for (int64_t i = 0; i < Dk; ++i) {  // decay, and hᵀk with the decayed state
        T* hr = h + i * Dv;
        const T ki = k[i];
        for (int64_t j = 0; j < Dv; ++j) {
            hr[j] *= alpha;
            kh[j] += ki * hr[j];
        }
    }
    for (int64_t j = 0; j < Dv; ++j) u[j] = beta * (v[j] - kh[j]);
    if (!o) {  // state only (the backward's recomputation)
        for (int64_t i = 0; i < Dk; ++i)
            for (int64_t j = 0; j < Dv; ++j) h[i * Dv + j] += k[i] * u[j];
        return;
    }
    for (int64_t j = 0; j < Dv; ++j) o[j] = 0;
    for (int64_t i = 0; i < Dk; ++i) {  // rank-1 write, then read out with q
        T* hr = h + i * Dv;
        const T ki = k[i], qi = q[i];
        for (int64_t j = 0; j < Dv; ++j) {
            hr[j] += ki * u[j];
            o[j] += qi * hr[j];
        }
    }
}

}  // namespace

void gdn_recurrent(const Tensor& o, const Tensor& state, const Tensor& q, const Tensor& k,
                   const Tensor& v, const Tensor& g, const Tensor& beta) {
    dispatch_float("gdn_recurrent", q.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t B = q.shape[0], Tn = q.shape[1], H = q.shape[2], Dk = q.shape[3];
        const int64_t Dv = v.shape[3];
        const T *pq = q.as<T>(), *pk = k.as<T>(), *pv = v.as<T>();
        const T *pg = g.as<T>(), *pb = beta.as<T>();
        T* po = o.as<T>();
        T* ps = state.as<T>();
        parallel_for(B * H, Tn * Dk * Dv * 4, [&](int64_t bh) {
            const int64_t b = bh / H, hd = bh % H;
            T* h = ps + bh * Dk * Dv;
            T* buf = scratch<T>(0, size_t(2 * Dv));  // kh, u
            for (int64_t t = 0; t < Tn; ++t) {
                const int64_t r = (b * Tn + t) * H + hd;
                step<T>(h, pq + r * Dk, pk + r * Dk, pv + r * Dv, pg[r], pb[r], po + r * Dv, buf,
                        buf + Dv, Dk, Dv);
            }
        });
    });
}

void gdn_recurrent_backward(const Tensor& d_q, const Tensor& d_k, const Tensor& d_v,
                            const Tensor& d_g, const Tensor& d_beta, const Tensor& d_state0,
                            const Tensor& d_o, const Tensor& d_state_final, const Tensor& q,
                            const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                            const Tensor& state0) {
    dispatch_float("gdn_recurrent_backward", q.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t B = q.shape[0], Tn = q.shape[1], H = q.shape[2], Dk = q.shape[3];
        const int64_t Dv = v.shape[3], M = Dk * Dv;
        const int64_t nseg = (Tn + kSegment - 1) / kSegment;
        const T *pq = q.as<T>(), *pk = k.as<T>(), *pv = v.as<T>();
        const T *pg = g.as<T>(), *pb = beta.as<T>(), *pdo = d_o.as<T>();
        const T* ps0 = state0.empty() ? nullptr : state0.as<T>();
        const T* pdsf = d_state_final.empty() ? nullptr : d_state_final.as<T>();
        T *dq = d_q.as<T>(), *dk = d_k.as<T>(), *dv = d_v.as<T>();
        T *dg = d_g.as<T>(), *db = d_beta.as<T>();
        T* pds0 = d_state0.empty() ? nullptr : d_state0.as<T>();
        parallel_for(B * H, Tn * M * 12, [&](int64_t bh) {
            const int64_t b = bh / H, hd = bh % H;
            T* ckpt = scratch<T>(0, size_t(std::max<int64_t>(nseg, 1) * M));  // [nseg, Dk, Dv]
            T* seg = scratch<T>(1, size_t(kSegment * M));  // [kSegment, Dk, Dv] states before t
            T* cur = scratch<T>(2, size_t(M));             // [Dk, Dv]
            T* dS = scratch<T>(3, size_t(M));              // [Dk, Dv] dL/d(state after t)
            T* vec = scratch<T>(4, size_t(4 * Dv));        // kh, u, du, dkh [Dv]
            T *kh = vec, *u = vec + Dv, *du = vec + 2 * Dv, *dkh = vec + 3 * Dv;
            auto row = [&](int64_t t) { return (b * Tn + t) * H + hd; };

            if (ps0)
                std::memcpy(cur, ps0 + bh * M, size_t(M) * sizeof(T));
            else
                std::fill(cur, cur + M, T(0));
            for (int64_t t = 0; t < Tn; ++t) {
                if (t % kSegment == 0) std::memcpy(ckpt + (t / kSegment) * M, cur, M * sizeof(T));
                const int64_t r = row(t);
                step<T>(cur, nullptr, pk + r * Dk, pv + r * Dv, pg[r], pb[r], nullptr, kh, u, Dk,
                        Dv);
            }
            if (pdsf)
                std::memcpy(dS, pdsf + bh * M, size_t(M) * sizeof(T));
            else
                std::fill(dS, dS + M, T(0));

            for (int64_t s = nseg - 1; s >= 0; --s) {
                const int64_t t0 = s * kSegment, t1 = std::min(Tn, t0 + kSegment);
                std::memcpy(cur, ckpt + s * M, size_t(M) * sizeof(T));
                for (int64_t t = t0; t < t1; ++t) {
                    std::memcpy(seg + (t - t0) * M, cur, size_t(M) * sizeof(T));
                    const int64_t r = row(t);
                    step<T>(cur, nullptr, pk + r * Dk, pv + r * Dv, pg[r], pb[r], nullptr, kh, u,
                            Dk, Dv);
                }
                for (int64_t t = t1 - 1; t >= t0; --t) {
                    const int64_t r = row(t);
                    const T* hp = seg + (t - t0) * M;  // state before token t
                    const T *qt = pq + r * Dk, *kt = pk + r * Dk, *vt = pv + r * Dv;
                    const T* dot = pdo + r * Dv;
                    const T alpha = std::exp(pg[r]), bt = pb[r];
                    T* dqt = dq + r * Dk;
                    T* dkt = dk + r * Dk;
                    // Forward quantities: h_a = α h_prev, kh = h_aᵀk, u = β (v − kh).
                    for (int64_t j = 0; j < Dv; ++j) kh[j] = 0;
                    for (int64_t i = 0; i < Dk; ++i)
                        for (int64_t j = 0; j < Dv; ++j) kh[j] += kt[i] * (alpha * hp[i * Dv + j]);
                    for (int64_t j = 0; j < Dv; ++j) u[j] = bt * (vt[j] - kh[j]);
                    // o = h_newᵀ q with h_new = h_a + k uᵀ:  dq = h_new dO,  dH = dS + q dOᵀ.
                    // h_new = h_a + k uᵀ:  du = dHᵀ k,  dk = dH u.
                    for (int64_t j = 0; j < Dv; ++j) du[j] = 0;
                    for (int64_t i = 0; i < Dk; ++i) {
                        const T* hr = hp + i * Dv;
                        T* dr = dS + i * Dv;
                        T sq = 0, sk = 0;
#pragma omp simd reduction(+ : sq, sk)
                        for (int64_t j = 0; j < Dv; ++j) {
                            sq += (alpha * hr[j] + kt[i] * u[j]) * dot[j];
                            dr[j] += qt[i] * dot[j];
                            du[j] += kt[i] * dr[j];
                            sk += dr[j] * u[j];
                        }
                        dqt[i] = sq;
                        dkt[i] = sk;
                    }
                    // u = β (v − kh):  dβ = du·(v − kh),  dv = β du,  dkh = −β du.
                    Acc dbeta = 0;
                    for (int64_t j = 0; j < Dv; ++j) {
                        dbeta += Acc(du[j]) * Acc(vt[j] - kh[j]);
                        dv[r * Dv + j] = bt * du[j];
                        dkh[j] = -bt * du[j];
                    }
                    db[r] = T(dbeta);
                    // kh = h_aᵀ k:  dH_a = dH + k dkhᵀ,  dk += h_a dkh.
                    // h_a = α h_prev:  dg = Σ h_a ⊙ dH_a,  dS ← α dH_a.
                    Acc dgt = 0;
                    for (int64_t i = 0; i < Dk; ++i) {
                        const T* hr = hp + i * Dv;
                        T* dr = dS + i * Dv;
                        T sk = 0;
#pragma omp simd reduction(+ : sk, dgt)
                        for (int64_t j = 0; j < Dv; ++j) {
                            const T ha = alpha * hr[j];
                            dr[j] += kt[i] * dkh[j];
                            sk += ha * dkh[j];
                            dgt += Acc(ha) * Acc(dr[j]);
                            dr[j] *= alpha;
                        }
                        dkt[i] += sk;
                    }
                    dg[r] = T(dgt);
                }
            }
            if (pds0) std::memcpy(pds0 + bh * M, dS, size_t(M) * sizeof(T));
        });
    });
}

}  // namespace olmo::cpu
