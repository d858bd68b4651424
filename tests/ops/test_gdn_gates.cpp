// GDN gates: g = −exp(A_log)·softplus(a + dt_bias) with PyTorch's softplus threshold, β = s·σ(b),
// and the backward (including the accumulated A_log and dt_bias gradients) by finite differences.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

TEST(GdnGates, MatchFormula) {
    const int64_t N = 6, H = 3;
    OwnedTensor a = normal64({N, H}, 1, 8.0), b = normal64({N, H}, 2, 3.0);
    a->as<double>()[0] = 25.0;  // softplus(x) = x above 20
    OwnedTensor A_log = uniform64({H}, 3, 0.0, 2.7), dt_bias = normal64({H}, 4);
    for (bool neg : {false, true}) {
        OwnedTensor g(DType::f64, {N, H}), beta(DType::f64, {N, H});
        ops::gdn_gates(g, beta, a, b, A_log, dt_bias, neg);
        for (int64_t n = 0; n < N; ++n)
            for (int64_t h = 0; h < H; ++h) {
                const int64_t i = n * H + h;
                const double x = at(a, i) + at(dt_bias, h);
                const double sp = x > 20 ? x : std::log(1 + std::exp(x));
                EXPECT_NEAR(at(g, i), -std::exp(at(A_log, h)) * sp,
                            1e-13 * (1 + std::fabs(at(g, i))));
                EXPECT_NEAR(at(beta, i), (neg ? 2.0 : 1.0) / (1 + std::exp(-at(b, i))), 1e-15);
            }
    }
}

TEST(GdnGates, BackwardMatchesFiniteDifferences) {
    const int64_t N = 5, H = 2;
    OwnedTensor a = normal64({N, H}, 5, 3.0), b = normal64({N, H}, 6, 2.0);
    OwnedTensor A_log = uniform64({H}, 7, 0.0, 2.0), dt_bias = normal64({H}, 8);
    OwnedTensor dg = normal64({N, H}, 9), dbeta = normal64({N, H}, 10);
    OwnedTensor g(DType::f64, {N, H}), beta(DType::f64, {N, H});
    auto loss = [&] {
        ops::gdn_gates(g, beta, a, b, A_log, dt_bias, true);
        return dot(g, dg) + dot(beta, dbeta);
    };
    OwnedTensor da(DType::f64, {N, H}), db(DType::f64, {N, H});
    OwnedTensor dA = normal64({H}, 11), dA0 = clone(dA), ddt = normal64({H}, 12), ddt0 = clone(ddt);
    ops::gdn_gates_backward(da, db, dA, ddt, dg, dbeta, a, b, A_log, dt_bias, true);
    EXPECT_TRUE(near(da, numeric_grad(a, loss), kGradTol));
    EXPECT_TRUE(near(db, numeric_grad(b, loss), kGradTol));
    EXPECT_TRUE(near(minus(dA, dA0), numeric_grad(A_log, loss), kGradTol));
    EXPECT_TRUE(near(minus(ddt, ddt0), numeric_grad(dt_bias, loss), kGradTol));
}

TEST(GdnGates, RejectsBadArguments) {
    OwnedTensor a(DType::f32, {4, 3}), b(DType::f32, {4, 3}), A(DType::f32, {2}),
        dt(DType::f32, {2});
    OwnedTensor g(DType::f32, {4, 3}), beta(DType::f32, {4, 3});
    EXPECT_THROW(ops::gdn_gates(g, beta, a, b, A, dt, true), Error);
    OwnedTensor A3(DType::f32, {3}), dt3(DType::f32, {3}), g64(DType::f64, {4, 3});
    EXPECT_THROW(ops::gdn_gates(g64, beta, a, b, A3, dt3, true), Error);
}

}  // namespace
}  // namespace olmo::testing
