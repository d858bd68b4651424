// Causal depthwise conv + SiLU: the formula, processing a sequence in two pieces through the
// rolling state equals one piece (including a first piece shorter than W − 1), and the backward
// matches finite differences.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

// y[b, t, c] = silu(Σ_j w[c, j] x[b, t − (W−1) + j, c]), zero left padding.
OwnedTensor naive_conv(const Tensor& x, const Tensor& w) {
    const int64_t B = x.shape[0], T = x.shape[1], C = x.shape[2], W = w.shape[1];
    OwnedTensor out(DType::f64, {B, T, C});
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t)
            for (int64_t c = 0; c < C; ++c) {
                double s = 0;
                for (int64_t j = 0; j < W; ++j) {
                    const int64_t tau = t - (W - 1) + j;
                    if (tau >= 0) s += at(w, c * W + j) * at(x, (b * T + tau) * C + c);
                }
                out->as<double>()[(b * T + t) * C + c] = s / (1 + std::exp(-s));
            }
    return out;
}

TEST(Conv, MatchesFormula) {
    OwnedTensor x = normal64({2, 7, 5}, 1), w = normal64({5, 4}, 2);
    OwnedTensor out(DType::f64, {2, 7, 5});
    ops::conv1d_silu(out, x, w, Tensor());
    EXPECT_TRUE(near(out, naive_conv(x, w), 1e-14));
}

TEST(Conv, TwoPiecesWithStateEqualOnePiece) {
    const int64_t B = 2, T = 9, C = 6, W = 4;
    OwnedTensor x = random_normal({B, T, C}, 3), w = random_normal({C, W}, 4);
    OwnedTensor whole(DType::f32, {B, T, C});
    ops::conv1d_silu(whole, x, w, Tensor());
    for (int64_t split : {1, 2, 5}) {
        OwnedTensor state(DType::f32, {B, W - 1, C});
        state.fill(0.0f);
        OwnedTensor x1(DType::f32, {B, split, C}), x2(DType::f32, {B, T - split, C});
        for (int64_t b = 0; b < B; ++b) {
            copy_tensor(x1->select0(b), x->select0(b).narrow0(0, split));
            copy_tensor(x2->select0(b), x->select0(b).narrow0(split, T - split));
        }
        OwnedTensor y1(DType::f32, {B, split, C}), y2(DType::f32, {B, T - split, C});
        ops::conv1d_silu(y1, x1, w, state);
        ops::conv1d_silu(y2, x2, w, state);
        for (int64_t b = 0; b < B; ++b) {
            EXPECT_TRUE(near(y1->select0(b), whole->select0(b).narrow0(0, split), 1e-6))
                << "split " << split;
            EXPECT_TRUE(near(y2->select0(b), whole->select0(b).narrow0(split, T - split), 1e-6))
                << "split " << split;
            // The state holds the last W − 1 inputs, oldest first.
            EXPECT_TRUE(near(state->select0(b), x->select0(b).narrow0(T - (W - 1), W - 1), 0));
        }
    }
}

TEST(Conv, ShortFirstPieceKeepsZeroPaddedState) {
    const int64_t B = 1, C = 3, W = 4;
    OwnedTensor x = random_normal({B, 5, C}, 5), w = random_normal({C, W}, 6);
    OwnedTensor whole(DType::f32, {B, 5, C});
    ops::conv1d_silu(whole, x, w, Tensor());
    OwnedTensor state(DType::f32, {B, W - 1, C});
    state.fill(0.0f);
    // Token by token: every piece is shorter than W − 1.
    for (int64_t t = 0; t < 5; ++t) {
        OwnedTensor xt(DType::f32, {B, 1, C}), yt(DType::f32, {B, 1, C});
        copy_tensor(xt, x->narrow0(0, 1).select0(0).narrow0(t, 1).reshape({B, 1, C}));
        ops::conv1d_silu(yt, xt, w, state);
        EXPECT_TRUE(near(yt, whole->select0(0).narrow0(t, 1).reshape({B, 1, C}), 1e-6)) << t;
        if (t == 0) {  // the state is [0, 0, x_0]
            for (int64_t c = 0; c < C; ++c) {
                EXPECT_EQ(state.f32()[c], 0.0f);
                EXPECT_EQ(state.f32()[C + c], 0.0f);
                EXPECT_EQ(state.f32()[2 * C + c], x.f32()[c]);
            }
        }
    }
}

TEST(Conv, BackwardMatchesFiniteDifferences) {
    for (int64_t W : {1, 3, 4}) {
        OwnedTensor x = normal64({2, 5, 3}, 7), w = normal64({3, W}, 8),
                    dy = normal64({2, 5, 3}, 9);
        OwnedTensor out(DType::f64, {2, 5, 3});
        auto loss = [&] {
            ops::conv1d_silu(out, x, w, Tensor());
            return dot(out, dy);
        };
        OwnedTensor dx(DType::f64, {2, 5, 3}), dw = normal64({3, W}, 10), dw0 = clone(dw);
        ops::conv1d_silu_backward(dx, dw, dy, x, w);
        EXPECT_TRUE(near(dx, numeric_grad(x, loss), kGradTol)) << "W " << W;
        EXPECT_TRUE(near(minus(dw, dw0), numeric_grad(w, loss), kGradTol)) << "W " << W;
    }
}

TEST(Conv, RejectsBadArguments) {
    OwnedTensor x(DType::f32, {2, 5, 3}), out(DType::f32, {2, 5, 3}), w(DType::f32, {4, 4});
    EXPECT_THROW(ops::conv1d_silu(out, x, w, Tensor()), Error);
    OwnedTensor w3(DType::f32, {3, 4}), state(DType::f32, {2, 4, 3});
    EXPECT_THROW(ops::conv1d_silu(out, x, w3, state), Error);
}

}  // namespace
}  // namespace olmo::testing
