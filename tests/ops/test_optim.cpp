// Optimiser ops: the sum of squares (f64 accumulation, independent of threading) and AdamW steps
// against the update written out in double here.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

TEST(Optim, SumSquares) {
    OwnedTensor x = random_normal({1000, 37}, 1);  // several blocks, a ragged tail
    double ref = 0;
    for (int64_t i = 0; i < x->numel(); ++i) ref += double(x.f32()[i]) * double(x.f32()[i]);
    EXPECT_NEAR(ops::sum_squares(x), ref, 1e-12 * ref);
    OwnedTensor x64 = to_f64(x);
    EXPECT_NEAR(ops::sum_squares(x64), ref, 1e-12 * ref);
}

TEST(Optim, AdamwMatchesUpdateFormula) {
    const int64_t n = 5000;
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    OwnedTensor p = random_normal({n}, 2), m(DType::f32, {n}), v(DType::f32, {n});
    m.fill(0.0f);
    v.fill(0.0f);
    OwnedTensor rp = to_f64(p), rm = zeros({n}), rv = zeros({n});
    for (int64_t step = 1; step <= 3; ++step) {
        OwnedTensor g = random_normal({n}, 10 + step);
        ops::adamw(p, m, v, g, lr, b1, b2, eps, wd, step, gs);
        const double bc1 = 1 - std::pow(double(b1), step), bc2 = 1 - std::pow(double(b2), step);
        for (int64_t i = 0; i < n; ++i) {
            double& pi = rp->as<double>()[i];
            double& mi = rm->as<double>()[i];
            double& vi = rv->as<double>()[i];
            const double gi = double(gs) * g.f32()[i];
            pi *= 1 - double(lr) * double(wd);
            mi = double(b1) * mi + (1 - double(b1)) * gi;
            vi = double(b2) * vi + (1 - double(b2)) * gi * gi;
            pi -= double(lr) / bc1 * mi / (std::sqrt(vi / bc2) + double(eps));
        }
        EXPECT_TRUE(near(m, rm, 1e-6)) << "step " << step;
        EXPECT_TRUE(near(v, rv, 1e-6)) << "step " << step;
        EXPECT_TRUE(near(p, rp, 1e-6)) << "step " << step;
    }
    OwnedTensor short_m(DType::f32, {n - 1});
    EXPECT_THROW(ops::adamw(p, short_m, v, v, lr, b1, b2, eps, wd, 1, 1.0f), Error);
    EXPECT_THROW(ops::adamw(p, m, v, v, lr, b1, b2, eps, wd, 0, 1.0f), Error);
}

}  // namespace
}  // namespace olmo::testing
