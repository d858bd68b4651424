// SwiGLU and the GVA head repeat: forward against the formula, backward against finite differences.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

TEST(Mlp, SwigluMatchesFormulaAndFiniteDifferences) {
    OwnedTensor gate = normal64({3, 7}, 1, 4.0), up = normal64({3, 7}, 2), dy = normal64({3, 7}, 3);
    OwnedTensor out(DType::f64, {3, 7});
    ops::swiglu(out, gate, up);
    for (int64_t i = 0; i < 21; ++i) {
        const double g = at(gate, i);
        EXPECT_NEAR(at(out, i), g / (1 + std::exp(-g)) * at(up, i), 1e-15 * (1 + std::fabs(g)));
    }
    auto loss = [&] {
        ops::swiglu(out, gate, up);
        return dot(out, dy);
    };
    OwnedTensor dg(DType::f64, {3, 7}), du(DType::f64, {3, 7});
    ops::swiglu_backward(dg, du, dy, gate, up);
    EXPECT_TRUE(near(dg, numeric_grad(gate, loss), kGradTol));
    EXPECT_TRUE(near(du, numeric_grad(up, loss), kGradTol));
    OwnedTensor bad(DType::f64, {3, 6});
    EXPECT_THROW(ops::swiglu(out, gate, bad), Error);
}

TEST(Heads, RepeatInterleavesAndBackwardSums) {
    const int64_t N = 3, Hk = 2, rep = 3, D = 4;
    OwnedTensor x = normal64({N, Hk, D}, 4), dy = normal64({N, Hk * rep, D}, 5);
    OwnedTensor out(DType::f64, {N, Hk * rep, D});
    ops::repeat_heads(out, x);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t h = 0; h < Hk * rep; ++h)
            for (int64_t d = 0; d < D; ++d)
                EXPECT_EQ(at(out, (n * Hk * rep + h) * D + d), at(x, (n * Hk + h / rep) * D + d));
    auto loss = [&] {
        ops::repeat_heads(out, x);
        return dot(out, dy);
    };
    OwnedTensor dx(DType::f64, {N, Hk, D});
    ops::repeat_heads_backward(dx, dy);
    EXPECT_TRUE(near(dx, numeric_grad(x, loss), kGradTol));
    OwnedTensor bad(DType::f64, {N, 5, D});
    EXPECT_THROW(ops::repeat_heads(bad, x), Error);
}

}  // namespace
}  // namespace olmo::testing
