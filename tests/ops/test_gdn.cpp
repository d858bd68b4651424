// The gated delta rule. The recurrent form is checked against the matrix form of the spec
// (S_t = α_t S_{t−1}(I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ, o_t = S_t q_t) and its backward against
// finite differences; the chunked form is checked against the recurrent one (outputs, final states
// and every gradient) over sequence lengths around the chunk size, strong and weak decay, β up to
// 2, a non-zero initial state, several heads, B > 1 and the released head sizes 96/192.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "gradcheck.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

struct Shape {
    int64_t B, T, H, Dk, Dv;
};

// Random operands as the model produces them, in f64: q and k L2-normalised per head (q also
// scaled by Dk^-½), β ∈ (0, 2), log decays g from about −20 up to almost 0, a non-zero state.
struct Inputs {
    OwnedTensor q, k, v, g, beta, state0;

    Inputs(const Shape& s, uint64_t seed) {
        q = normal64({s.B, s.T, s.H, s.Dk}, seed);
        k = normal64({s.B, s.T, s.H, s.Dk}, seed + 1);
        v = normal64({s.B, s.T, s.H, s.Dv}, seed + 2);
        // Heads take turns: weak decay only (the state carries across many chunks), weak decay
        // with rare drops of about −20, and decays spread from −20 to almost 0.
        g = uniform64({s.B, s.T, s.H}, seed + 3, 0.0, 1.0);
        OwnedTensor spike = uniform64({s.B, s.T, s.H}, seed + 6, 0.0, 1.0);
        for (int64_t i = 0; i < g->numel(); ++i) {
            const double u = at(g, i);
            double x = -std::exp(-9.0 + 6.5 * u);  // −1.2e-4 .. −0.08
            if ((i % s.H) % 3 == 1 && at(spike, i) < 0.03) x = -20.0 * (0.8 + 0.2 * u);
            if ((i % s.H) % 3 == 2) x = -std::exp(-8.0 + 11.0 * u);  // −3.4e-4 .. −20
            g->as<double>()[i] = x;
        }
        beta = uniform64({s.B, s.T, s.H}, seed + 4, 0.0, 2.0);
        state0 = normal64({s.B, s.H, s.Dk, s.Dv}, seed + 5, 0.5);
        normalise(q, 1 / std::sqrt(double(s.Dk)), s.Dk);
        normalise(k, 1.0, s.Dk);
    }
    static void normalise(const Tensor& x, double scale, int64_t D) {
        double* p = x.as<double>();
        for (int64_t r = 0; r < x.numel() / D; ++r) {
            double ss = 0;
            for (int64_t d = 0; d < D; ++d) ss += p[r * D + d] * p[r * D + d];
            for (int64_t d = 0; d < D; ++d) p[r * D + d] *= scale / std::sqrt(ss + 1e-6);
        }
    }
    // The same values rounded to f32 (and the f32 tensors themselves).
    Inputs rounded() const {
        Inputs r = *this;
        for (OwnedTensor* t : {&r.q, &r.k, &r.v, &r.g, &r.beta, &r.state0}) *t = to_f64(to_f32(*t));
        return r;
    }
    Inputs(const Inputs& o)
        : q(clone(o.q)),
          k(clone(o.k)),
          v(clone(o.v)),
          g(clone(o.g)),
          beta(clone(o.beta)),
          state0(clone(o.state0)) {}
};

// Output and final state of one forward pass.
struct Result {
    OwnedTensor o, state;
};

Result run(const Inputs& in, DType dt, bool chunked, int64_t chunk = 64) {
    const Tensor& v = in.v;
    Result r{OwnedTensor(dt, v.dims()), convert(in.state0, dt)};
    OwnedTensor q = convert(in.q, dt), k = convert(in.k, dt), vv = convert(in.v, dt);
    OwnedTensor g = convert(in.g, dt), beta = convert(in.beta, dt);
    if (chunked)
        ops::gdn_chunked(r.o, r.state, q, k, vv, g, beta, chunk);
    else
        ops::gdn_recurrent(r.o, r.state, q, k, vv, g, beta);
    return r;
}

// Spec §2.6.7 matrix form with S [Dv, Dk]; returns o and the final h = Sᵀ.
Result matrix_form(const Inputs& in) {
    const Tensor& q = in.q;
    const int64_t B = q.shape[0], T = q.shape[1], H = q.shape[2], Dk = q.shape[3];
    const int64_t Dv = in.v->shape[3];
    Result r{OwnedTensor(DType::f64, {B, T, H, Dv}), OwnedTensor(DType::f64, {B, H, Dk, Dv})};
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h) {
            std::vector<double> S(Dv * Dk), N(Dv * Dk);
            for (int64_t i = 0; i < Dk; ++i)
                for (int64_t j = 0; j < Dv; ++j)
                    S[j * Dk + i] = at(in.state0, ((b * H + h) * Dk + i) * Dv + j);
            for (int64_t t = 0; t < T; ++t) {
                const int64_t row = (b * T + t) * H + h;
                const double alpha = std::exp(at(in.g, row)), be = at(in.beta, row);
                auto kk = [&](int64_t i) { return at(in.k, row * Dk + i); };
                // N = α S (I − β k kᵀ) + β v kᵀ
                for (int64_t j = 0; j < Dv; ++j) {
                    double sk = 0;
                    for (int64_t i = 0; i < Dk; ++i) sk += S[j * Dk + i] * kk(i);
                    for (int64_t i = 0; i < Dk; ++i)
                        N[j * Dk + i] = alpha * (S[j * Dk + i] - be * sk * kk(i)) +
                                        be * at(in.v, row * Dv + j) * kk(i);
                }
                S.swap(N);
                for (int64_t j = 0; j < Dv; ++j) {
                    double o = 0;
                    for (int64_t i = 0; i < Dk; ++i) o += S[j * Dk + i] * at(in.q, row * Dk + i);
                    r.o->as<double>()[row * Dv + j] = o;
                }
            }
            for (int64_t i = 0; i < Dk; ++i)
                for (int64_t j = 0; j < Dv; ++j)
                    r.state->as<double>()[((b * H + h) * Dk + i) * Dv + j] = S[j * Dk + i];
        }
    return r;
}

// Every gradient of L = Σ d_o ⊙ o + Σ d_sf ⊙ state_final, in f64.
struct Grads {
    OwnedTensor q, k, v, g, beta, state0;
};

Grads backward(const Inputs& in, const Tensor& d_o, const Tensor& d_sf, bool chunked,
               int64_t chunk = 64) {
    Grads d{OwnedTensor(DType::f64, in.q->dims()),    OwnedTensor(DType::f64, in.k->dims()),
            OwnedTensor(DType::f64, in.v->dims()),    OwnedTensor(DType::f64, in.g->dims()),
            OwnedTensor(DType::f64, in.beta->dims()), OwnedTensor(DType::f64, in.state0->dims())};
    if (chunked)
        ops::gdn_chunked_backward(d.q, d.k, d.v, d.g, d.beta, d.state0, d_o, d_sf, in.q, in.k, in.v,
                                  in.g, in.beta, in.state0, chunk);
    else
        ops::gdn_recurrent_backward(d.q, d.k, d.v, d.g, d.beta, d.state0, d_o, d_sf, in.q, in.k,
                                    in.v, in.g, in.beta, in.state0);
    return d;
}

void expect_grads_near(const Grads& a, const Grads& b, double tol, const std::string& what) {
    EXPECT_TRUE(near(a.q, b.q, tol)) << what << " d_q";
    EXPECT_TRUE(near(a.k, b.k, tol)) << what << " d_k";
    EXPECT_TRUE(near(a.v, b.v, tol)) << what << " d_v";
    EXPECT_TRUE(near(a.g, b.g, tol)) << what << " d_g";
    EXPECT_TRUE(near(a.beta, b.beta, tol)) << what << " d_beta";
    EXPECT_TRUE(near(a.state0, b.state0, tol)) << what << " d_state0";
}

std::string name(const Shape& s, int64_t chunk) {
    return cat("B=", s.B, " T=", s.T, " H=", s.H, " Dk=", s.Dk, " Dv=", s.Dv, " chunk=", chunk);
}

TEST(Gdn, RecurrentMatchesMatrixForm) {
    const Inputs in({2, 9, 3, 5, 7}, 10);
    const Result ref = matrix_form(in);
    const Result r = run(in, DType::f64, false);
    EXPECT_TRUE(near(r.o, ref.o, 1e-13));
    EXPECT_TRUE(near(r.state, ref.state, 1e-13));
}

TEST(Gdn, RecurrentBackwardMatchesFiniteDifferences) {
    const Shape s{2, 6, 2, 3, 4};
    Inputs in(s, 20);
    OwnedTensor d_o = normal64({s.B, s.T, s.H, s.Dv}, 26),
                d_sf = normal64({s.B, s.H, s.Dk, s.Dv}, 27);
    auto loss = [&] {
        const Result r = run(in, DType::f64, false);
        return dot(r.o, d_o) + dot(r.state, d_sf);
    };
    const Grads d = backward(in, d_o, d_sf, false);
    const Grads fd{numeric_grad(in.q, loss),    numeric_grad(in.k, loss),
                   numeric_grad(in.v, loss),    numeric_grad(in.g, loss),
                   numeric_grad(in.beta, loss), numeric_grad(in.state0, loss)};
    expect_grads_near(d, fd, kGradTol, "recurrent vs finite differences");
}

TEST(Gdn, ChunkedBackwardMatchesFiniteDifferences) {
    const Shape s{2, 7, 2, 3, 4};
    Inputs in(s, 30);
    OwnedTensor d_o = normal64({s.B, s.T, s.H, s.Dv}, 36),
                d_sf = normal64({s.B, s.H, s.Dk, s.Dv}, 37);
    for (int64_t chunk : {3, 64}) {
        auto loss = [&] {
            const Result r = run(in, DType::f64, true, chunk);
            return dot(r.o, d_o) + dot(r.state, d_sf);
        };
        const Grads d = backward(in, d_o, d_sf, true, chunk);
        const Grads fd{numeric_grad(in.q, loss),    numeric_grad(in.k, loss),
                       numeric_grad(in.v, loss),    numeric_grad(in.g, loss),
                       numeric_grad(in.beta, loss), numeric_grad(in.state0, loss)};
        expect_grads_near(d, fd, kGradTol,
                          cat("chunked (chunk ", chunk, ") vs finite differences"));
    }
}

// Chunked forward, f64 and f32, against the f64 recurrence on the same (f32-representable) values.
void check_chunked_forward(const Shape& s, int64_t chunk, uint64_t seed) {
    const Inputs in = Inputs(s, seed).rounded();
    const Result ref = run(in, DType::f64, false);
    const Result c64 = run(in, DType::f64, true, chunk);
    EXPECT_TRUE(near(c64.o, ref.o, 1e-10)) << name(s, chunk) << " f64 o";
    EXPECT_TRUE(near(c64.state, ref.state, 1e-10)) << name(s, chunk) << " f64 state";
    const Result c32 = run(in, DType::f32, true, chunk);
    EXPECT_TRUE(near(c32.o, ref.o, 1e-5)) << name(s, chunk) << " f32 o";
    EXPECT_TRUE(near(c32.state, ref.state, 1e-5)) << name(s, chunk) << " f32 state";
    const Result r32 = run(in, DType::f32, false);
    EXPECT_TRUE(near(r32.o, ref.o, 1e-5)) << name(s, chunk) << " f32 recurrent o";
}

TEST(Gdn, ChunkedForwardMatchesRecurrent) {
    for (int64_t T : {1, 2, 3, 63, 64, 65, 200})
        check_chunked_forward({2, T, 3, 16, 32}, 64, 40 + T);
}

TEST(Gdn, ChunkedForwardOtherChunkSizes) {
    for (int64_t chunk : {1, 7, 16, 32})
        check_chunked_forward({2, 50, 2, 8, 12}, chunk, 50 + chunk);
}

TEST(Gdn, ChunkedForwardReleasedHeadSizes) {
    check_chunked_forward({1, 65, 2, 96, 192}, 64, 60);
    check_chunked_forward({2, 200, 1, 96, 192}, 64, 61);
}

void check_chunked_backward(const Shape& s, int64_t chunk, uint64_t seed) {
    const Inputs in(s, seed);
    OwnedTensor d_o = normal64({s.B, s.T, s.H, s.Dv}, seed + 7);
    OwnedTensor d_sf = normal64({s.B, s.H, s.Dk, s.Dv}, seed + 8);
    const Grads ref = backward(in, d_o, d_sf, false);
    const Grads d = backward(in, d_o, d_sf, true, chunk);
    expect_grads_near(d, ref, 1e-10, name(s, chunk));
}

TEST(Gdn, ChunkedBackwardMatchesRecurrent) {
    for (int64_t T : {1, 63, 64, 65, 200}) check_chunked_backward({2, T, 3, 16, 32}, 64, 70 + T);
    check_chunked_backward({2, 100, 2, 8, 12}, 16, 80);
}

TEST(Gdn, ChunkedBackwardReleasedHeadSizes) {
    check_chunked_backward({1, 65, 2, 96, 192}, 64, 90);
}

TEST(Gdn, EmptyStatesMeanZeros) {
    const Shape s{1, 10, 2, 4, 6};
    Inputs in(s, 100);
    in.state0.fill(0.0f);
    OwnedTensor d_o = normal64({s.B, s.T, s.H, s.Dv}, 101), d_sf = zeros({s.B, s.H, s.Dk, s.Dv});
    for (bool chunked : {false, true}) {
        const Grads full = backward(in, d_o, d_sf, chunked, 4);
        Grads d = backward(in, d_o, d_sf, chunked, 4);  // overwritten below with empties
        if (chunked)
            ops::gdn_chunked_backward(d.q, d.k, d.v, d.g, d.beta, Tensor(), d_o, Tensor(), in.q,
                                      in.k, in.v, in.g, in.beta, Tensor(), 4);
        else
            ops::gdn_recurrent_backward(d.q, d.k, d.v, d.g, d.beta, Tensor(), d_o, Tensor(), in.q,
                                        in.k, in.v, in.g, in.beta, Tensor());
        d.state0 = clone(full.state0);
        expect_grads_near(d, full, 0, chunked ? "chunked" : "recurrent");
    }
}

TEST(Gdn, RejectsBadArguments) {
    const Shape s{1, 4, 2, 3, 5};
    const Inputs in(s, 110);
    OwnedTensor o(DType::f64, {1, 4, 2, 5}), state = clone(in.state0);
    OwnedTensor bad_state(DType::f64, {1, 2, 5, 3});
    EXPECT_THROW(ops::gdn_recurrent(o, bad_state, in.q, in.k, in.v, in.g, in.beta), Error);
    OwnedTensor bad_v(DType::f64, {1, 3, 2, 5});
    EXPECT_THROW(ops::gdn_chunked(o, state, in.q, in.k, bad_v, in.g, in.beta), Error);
    OwnedTensor g32 = to_f32(in.g);
    EXPECT_THROW(ops::gdn_chunked(o, state, in.q, in.k, in.v, g32, in.beta), Error);
    EXPECT_THROW(ops::gdn_chunked(o, state, in.q, in.k, in.v, in.g, in.beta, 0), Error);
    OwnedTensor dq(DType::f64, {1, 4, 2, 3}), dk(DType::f64, {1, 4, 2, 3}),
        dv(DType::f64, {1, 4, 2, 5});
    OwnedTensor dg(DType::f64, {1, 4, 2}), db(DType::f64, {1, 4, 3});
    EXPECT_THROW(ops::gdn_recurrent_backward(dq, dk, dv, dg, db, Tensor(), o, Tensor(), in.q, in.k,
                                             in.v, in.g, in.beta, Tensor()),
                 Error);
}

}  // namespace
}  // namespace olmo::testing
