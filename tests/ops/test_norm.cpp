// RMSNorm, gated RMSNorm and L2 norm: forward against the formulas written out here, backward
// against finite differences in double (inputs and weights), f32 against f64, argument checks.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

double silu(double x) {
    return x / (1 + std::exp(-x));
}

TEST(Norm, RmsnormMatchesFormula) {
    const float eps = 1e-6f;
    OwnedTensor x = normal64({3, 2, 8}, 1), w = uniform64({8}, 2, 0.5, 1.5);
    OwnedTensor ref(DType::f64, {3, 2, 8});
    for (int64_t n = 0; n < 6; ++n) {
        double ss = 0;
        for (int64_t c = 0; c < 8; ++c) ss += std::pow(at(x, n * 8 + c), 2);
        const double r = 1 / std::sqrt(ss / 8 + eps);
        for (int64_t c = 0; c < 8; ++c)
            ref->as<double>()[n * 8 + c] = at(w, c) * at(x, n * 8 + c) * r;
    }
    OwnedTensor out(DType::f64, {3, 2, 8});
    ops::rmsnorm(out, x, w, eps);
    EXPECT_TRUE(near(out, ref, 1e-14));
    OwnedTensor x32 = to_f32(x), w32 = to_f32(w), out32(DType::f32, {3, 2, 8});
    ops::rmsnorm(out32, x32, w32, eps);
    EXPECT_TRUE(near(out32, ref, 1e-6));
    ops::rmsnorm(x32, x32, w32, eps);  // in place
    EXPECT_TRUE(near(x32, out32, 0));
}

TEST(Norm, RmsnormBackwardMatchesFiniteDifferences) {
    const float eps = 1e-5f;
    OwnedTensor x = normal64({5, 7}, 3), w = uniform64({7}, 4, 0.5, 1.5), dy = normal64({5, 7}, 5);
    OwnedTensor out(DType::f64, {5, 7});
    auto loss = [&] {
        ops::rmsnorm(out, x, w, eps);
        return dot(out, dy);
    };
    OwnedTensor dx(DType::f64, {5, 7}), dw = uniform64({7}, 6), dw0 = clone(dw);
    ops::rmsnorm_backward(dx, dw, dy, x, w, eps);
    EXPECT_TRUE(near(dx, numeric_grad(x, loss), kGradTol));
    EXPECT_TRUE(near(minus(dw, dw0), numeric_grad(w, loss), kGradTol));
}

TEST(Norm, GatedRmsnormMatchesFormulaAndFiniteDifferences) {
    const float eps = 1e-5f;
    OwnedTensor x = normal64({4, 6}, 7), z = normal64({4, 6}, 8, 2.0);
    OwnedTensor w = uniform64({6}, 9, 0.5, 1.5), dy = normal64({4, 6}, 10);
    OwnedTensor out(DType::f64, {4, 6}), ref(DType::f64, {4, 6});
    for (int64_t n = 0; n < 4; ++n) {
        double ss = 0;
        for (int64_t c = 0; c < 6; ++c) ss += std::pow(at(x, n * 6 + c), 2);
        const double r = 1 / std::sqrt(ss / 6 + eps);
        for (int64_t c = 0; c < 6; ++c) {
            const int64_t i = n * 6 + c;
            ref->as<double>()[i] = at(w, c) * at(x, i) * r * silu(at(z, i));
        }
    }
    ops::rmsnorm_gated(out, x, z, w, eps);
    EXPECT_TRUE(near(out, ref, 1e-14));
    auto loss = [&] {
        ops::rmsnorm_gated(out, x, z, w, eps);
        return dot(out, dy);
    };
    OwnedTensor dx(DType::f64, {4, 6}), dz(DType::f64, {4, 6});
    OwnedTensor dw = uniform64({6}, 11), dw0 = clone(dw);
    ops::rmsnorm_gated_backward(dx, dz, dw, dy, x, z, w, eps);
    EXPECT_TRUE(near(dx, numeric_grad(x, loss), kGradTol));
    EXPECT_TRUE(near(dz, numeric_grad(z, loss), kGradTol));
    EXPECT_TRUE(near(minus(dw, dw0), numeric_grad(w, loss), kGradTol));
}

TEST(Norm, L2normMatchesFormulaAndFiniteDifferences) {
    const float eps = 1e-6f, scale = 0.35f;
    OwnedTensor x = normal64({6, 5}, 12), dy = normal64({6, 5}, 13);
    for (int64_t c = 0; c < 5; ++c) x->as<double>()[c] = 1e-4 * (c + 1);  // a near-zero row
    OwnedTensor out(DType::f64, {6, 5}), ref(DType::f64, {6, 5});
    for (int64_t n = 0; n < 6; ++n) {
        double ss = 0;
        for (int64_t c = 0; c < 5; ++c) ss += std::pow(at(x, n * 5 + c), 2);
        for (int64_t c = 0; c < 5; ++c)
            ref->as<double>()[n * 5 + c] = double(scale) * at(x, n * 5 + c) / std::sqrt(ss + eps);
    }
    ops::l2norm(out, x, eps, scale);
    EXPECT_TRUE(near(out, ref, 1e-14));
    auto loss = [&] {
        ops::l2norm(out, x, eps, scale);
        return dot(out, dy);
    };
    OwnedTensor dx(DType::f64, {6, 5});
    ops::l2norm_backward(dx, dy, x, eps, scale);
    EXPECT_TRUE(near(dx, numeric_grad(x, loss, 1e-8), kGradTol));
}

TEST(Norm, RejectsBadArguments) {
    OwnedTensor x(DType::f32, {2, 5}), w(DType::f32, {4}), out(DType::f32, {2, 5});
    try {
        ops::rmsnorm(out, x, w, 1e-6f);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("[rmsnorm] x [2, 5] vs w [4]"), std::string::npos)
            << e.what();
    }
    OwnedTensor w5(DType::f32, {5}), z(DType::f32, {2, 4});
    EXPECT_THROW(ops::rmsnorm_gated(out, x, z, w5, 1e-5f), Error);
    OwnedTensor dw64(DType::f64, {5});
    EXPECT_THROW(ops::rmsnorm_backward(out, dw64, out, x, w5, 1e-6f), Error);
    OwnedTensor small(DType::f32, {2, 4});
    EXPECT_THROW(ops::l2norm(small, x, 1e-6f, 1.0f), Error);
}

}  // namespace
}  // namespace olmo::testing
