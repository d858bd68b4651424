// RoPE: equals an explicit rotation of each (i, i + D/2) pair at arbitrary positions, in place too;
// the backward matches finite differences.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

OwnedTensor inv_freq(int64_t D, double theta) {
    OwnedTensor f(DType::f32, {D / 2});
    for (int64_t i = 0; i < D / 2; ++i) f.f32()[i] = float(std::pow(theta, -2.0 * i / double(D)));
    return f;
}

TEST(Rope, EqualsExplicitRotation) {
    const int64_t N = 5, H = 3, D = 8;
    const float scaling = 1.2f;
    OwnedTensor x = normal64({N, H, D}, 1), freq = inv_freq(D, 10000.0);
    OwnedTensor pos = index_tensor({N}, {0, 7, 3, 4096, 65535});
    OwnedTensor out(DType::f64, {N, H, D}), ref(DType::f64, {N, H, D});
    for (int64_t n = 0; n < N; ++n)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < D / 2; ++i) {
                const float angle = float(pos->as<int32_t>()[n]) * freq.f32()[i];
                const double c = std::cos(double(angle)) * scaling,
                             s = std::sin(double(angle)) * scaling;
                const int64_t base = (n * H + h) * D;
                const double a = at(x, base + i), b = at(x, base + i + D / 2);
                ref->as<double>()[base + i] = a * c - b * s;
                ref->as<double>()[base + i + D / 2] = b * c + a * s;
            }
    ops::rope(out, x, pos, freq, scaling);
    EXPECT_TRUE(near(out, ref, 1e-14));
    OwnedTensor x32 = to_f32(x), out32(DType::f32, {N, H, D});
    ops::rope(out32, x32, pos, freq, scaling);
    EXPECT_TRUE(near(out32, ref, 1e-6));
    ops::rope(x, x, pos, freq, scaling);  // in place
    EXPECT_TRUE(near(x, ref, 1e-14));
}

TEST(Rope, BackwardMatchesFiniteDifferences) {
    const int64_t N = 4, H = 2, D = 6;
    OwnedTensor x = normal64({N, H, D}, 2), dy = normal64({N, H, D}, 3),
                freq = inv_freq(D, 500000.0);
    OwnedTensor pos = index_tensor({N}, {5, 0, 123, 9});
    OwnedTensor out(DType::f64, {N, H, D}), dx(DType::f64, {N, H, D});
    auto loss = [&] {
        ops::rope(out, x, pos, freq, 0.9f);
        return dot(out, dy);
    };
    ops::rope_backward(dx, dy, pos, freq, 0.9f);
    EXPECT_TRUE(near(dx, numeric_grad(x, loss), kGradTol));
}

TEST(Rope, RejectsBadArguments) {
    OwnedTensor x(DType::f32, {4, 2, 6}), out(DType::f32, {4, 2, 6});
    EXPECT_THROW(ops::rope(out, x, index_tensor({3}, {0, 1, 2}), inv_freq(6, 1e4), 1.0f), Error);
    EXPECT_THROW(ops::rope(out, x, index_tensor({4}, {0, 1, 2, 3}), inv_freq(8, 1e4), 1.0f), Error);
    OwnedTensor odd(DType::f32, {4, 2, 5});
    EXPECT_THROW(ops::rope(odd, odd, index_tensor({4}, {0, 1, 2, 3}), inv_freq(4, 1e4), 1.0f),
                 Error);
}

}  // namespace
}  // namespace olmo::testing
