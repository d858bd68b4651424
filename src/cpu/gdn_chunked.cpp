// The gated delta rule computed by chunks (spec §3): within a chunk the UT/WY transform turns the
// token-by-token recurrence into small dense products, and only the chunk-start states are carried
// sequentially. Forward and backward (spec §3.7), any chunk size, any Dk/Dv.
//
// Per (batch, head), chunk of c ≤ C tokens with local cumulative log decay γ_i = Σ_{j≤i} g_j:
//   A = strict_lower(β_i (k_i·k_j) Γ_ij),  Γ_ij = exp(γ_i − γ_j) (only ever evaluated for j ≤ i),
//   T = (I + A)⁻¹,  W = T diag(β e^γ) K,  U = T diag(β) V,  V' = U − W h,
//   O = diag(e^γ) Q h + (Q Kᵀ ⊙ Γ ⊙ M_≤) V',  h ← e^{γ_c} h + (diag(e^{γ_c − γ}) K)ᵀ V'.
// The tail chunk is simply shorter: that equals padding it with zero rows (k = v = g = β = 0 rows
// leave the state and every real output unchanged). γ is accumulated in double, so the f32 path
// loses nothing to long runs of strong decay. The backward recomputes T, W, V' and the chunk-start
// states H_n, then sweeps the chunks in reverse carrying dh (the gradient of the state at the
// chunk's end), and finishes each chunk with the WY backward and a reverse cumulative sum of dγ.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/common.h"
#include "cpu/ops_cpu.h"

namespace olmo::cpu {

namespace {

// Addressing of head (b, h) in [B, T, H, *] operands: token t is row (b·T + t)·H + h.
struct Head {
    int64_t b, h, Tn, H;
    int64_t row(int64_t t) const { return (b * Tn + t) * H + h; }
};

// dst[i, :] = src row of token t0 + i, for i < c.
template <class T>
void gather(T* dst, const T* src, const Head& hd, int64_t t0, int64_t c, int64_t D) {
    for (int64_t i = 0; i < c; ++i)
        std::memcpy(dst + i * D, src + hd.row(t0 + i) * D, size_t(D) * sizeof(T));
}

// γ_i = Σ_{j≤i} g_j over the chunk.
template <class T>
void cumulative_decay(Acc* gam, const T* g, const Head& hd, int64_t t0, int64_t c) {
    Acc s = 0;
    for (int64_t i = 0; i < c; ++i) gam[i] = s += Acc(g[hd.row(t0 + i)]);
}

// Tm[c, c] = (I + A)⁻¹ (unit lower triangular) by forward substitution, from
// A[c, c] = strict_lower(β_i (k_i·k_j) exp(γ_i − γ_j)), which is also written.
template <class T>
void ut_transform(T* Tm, T* A, const T* K, const T* beta, const Acc* gam, int64_t c, int64_t Dk) {
    for (int64_t i = 0; i < c; ++i) {
        T* ar = A + i * c;
        for (int64_t j = 0; j < c; ++j) ar[j] = 0;
        for (int64_t j = 0; j < i; ++j)
            ar[j] = beta[i] * dot(K + i * Dk, K + j * Dk, Dk) * T(std::exp(gam[i] - gam[j]));
    }
    // Row i of T: e_i − Σ_{j<i} A_ij T_j (rows j < i are final).
    for (int64_t i = 0; i < c; ++i) {
        T* tr = Tm + i * c;
        for (int64_t l = 0; l < c; ++l) tr[l] = 0;
        tr[i] = 1;
        for (int64_t j = 0; j < i; ++j) {
            const T a = A[i * c + j];
            const T* tj = Tm + j * c;
            for (int64_t l = 0; l <= j; ++l) tr[l] -= a * tj[l];
        }
    }
}

// W = T diag(β e^γ) K [c, Dk] and U = T diag(β) V [c, Dv].
template <class T>
void wy(T* W, T* U, const T* Tm, const T* K, const T* V, const T* beta, const Acc* gam, int64_t c,
        int64_t Dk, int64_t Dv) {
    for (int64_t i = 0; i < c; ++i) {
        T* wr = W + i * Dk;
        T* ur = U + i * Dv;
        for (int64_t l = 0; l < Dk; ++l) wr[l] = 0;
        for (int64_t l = 0; l < Dv; ++l) ur[l] = 0;
        for (int64_t j = 0; j <= i; ++j) {
            const T tb = Tm[i * c + j] * beta[j], tbk = tb * T(std::exp(gam[j]));
            const T *kr = K + j * Dk, *vr = V + j * Dv;
            for (int64_t l = 0; l < Dk; ++l) wr[l] += tbk * kr[l];
            for (int64_t l = 0; l < Dv; ++l) ur[l] += tb * vr[l];
        }
    }
}

// V' = U − W h, in place in U.
template <class T>
void new_values(T* U, const T* W, const T* h, int64_t c, int64_t Dk, int64_t Dv) {
    for (int64_t i = 0; i < c; ++i) {
        T* ur = U + i * Dv;
        for (int64_t kk = 0; kk < Dk; ++kk) {
            const T w = W[i * Dk + kk];
            const T* hr = h + kk * Dv;
            for (int64_t l = 0; l < Dv; ++l) ur[l] -= w * hr[l];
        }
    }
}

// h ← e^{γ_c} h + Σ_j e^{γ_c − γ_j} k_j v'_jᵀ
template <class T>
void advance_state(T* h, const T* K, const T* Vp, const Acc* gam, int64_t c, int64_t Dk,
                   int64_t Dv) {
    const Acc last = gam[c - 1];
    const T ec = T(std::exp(last));
    for (int64_t m = 0; m < Dk * Dv; ++m) h[m] *= ec;
    for (int64_t j = 0; j < c; ++j) {
        const T e = T(std::exp(last - gam[j]));
        const T* vr = Vp + j * Dv;
        for (int64_t kk = 0; kk < Dk; ++kk) {
            const T coef = e * K[j * Dk + kk];
            T* hr = h + kk * Dv;
            for (int64_t l = 0; l < Dv; ++l) hr[l] += coef * vr[l];
        }
    }
}

}  // namespace

void gdn_chunked(const Tensor& o, const Tensor& state, const Tensor& q, const Tensor& k,
                 const Tensor& v, const Tensor& g, const Tensor& beta, int64_t chunk) {
    dispatch_float("gdn_chunked", q.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t B = q.shape[0], Tn = q.shape[1], H = q.shape[2], Dk = q.shape[3];
        const int64_t Dv = v.shape[3], C = std::min<int64_t>(chunk, std::max<int64_t>(Tn, 1));
        const T *pq = q.as<T>(), *pk = k.as<T>(), *pv = v.as<T>();
        const T *pg = g.as<T>(), *pb = beta.as<T>();
        T* po = o.as<T>();
        T* ps = state.as<T>();
        parallel_for(B * H, Tn * (C + 4 * Dk) * (Dk + Dv), [&](int64_t bh) {
            const Head hd{bh / H, bh % H, Tn, H};
            T* h = ps + bh * Dk * Dv;                             // [Dk, Dv] in place
            T* K = scratch<T>(0, size_t(C * (2 * Dk + Dv + 1)));  // [C, Dk]
            T* Q = K + C * Dk;                                    // [C, Dk]
            T* V = Q + C * Dk;                                    // [C, Dv]
            T* bt = V + C * Dv;                                   // [C]
            T* A = scratch<T>(1, size_t(2 * C * C));              // [C, C]
            T* Tm = A + C * C;                                    // [C, C]
            T* W = scratch<T>(2, size_t(C * (Dk + Dv)));          // [C, Dk]
            T* U = W + C * Dk;                                    // [C, Dv] → V'
            Acc* gam = scratch<Acc>(3, size_t(C));                // [C]
            for (int64_t t0 = 0; t0 < Tn; t0 += C) {
                const int64_t c = std::min(C, Tn - t0);
                gather(K, pk, hd, t0, c, Dk);
                gather(Q, pq, hd, t0, c, Dk);
                gather(V, pv, hd, t0, c, Dv);
                for (int64_t i = 0; i < c; ++i) bt[i] = pb[hd.row(t0 + i)];
                cumulative_decay(gam, pg, hd, t0, c);
                ut_transform(Tm, A, K, bt, gam, c, Dk);
                wy(W, U, Tm, K, V, bt, gam, c, Dk, Dv);
                new_values(U, W, h, c, Dk, Dv);
                // O_i = e^{γ_i} hᵀ q_i + Σ_{j≤i} (q_i·k_j) Γ_ij v'_j
                for (int64_t i = 0; i < c; ++i) {
                    T* orow = po + hd.row(t0 + i) * Dv;
                    const T* qr = Q + i * Dk;
                    const T e = T(std::exp(gam[i]));
                    for (int64_t l = 0; l < Dv; ++l) orow[l] = 0;
                    for (int64_t kk = 0; kk < Dk; ++kk) {
                        const T qe = e * qr[kk];
                        const T* hr = h + kk * Dv;
                        for (int64_t l = 0; l < Dv; ++l) orow[l] += qe * hr[l];
                    }
                    for (int64_t j = 0; j <= i; ++j) {
                        const T p = dot(qr, K + j * Dk, Dk) * T(std::exp(gam[i] - gam[j]));
                        const T* vr = U + j * Dv;
                        for (int64_t l = 0; l < Dv; ++l) orow[l] += p * vr[l];
                    }
                }
                advance_state(h, K, U, gam, c, Dk, Dv);
            }
        });
    });
}

void gdn_chunked_backward(const Tensor& d_q, const Tensor& d_k, const Tensor& d_v,
                          const Tensor& d_g, const Tensor& d_beta, const Tensor& d_state0,
                          const Tensor& d_o, const Tensor& d_state_final, const Tensor& q,
                          const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                          const Tensor& state0, int64_t chunk) {
    dispatch_float("gdn_chunked_backward", q.dtype, [&](auto tag) {
        using T = decltype(tag);
        const int64_t B = q.shape[0], Tn = q.shape[1], H = q.shape[2], Dk = q.shape[3];
        const int64_t Dv = v.shape[3], M = Dk * Dv;
        const int64_t C = std::min<int64_t>(chunk, std::max<int64_t>(Tn, 1));
        const int64_t N = (Tn + C - 1) / C;
        const T *pq = q.as<T>(), *pk = k.as<T>(), *pv = v.as<T>();
        const T *pg = g.as<T>(), *pb = beta.as<T>(), *pdo = d_o.as<T>();
        const T* ps0 = state0.empty() ? nullptr : state0.as<T>();
        const T* pdsf = d_state_final.empty() ? nullptr : d_state_final.as<T>();
        T *dq = d_q.as<T>(), *dk = d_k.as<T>(), *dv = d_v.as<T>();
        T *dg = d_g.as<T>(), *db = d_beta.as<T>();
        T* pds0 = d_state0.empty() ? nullptr : d_state0.as<T>();
        parallel_for(B * H, Tn * (3 * C + 8 * Dk) * (Dk + Dv), [&](int64_t bh) {
            const Head hd{bh / H, bh % H, Tn, H};
            // Recomputed forward quantities for every chunk of this head.
            T* Hs = scratch<T>(0, size_t(N * M));      // [N, Dk, Dv] chunk-start states
            T* Vps = scratch<T>(1, size_t(Tn * Dv));   // [T, Dv] V'
            T* Ws = scratch<T>(2, size_t(Tn * Dk));    // [T, Dk] W
            T* Ts = scratch<T>(3, size_t(N * C * C));  // [N, C, C] T (ld c of the chunk)
            Acc* gamma = scratch<Acc>(4, size_t(Tn));  // [T] chunk-local cumulative decay
            // Per-chunk work.
            T* K = scratch<T>(5, size_t(C * (2 * Dk + 2 * Dv + 1)));
            T* Q = K + C * Dk;    // [C, Dk]
            T* V = Q + C * Dk;    // [C, Dv]
            T* dO = V + C * Dv;   // [C, Dv]
            T* bt = dO + C * Dv;  // [C]
            T* mats = scratch<T>(6, size_t(7 * C * C));
            T *A = mats, *G = A + C * C, *P = G + C * C, *dPv = P + C * C, *KK = dPv + C * C,
              *dT = KK + C * C, *Y = dT + C * C;  // [C, C] each
            T* work = scratch<T>(7, size_t(C * (4 * Dk + 2 * Dv) + Dk + 2 * M));
            T *dVp = work, *dQ = dVp + C * Dv, *dK = dQ + C * Dk, *dW = dK + C * Dk,
              *dBk = dW + C * Dk, *dBv = dBk + C * Dk, *hdo = dBv + C * Dv, *h = hdo + Dk,
              *dh = h + M;
            Acc* acc = scratch<Acc>(8, size_t(2 * C));
            Acc *dgam = acc, *dbeta = acc + C;

            // Forward recompute: T, W, V' and the state at every chunk start.
            if (ps0)
                std::memcpy(h, ps0 + bh * M, size_t(M) * sizeof(T));
            else
                std::fill(h, h + M, T(0));
            for (int64_t n = 0; n < N; ++n) {
                const int64_t t0 = n * C, c = std::min(C, Tn - t0);
                gather(K, pk, hd, t0, c, Dk);
                gather(V, pv, hd, t0, c, Dv);
                for (int64_t i = 0; i < c; ++i) bt[i] = pb[hd.row(t0 + i)];
                cumulative_decay(gamma + t0, pg, hd, t0, c);
                T* Tm = Ts + n * C * C;
                ut_transform(Tm, A, K, bt, gamma + t0, c, Dk);
                T* Vp = Vps + t0 * Dv;
                wy(Ws + t0 * Dk, Vp, Tm, K, V, bt, gamma + t0, c, Dk, Dv);
                new_values(Vp, Ws + t0 * Dk, h, c, Dk, Dv);
                std::memcpy(Hs + n * M, h, size_t(M) * sizeof(T));
                advance_state(h, K, Vp, gamma + t0, c, Dk, Dv);
            }

            if (pdsf)
                std::memcpy(dh, pdsf + bh * M, size_t(M) * sizeof(T));
            else
                std::fill(dh, dh + M, T(0));
            for (int64_t n = N - 1; n >= 0; --n) {
                const int64_t t0 = n * C, c = std::min(C, Tn - t0);
                gather(K, pk, hd, t0, c, Dk);
                gather(Q, pq, hd, t0, c, Dk);
                gather(V, pv, hd, t0, c, Dv);
                gather(dO, pdo, hd, t0, c, Dv);
                for (int64_t i = 0; i < c; ++i) bt[i] = pb[hd.row(t0 + i)];
                const Acc* gam = gamma + t0;
                const T* Tm = Ts + n * C * C;
                const T* Wc = Ws + t0 * Dk;
                const T* Vp = Vps + t0 * Dv;
                const T* Hn = Hs + n * M;  // state at the chunk start
                const Acc last = gam[c - 1];
                const T ec = T(std::exp(last));
                for (int64_t i = 0; i < c; ++i) dgam[i] = dbeta[i] = 0;

                // Masked decay ratios and the chunk's Gram matrices (lower triangle only).
                for (int64_t i = 0; i < c; ++i)
                    for (int64_t j = 0; j < c; ++j) {
                        const int64_t ij = i * c + j;
                        G[ij] = j <= i ? T(std::exp(gam[i] - gam[j])) : T(0);
                        KK[ij] = j < i ? dot(K + i * Dk, K + j * Dk, Dk) : T(0);
                        A[ij] = j < i ? bt[i] * KK[ij] * G[ij] : T(0);
                        P[ij] = j <= i ? dot(Q + i * Dk, K + j * Dk, Dk) * G[ij] : T(0);
                        dPv[ij] = j <= i ? dot(dO + i * Dv, Vp + j * Dv, Dv) : T(0);
                    }

                // dV'_j = Σ_{i≥j} P_ij dO_i + e^{γ_c − γ_j} dhᵀ k_j
                for (int64_t j = 0; j < c; ++j) {
                    T* r = dVp + j * Dv;
                    for (int64_t l = 0; l < Dv; ++l) r[l] = 0;
                    for (int64_t i = j; i < c; ++i) {
                        const T p = P[i * c + j];
                        const T* gr = dO + i * Dv;
                        for (int64_t l = 0; l < Dv; ++l) r[l] += p * gr[l];
                    }
                    const T e = T(std::exp(last - gam[j]));
                    for (int64_t kk = 0; kk < Dk; ++kk) {
                        const T ek = e * K[j * Dk + kk];
                        const T* hr = dh + kk * Dv;
                        for (int64_t l = 0; l < Dv; ++l) r[l] += ek * hr[l];
                    }
                }

                // dq_i = e^{γ_i} H dO_i + Σ_{j≤i} Γ_ij (dO_i·v'_j) k_j, and its γ terms.
                for (int64_t i = 0; i < c; ++i) {
                    const T e = T(std::exp(gam[i]));
                    T* r = dQ + i * Dk;
                    for (int64_t kk = 0; kk < Dk; ++kk)
                        hdo[kk] = dot(Hn + kk * Dv, dO + i * Dv, Dv);
                    Acc s = 0;
                    for (int64_t kk = 0; kk < Dk; ++kk) {
                        r[kk] = e * hdo[kk];
                        s += Acc(Q[i * Dk + kk]) * Acc(r[kk]);
                    }
                    dgam[i] += s;
                    for (int64_t j = 0; j <= i; ++j) {
                        const T coef = G[i * c + j] * dPv[i * c + j];
                        const T* kr = K + j * Dk;
                        for (int64_t kk = 0; kk < Dk; ++kk) r[kk] += coef * kr[kk];
                        if (j < i) {  // P_ij depends on γ_i − γ_j
                            const Acc rr = Acc(dPv[i * c + j]) * Acc(P[i * c + j]);
                            dgam[i] += rr;
                            dgam[j] -= rr;
                        }
                    }
                }

                // dk_j = Σ_{i≥j} Γ_ij (dO_i·v'_j) q_i + e^{γ_c − γ_j} dh v'_j, and its γ terms.
                {
                    Acc sh = 0;
                    for (int64_t m = 0; m < M; ++m) sh += Acc(Hn[m]) * Acc(dh[m]);
                    dgam[c - 1] += Acc(ec) * sh;
                }
                for (int64_t j = 0; j < c; ++j) {
                    T* r = dK + j * Dk;
                    for (int64_t kk = 0; kk < Dk; ++kk) r[kk] = 0;
                    for (int64_t i = j; i < c; ++i) {
                        const T coef = G[i * c + j] * dPv[i * c + j];
                        const T* qr = Q + i * Dk;
                        for (int64_t kk = 0; kk < Dk; ++kk) r[kk] += coef * qr[kk];
                    }
                    const T e = T(std::exp(last - gam[j]));
                    Acc z = 0;
                    for (int64_t kk = 0; kk < Dk; ++kk) {
                        const T s = e * dot(dh + kk * Dv, Vp + j * Dv, Dv);
                        r[kk] += s;
                        z += Acc(K[j * Dk + kk]) * Acc(s);
                    }
                    dgam[c - 1] += z;
                    dgam[j] -= z;
                }

                // V' = U − W H:  dW = −dV' Hᵀ  (dU = dV')
                for (int64_t i = 0; i < c; ++i)
                    for (int64_t kk = 0; kk < Dk; ++kk)
                        dW[i * Dk + kk] = -dot(dVp + i * Dv, Hn + kk * Dv, Dv);

                // dh at the chunk start: e^{γ_c} dh + (diag(e^γ) Q)ᵀ dO − Wᵀ dV'
                for (int64_t m = 0; m < M; ++m) dh[m] *= ec;
                for (int64_t i = 0; i < c; ++i) {
                    const T e = T(std::exp(gam[i]));
                    const T *gr = dO + i * Dv, *vr = dVp + i * Dv;
                    for (int64_t kk = 0; kk < Dk; ++kk) {
                        const T a = e * Q[i * Dk + kk], w = Wc[i * Dk + kk];
                        T* hr = dh + kk * Dv;
                        for (int64_t l = 0; l < Dv; ++l) hr[l] += a * gr[l] - w * vr[l];
                    }
                }

                // WY backward. W = T B_k, U = T B_v with B_k = diag(β e^γ) K, B_v = diag(β) V.
                // dB_k = Tᵀ dW, dB_v = Tᵀ dU;  dT = dW B_kᵀ + dU B_vᵀ (strict lower part suffices).
                for (int64_t j = 0; j < c; ++j) {
                    T* rk = dBk + j * Dk;
                    T* rv = dBv + j * Dv;
                    for (int64_t l = 0; l < Dk; ++l) rk[l] = 0;
                    for (int64_t l = 0; l < Dv; ++l) rv[l] = 0;
                    for (int64_t i = j; i < c; ++i) {
                        const T t = Tm[i * c + j];
                        const T *wr = dW + i * Dk, *ur = dVp + i * Dv;
                        for (int64_t l = 0; l < Dk; ++l) rk[l] += t * wr[l];
                        for (int64_t l = 0; l < Dv; ++l) rv[l] += t * ur[l];
                    }
                }
                for (int64_t i = 0; i < c; ++i)
                    for (int64_t j = 0; j < c; ++j)
                        dT[i * c + j] =
                            j < i
                                ? bt[j] * (T(std::exp(gam[j])) * dot(dW + i * Dk, K + j * Dk, Dk) +
                                           dot(dVp + i * Dv, V + j * Dv, Dv))
                                : T(0);
                // dA = −strict_lower(Tᵀ dT Tᵀ): Y = dT Tᵀ (rows a > column j needed), then
                // dA_ij = −Σ_{a≥i} T_ai Y_aj.
                for (int64_t a = 0; a < c; ++a)
                    for (int64_t j = 0; j < a; ++j) {
                        T s = 0;
                        for (int64_t b2 = 0; b2 <= j; ++b2) s += dT[a * c + b2] * Tm[j * c + b2];
                        Y[a * c + j] = s;
                    }
                // Reuse dT for dA (row i of dA needs rows a ≥ i of Y only).
                T* dA = dT;
                for (int64_t i = 0; i < c; ++i)
                    for (int64_t j = 0; j < i; ++j) {
                        T s = 0;
                        for (int64_t a = i; a < c; ++a) s += Tm[a * c + i] * Y[a * c + j];
                        dA[i * c + j] = -s;
                    }
                // From B_k, B_v and A_ij = β_i (k_i·k_j) Γ_ij:
                for (int64_t i = 0; i < c; ++i) {
                    const T e = T(std::exp(gam[i])), b = bt[i];
                    T* rk = dK + i * Dk;
                    const T *kr = K + i * Dk, *bk = dBk + i * Dk;
                    const Acc kb = Acc(dot(kr, bk, Dk));
                    for (int64_t l = 0; l < Dk; ++l) rk[l] += b * e * bk[l];
                    dbeta[i] += Acc(e) * kb + Acc(dot(V + i * Dv, dBv + i * Dv, Dv));
                    dgam[i] += Acc(b) * Acc(e) * kb;
                    for (int64_t j = 0; j < i; ++j) {
                        const T d = dA[i * c + j] * G[i * c + j];
                        const T* kj = K + j * Dk;
                        T* rj = dK + j * Dk;
                        for (int64_t l = 0; l < Dk; ++l) {
                            rk[l] += b * d * kj[l];
                            rj[l] += b * d * kr[l];
                        }
                        dbeta[i] += Acc(d) * Acc(KK[i * c + j]);
                        const Acc aa = Acc(dA[i * c + j]) * Acc(A[i * c + j]);
                        dgam[i] += aa;
                        dgam[j] -= aa;
                    }
                }

                // Outputs; dg is the reverse cumulative sum of dγ within the chunk.
                Acc run = 0;
                for (int64_t i = c - 1; i >= 0; --i) {
                    const int64_t r = hd.row(t0 + i);
                    run += dgam[i];
                    dg[r] = T(run);
                    db[r] = T(dbeta[i]);
                    std::memcpy(dq + r * Dk, dQ + i * Dk, size_t(Dk) * sizeof(T));
                    std::memcpy(dk + r * Dk, dK + i * Dk, size_t(Dk) * sizeof(T));
                    T* dvr = dv + r * Dv;
                    for (int64_t l = 0; l < Dv; ++l) dvr[l] = bt[i] * dBv[i * Dv + l];
                }
            }
            if (pds0) std::memcpy(pds0 + bh * M, dh, size_t(M) * sizeof(T));
        });
    });
}

}  // namespace olmo::cpu
