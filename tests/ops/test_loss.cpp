// Cross-entropy: mean over the non-ignored rows, z-loss, the gradient by finite differences, i32
// and i64 targets, d_logits written over the logits, and target range checks.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

double naive_loss(const Tensor& logits, const Tensor& targets, double z, int64_t ignore,
                  int64_t* count) {
    const int64_t V = logits.shape[1], N = logits.shape[0];
    double total = 0;
    int64_t n_counted = 0;
    for (int64_t n = 0; n < N; ++n) {
        const int64_t t =
            targets.dtype == DType::i64 ? targets.as<int64_t>()[n] : targets.as<int32_t>()[n];
        if (t == ignore) continue;
        double sum = 0;
        for (int64_t v = 0; v < V; ++v) sum += std::exp(at(logits, n * V + v));
        const double lse = std::log(sum);
        total += lse - at(logits, n * V + t) + z * lse * lse;
        ++n_counted;
    }
    *count = n_counted;
    return total / double(n_counted);
}

TEST(Loss, CrossEntropyMatchesFormula) {
    for (DType tdt : {DType::i32, DType::i64}) {
        OwnedTensor logits = normal64({5, 9}, 1, 3.0);
        OwnedTensor targets = index_tensor({5}, {3, -100, 8, 0, 3}, tdt);
        for (float z : {0.0f, 1e-2f}) {
            int64_t count = 0, ref_count = 0;
            const double loss = ops::cross_entropy(Tensor(), logits, targets, z, -100, &count);
            const double ref = naive_loss(logits, targets, z, -100, &ref_count);
            EXPECT_EQ(count, 4);
            EXPECT_EQ(ref_count, 4);
            EXPECT_NEAR(loss, ref, 1e-13 * std::fabs(ref));
            OwnedTensor l32 = to_f32(logits);
            EXPECT_NEAR(ops::cross_entropy(Tensor(), l32, targets, z, -100), ref,
                        1e-6 * std::fabs(ref));
        }
    }
}

TEST(Loss, GradientMatchesFiniteDifferences) {
    OwnedTensor logits = normal64({4, 7}, 2, 2.0);
    OwnedTensor targets = index_tensor({4}, {6, 1, 7, 1});  // row 2 ignored (ignore_index 7)
    for (float z : {0.0f, 0.05f}) {
        auto loss = [&] { return ops::cross_entropy(Tensor(), logits, targets, z, 7); };
        OwnedTensor d(DType::f64, {4, 7});
        ops::cross_entropy(d, logits, targets, z, 7);
        EXPECT_TRUE(near(d, numeric_grad(logits, loss), kGradTol)) << "z " << z;
        for (int64_t v = 0; v < 7; ++v) EXPECT_EQ(at(d, 2 * 7 + v), 0.0);
        // In place: the gradient written over the logits themselves.
        OwnedTensor l2 = clone(logits);
        const double a = ops::cross_entropy(l2, l2, targets, z, 7);
        EXPECT_EQ(a, loss());
        EXPECT_TRUE(near(l2, d, 1e-15));
    }
}

TEST(Loss, RejectsBadArguments) {
    OwnedTensor logits(DType::f32, {3, 5});
    logits.fill(0.0f);
    EXPECT_THROW(ops::cross_entropy(Tensor(), logits, index_tensor({3}, {0, 5, 1}), 0, -100),
                 Error);
    EXPECT_THROW(ops::cross_entropy(Tensor(), logits, index_tensor({3}, {0, -2, 1}), 0, -100),
                 Error);
    EXPECT_THROW(ops::cross_entropy(Tensor(), logits, index_tensor({2}, {0, 1}), 0, -100), Error);
    OwnedTensor d(DType::f32, {3, 4});
    EXPECT_THROW(ops::cross_entropy(d, logits, index_tensor({3}, {0, 1, 2}), 0, -100), Error);
}

}  // namespace
}  // namespace olmo::testing
