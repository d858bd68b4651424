// Dense ops: matmul and its two backward products against explicit sums and finite differences,
// add, scale, fill and the truncated-normal fill, the argument checks, and the dispatch of CUDA
// tensors in a build without CUDA.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

// out[n, o] = Σ_i x[n, i] w[o, i], in double.
OwnedTensor naive_matmul(const Tensor& x, const Tensor& w) {
    const int64_t N = x.numel() / w.shape[1], I = w.shape[1], O = w.shape[0];
    OwnedTensor out(DType::f64, {N, O});
    for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o) {
            double s = 0;
            for (int64_t i = 0; i < I; ++i) s += at(x, n * I + i) * at(w, o * I + i);
            out->as<double>()[n * O + o] = s;
        }
    return out;
}

TEST(Dense, MatmulMatchesExplicitSums) {
    for (DType dt : {DType::f32, DType::f64}) {
        OwnedTensor x = convert(uniform64({2, 3, 7}, 1), dt), w = convert(uniform64({5, 7}, 2), dt);
        OwnedTensor out(dt, {2, 3, 5});
        ops::matmul(out, x, w);
        OwnedTensor ref = naive_matmul(x, w);
        EXPECT_TRUE(near(out->reshape({6, 5}), ref, dt == DType::f64 ? 1e-14 : 1e-6));
        // accumulate adds a second product
        ops::matmul(out, x, w, true);
        for (int64_t i = 0; i < ref->numel(); ++i) ref->as<double>()[i] *= 2;
        EXPECT_TRUE(near(out->reshape({6, 5}), ref, dt == DType::f64 ? 1e-14 : 1e-6));
    }
}

TEST(Dense, MatmulEmptyInnerDimensionGivesZeros) {
    OwnedTensor x(DType::f32, {3, 0}), w(DType::f32, {4, 0});
    OwnedTensor out = random_uniform({3, 4}, 3);
    ops::matmul(out, x, w);
    EXPECT_EQ(max_abs(out), 0.0);
}

TEST(Dense, MatmulBackwardMatchesFiniteDifferences) {
    OwnedTensor x = uniform64({4, 6}, 4), w = uniform64({3, 6}, 5), dy = uniform64({4, 3}, 6);
    OwnedTensor out(DType::f64, {4, 3});
    auto loss = [&] {
        ops::matmul(out, x, w);
        return dot(out, dy);
    };
    OwnedTensor dx = uniform64({4, 6}, 7);
    ops::matmul_backward_input(dx, dy, w, false);
    EXPECT_TRUE(near(dx, numeric_grad(x, loss), kGradTol));
    ops::matmul_backward_input(dx, dy, w, true);  // accumulates on top of the first result
    OwnedTensor twice = minus(dx, numeric_grad(x, loss));
    EXPECT_TRUE(near(twice, numeric_grad(x, loss), kGradTol));
    OwnedTensor dw = uniform64({3, 6}, 8), dw0 = clone(dw);
    ops::matmul_backward_weight(dw, dy, x);
    EXPECT_TRUE(near(minus(dw, dw0), numeric_grad(w, loss), kGradTol));
}

TEST(Dense, AddAndFill) {
    OwnedTensor a = random_uniform({3, 5}, 9), b = random_uniform({3, 5}, 10),
                out(DType::f32, {3, 5});
    ops::add(out, a, b);
    for (int64_t i = 0; i < 15; ++i) EXPECT_EQ(out.f32()[i], a.f32()[i] + b.f32()[i]);
    ops::add(a, a, b);  // in place
    EXPECT_TRUE(near(a, out, 0));
    OwnedTensor s(DType::f32, {3, 5});
    ops::scale(s, b, -2.5f);
    for (int64_t i = 0; i < 15; ++i) EXPECT_EQ(s.f32()[i], -2.5f * b.f32()[i]);
    ops::scale(b, b, -2.5f);  // in place
    EXPECT_TRUE(near(b, s, 0));
    for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
        OwnedTensor t(dt, {2, 3});
        ops::fill(t, 1.5f);
        OwnedTensor h = to_host_f32(t);
        for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(h.f32()[i], 1.5f);
    }
}

TEST(Dense, FillTruncNormalIsTheCounterBasedDraw) {
    OwnedTensor t(DType::f32, {10000});
    ops::fill_trunc_normal(t, 5, 2, 0.02);
    const Rng rng(5, 2);
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < 10000; ++i) {
        const float v = t.f32()[i];
        ASSERT_EQ(v, float(rng.trunc_normal(uint64_t(i), 0.02))) << "element " << i;
        ASSERT_LE(std::fabs(v), 0.06f + 1e-7f);
        sum += v;
        sq += double(v) * v;
    }
    EXPECT_NEAR(sum / 10000, 0.0, 0.02 * 0.05);
    // A normal truncated at ±3σ has standard deviation 0.9866σ.
    EXPECT_NEAR(std::sqrt(sq / 10000), 0.02 * 0.9866, 0.02 * 0.03);
    OwnedTensor b(DType::bf16, {100});
    ops::fill_trunc_normal(b, 5, 2, 0.02);
    for (int64_t i = 0; i < 100; ++i)
        EXPECT_EQ(bf16_to_f32(b->as<uint16_t>()[i]), bf16_to_f32(f32_to_bf16(t.f32()[i])));
}

TEST(Dense, RejectsBadArguments) {
    OwnedTensor x(DType::f32, {4, 6}), w(DType::f32, {3, 5}), out(DType::f32, {4, 3});
    EXPECT_THROW(ops::matmul(out, x, w), Error);
    OwnedTensor w2(DType::f32, {3, 6}), out2(DType::f32, {4, 4});
    EXPECT_THROW(ops::matmul(out2, x, w2), Error);
    OwnedTensor x64(DType::f64, {4, 6});
    EXPECT_THROW(ops::matmul(out, x64, w2), Error);
    EXPECT_THROW(ops::matmul_backward_weight(w, out, x), Error);
    OwnedTensor a(DType::f32, {2, 3}), b(DType::f32, {2, 4});
    EXPECT_THROW(ops::add(a, a, b), Error);
    OwnedTensor h(DType::bf16, {2, 3});
    EXPECT_THROW(ops::add(h, h, h), Error);  // no bf16 arithmetic on the CPU
    try {
        ops::matmul(out, x, w);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("[matmul]"), std::string::npos) << e.what();
    }
}

TEST(Dense, CudaTensorsNeedTheCudaBackend) {
#ifdef OLMO_HAVE_CUDA
    GTEST_SKIP() << "built with CUDA";
#else
    OwnedTensor host(DType::f32, {2, 3});
    const Tensor dev(host->data, DType::f32, Device::cuda, {2, 3});
    try {
        ops::add(dev, dev, dev);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("[add] this build has no CUDA backend"),
                  std::string::npos)
            << e.what();
    }
    // Mixed devices are an argument error whatever the build.
    EXPECT_THROW(ops::add(host, host, dev), Error);
#endif
}

}  // namespace
}  // namespace olmo::testing
