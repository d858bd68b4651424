// Embedding lookup and its scatter-add backward (repeated ids add up), i32 and i64 ids, range
// checks.
#include <gtest/gtest.h>

#include "gradcheck.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

TEST(Embedding, LooksUpRows) {
    for (DType idt : {DType::i32, DType::i64}) {
        OwnedTensor table = random_uniform({7, 5}, 1);
        OwnedTensor ids = index_tensor({2, 3}, {6, 0, 3, 3, 1, 6}, idt);
        OwnedTensor out(DType::f32, {2, 3, 5});
        ops::embedding(out, ids, table);
        const int64_t expect[6] = {6, 0, 3, 3, 1, 6};
        for (int64_t n = 0; n < 6; ++n)
            for (int64_t c = 0; c < 5; ++c)
                EXPECT_EQ(out.f32()[n * 5 + c], table.f32()[expect[n] * 5 + c]);
    }
}

TEST(Embedding, BackwardMatchesFiniteDifferences) {
    OwnedTensor table = uniform64({6, 4}, 2), dy = uniform64({5, 4}, 3);
    OwnedTensor ids = index_tensor({5}, {2, 5, 2, 0, 2});
    OwnedTensor out(DType::f64, {5, 4});
    auto loss = [&] {
        ops::embedding(out, ids, table);
        return dot(out, dy);
    };
    OwnedTensor dt = uniform64({6, 4}, 4), dt0 = clone(dt);
    ops::embedding_backward(dt, dy, ids);
    EXPECT_TRUE(near(minus(dt, dt0), numeric_grad(table, loss), kGradTol));
}

TEST(Embedding, RejectsBadArguments) {
    OwnedTensor table(DType::f32, {6, 4}), out(DType::f32, {3, 4});
    EXPECT_THROW(ops::embedding(out, index_tensor({3}, {0, 6, 1}), table), Error);
    EXPECT_THROW(ops::embedding(out, index_tensor({3}, {0, -1, 1}), table), Error);
    EXPECT_THROW(ops::embedding(out, index_tensor({2}, {0, 1}), table), Error);
    OwnedTensor wide(DType::f32, {3, 5});
    EXPECT_THROW(ops::embedding(wide, index_tensor({3}, {0, 1, 2}), table), Error);
    OwnedTensor fids(DType::f32, {3});
    EXPECT_THROW(ops::embedding(out, fids, table), Error);
}

}  // namespace
}  // namespace olmo::testing
