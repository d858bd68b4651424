// The fused decode ops equal, bit for bit, the compositions of the ops they replace (called here
// through ops:: in the order the model used to call them), in f32 and f64, in place where the
// contract allows it; and their argument checks.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "gradcheck.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

const DType kDtypes[] = {DType::f32, DType::f64};

// Same shape and the same bytes.
::testing::AssertionResult identical(const Tensor& actual, const Tensor& expected) {
    if (!actual.same_shape(expected) || actual.dtype != expected.dtype)
        return ::testing::AssertionFailure() << "shape " << actual.shape_str() << " vs "
                                             << expected.shape_str() << " or dtypes differ";
    if (std::memcmp(actual.data, expected.data, actual.nbytes()) != 0)
        return ::testing::AssertionFailure()
               << "values differ (rel max error " << rel_err(actual, expected) << ")";
    return ::testing::AssertionSuccess();
}

// Random values in dtype dt (never zero).
OwnedTensor rnd(std::initializer_list<int64_t> shape, uint64_t seed, DType dt, double std = 1.0) {
    return convert(normal64(shape, seed, std), dt);
}
OwnedTensor rnd_uniform(std::initializer_list<int64_t> shape, uint64_t seed, DType dt, double lo,
                        double hi) {
    return convert(uniform64(shape, seed, lo, hi), dt);
}

// ---- rmsnorm_add -------------------------------------------------------------------------------

TEST(Fused, RmsnormAddEqualsRmsnormThenAdd) {
    struct Case {
        int64_t N, C;
    };
    for (DType dt : kDtypes)
        for (const Case c : {Case{1, 8}, Case{3, 3840}, Case{100, 3840}, Case{7, 33}}) {
            SCOPED_TRACE(cat(dtype_name(dt), " N ", c.N, " C ", c.C));
            OwnedTensor x = rnd({c.N, c.C}, 1, dt, 2.0), res = rnd({c.N, c.C}, 2, dt);
            OwnedTensor w = rnd_uniform({c.C}, 3, dt, 0.5, 1.5);
            OwnedTensor normed(dt, {c.N, c.C}), ref(dt, {c.N, c.C});
            ops::rmsnorm(normed, x, w, 1e-6f);
            ops::add(ref, res, normed);
            OwnedTensor out(dt, {c.N, c.C});
            ops::rmsnorm_add(out, res, x, w, 1e-6f);
            EXPECT_TRUE(identical(out, ref));
            OwnedTensor in_place = clone(res);  // out aliases residual
            ops::rmsnorm_add(in_place, in_place, x, w, 1e-6f);
            EXPECT_TRUE(identical(in_place, ref));
            OwnedTensor over_x = clone(x);  // out aliases x
            ops::rmsnorm_add(over_x, res, over_x, w, 1e-6f);
            EXPECT_TRUE(identical(over_x, ref));
        }
}

TEST(Fused, RmsnormAddChecksItsArguments) {
    OwnedTensor x = rnd({2, 8}, 1, DType::f32), w = rnd({8}, 2, DType::f32);
    OwnedTensor out(DType::f32, {2, 8}), short_res(DType::f32, {2, 7}), w7(DType::f32, {7});
    EXPECT_THROW(ops::rmsnorm_add(out, short_res, x, w, 1e-6f), Error);
    EXPECT_THROW(ops::rmsnorm_add(out, x, x, w7, 1e-6f), Error);
    OwnedTensor res64 = rnd({2, 8}, 3, DType::f64);
    EXPECT_THROW(ops::rmsnorm_add(out, res64, x, w, 1e-6f), Error);
}

}  // namespace
}  // namespace olmo::testing
