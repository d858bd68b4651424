// The fused decode ops of the CUDA backend against the CPU reference, which computes each of them
// as the composition of the ops it replaces. Inputs are random (never zero), rounded through the
// storage dtype for the CPU (what the device reads); outputs are poisoned and guarded; in-place
// calls are tested where the contract allows them, and the decode step is replayed from a CUDA
// graph. Tolerances come from the table of cuda_testing.cpp (docs/NUMERICS.md).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "cuda/runtime_internal.h"
#include "cuda_testing.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

using Shape = std::vector<int64_t>;

const DType kStorage[] = {DType::f32, DType::bf16};

int64_t numel(const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return n;
}

// Host f32 tensors with normal / uniform entries.
OwnedTensor randn(const Shape& shape, uint64_t seed, float std = 1.0f) {
    OwnedTensor t(DType::f32, std::span<const int64_t>(shape));
    OwnedTensor flat = random_normal({numel(shape)}, seed, std);
    std::memcpy(t->data, flat->data, flat->nbytes());
    return t;
}

OwnedTensor randu(const Shape& shape, uint64_t seed, float lo, float hi) {
    OwnedTensor t(DType::f32, std::span<const int64_t>(shape));
    OwnedTensor flat = random_uniform({numel(shape)}, seed, lo, hi);
    std::memcpy(t->data, flat->data, flat->nbytes());
    return t;
}

// One input: the values both backends see (host f32, rounded through dt) and the device copy.
struct In {
    OwnedTensor host, dev;
};

In make_in(const OwnedTensor& values, DType dt) {
    return In{rounded(values, dt), to_device(values, dt)};
}

// A host f32 output shaped like t.
OwnedTensor host_like(const Tensor& t) {
    OwnedTensor h(DType::f32, t.dims());
    h.fill(0.0f);
    return h;
}

// A poisoned guarded device output shaped like t.
Guarded out_like(DType dt, const Tensor& t) {
    const std::vector<int64_t> d = t.dims();
    Guarded g(dt, std::span<const int64_t>(d));
    g.poison();
    return g;
}

// A guarded device tensor holding `values` converted to dt (in-place operands).
Guarded preset(DType dt, const Tensor& values) {
    Guarded g = out_like(dt, values);
    copy_convert(g.view(), values);
    return g;
}

::testing::AssertionResult matches(const Tensor& actual, const Tensor& expected, const char* family,
                                   DType dt) {
    return close(actual, expected, tolerance(family, dt));
}

// ---- rmsnorm_add -------------------------------------------------------------------------------

const Shape kRmsnormAddShapes[] = {{1, 3840}, {64, 3840}, {130, 3840}, {5, 96},
                                   {3, 7},    {9, 33},    {2, 3, 40},  {2, 1000}};

TEST(CudaFused, RmsnormAddMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const Shape& shape : kRmsnormAddShapes) {
            const int64_t C = shape.back();
            SCOPED_TRACE(cat(dtype_name(dt), " rows ", numel(shape) / C, " C ", C));
            In x = make_in(randn(shape, 1, 2.0f), dt), res = make_in(randn(shape, 2), dt);
            In w = make_in(randu({C}, 3, 0.5f, 1.5f), dt);
            OwnedTensor ref = host_like(x.host);
            ops::rmsnorm_add(ref, res.host, x.host, w.host, 1e-6f);
            Guarded out = out_like(dt, x.host);
            ops::rmsnorm_add(out, res.dev, x.dev, w.dev, 1e-6f);
            EXPECT_TRUE(matches(out, ref, "norm", dt));
            EXPECT_TRUE(out.guards_intact());
            Guarded over_res = preset(dt, res.host);  // out aliases residual (the model's use)
            ops::rmsnorm_add(over_res, over_res, x.dev, w.dev, 1e-6f);
            EXPECT_TRUE(matches(over_res, ref, "norm", dt));
            EXPECT_TRUE(over_res.guards_intact());
            Guarded over_x = preset(dt, x.host);  // out aliases x
            ops::rmsnorm_add(over_x, res.dev, over_x, w.dev, 1e-6f);
            EXPECT_TRUE(matches(over_x, ref, "norm", dt));
            EXPECT_TRUE(over_x.guards_intact());
        }
}

// Rows that are not 16-byte aligned take the element-by-element path.
TEST(CudaFused, RmsnormAddMisalignedRowsMatchCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage) {
        SCOPED_TRACE(dtype_name(dt));
        const int64_t C = 3840;
        In x = make_in(randn({C + 1}, 4, 2.0f), dt), res = make_in(randn({C + 1}, 5), dt);
        In w = make_in(randu({C}, 6, 0.5f, 1.5f), dt);
        auto row = [&](const Tensor& t) { return t.narrow0(1, C).reshape({1, C}); };
        OwnedTensor ref(DType::f32, {1, C});
        ops::rmsnorm_add(ref, row(res.host), row(x.host), w.host, 1e-6f);
        Guarded out(dt, {C + 1});
        out.poison();
        ops::rmsnorm_add(row(out), row(res.dev), row(x.dev), w.dev, 1e-6f);
        EXPECT_TRUE(matches(row(out), ref, "norm", dt));
        EXPECT_TRUE(out.guards_intact());
    }
}

}  // namespace
}  // namespace olmo::testing
