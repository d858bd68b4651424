// Softmax attention against a naive formula written here: causal, windowed, GQA, queries at the end
// of a longer key/value buffer with per-sequence lengths; decode (one query) equals the last row of
// the full prefill; the backward matches finite differences; kv_append writes the right rows.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "gradcheck.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

// out[b, t, h] = Σ_j softmax_j(scale q·k_j) v_j over keys j ≤ p = len_b − Tq + t (and p − j <
// window).
OwnedTensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                            const std::vector<int>& lens, int64_t window, double scale) {
    const int64_t B = q.shape[0], Tq = q.shape[1], Hq = q.shape[2], D = q.shape[3];
    const int64_t L = k.shape[1], Hkv = k.shape[2], Dv = v.shape[3];
    OwnedTensor out(DType::f64, {B, Tq, Hq, Dv});
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < Tq; ++t)
            for (int64_t h = 0; h < Hq; ++h) {
                const int64_t p = lens[b] - Tq + t, hk = h / (Hq / Hkv);
                std::vector<double> w(L, 0.0);
                double mx = -1e300, sum = 0;
                for (int64_t j = 0; j <= p; ++j) {
                    if (window && p - j >= window) continue;
                    double s = 0;
                    for (int64_t d = 0; d < D; ++d)
                        s += at(q, ((b * Tq + t) * Hq + h) * D + d) *
                             at(k, ((b * L + j) * Hkv + hk) * D + d);
                    w[j] = s * scale;
                    mx = std::max(mx, w[j]);
                }
                for (int64_t j = 0; j <= p; ++j) {
                    if (window && p - j >= window) {
                        w[j] = 0;
                        continue;
                    }
                    w[j] = std::exp(w[j] - mx);
                    sum += w[j];
                }
                for (int64_t c = 0; c < Dv; ++c) {
                    double o = 0;
                    for (int64_t j = 0; j <= p; ++j)
                        o += w[j] * at(v, ((b * L + j) * Hkv + hk) * Dv + c);
                    out->as<double>()[((b * Tq + t) * Hq + h) * Dv + c] = o / sum;
                }
            }
    return out;
}

TEST(Attention, MatchesNaiveFormula) {
    struct Case {
        int64_t B, Tq, L, Hq, Hkv, D, Dv, window;
        std::vector<int> lens;
    };
    const std::vector<Case> cases = {
        {2, 9, 9, 2, 2, 8, 8, 0, {9, 9}},        // full causal prefill
        {2, 9, 9, 4, 2, 8, 6, 3, {9, 9}},        // window and GQA
        {2, 4, 12, 6, 2, 5, 7, 0, {12, 7}},      // queries at the end of a longer buffer
        {3, 3, 16, 4, 1, 8, 8, 5, {16, 3, 10}},  // all of it, one kv head
    };
    for (const Case& c : cases) {
        OwnedTensor q = normal64({c.B, c.Tq, c.Hq, c.D}, 1),
                    k = normal64({c.B, c.L, c.Hkv, c.D}, 2);
        OwnedTensor v = normal64({c.B, c.L, c.Hkv, c.Dv}, 3);
        OwnedTensor lens(DType::i32, {c.B});
        for (int64_t b = 0; b < c.B; ++b) lens->as<int32_t>()[b] = c.lens[b];
        const double scale = 1 / std::sqrt(double(c.D));
        OwnedTensor ref = naive_attention(q, k, v, c.lens, c.window, float(scale));
        OwnedTensor out(DType::f64, {c.B, c.Tq, c.Hq, c.Dv});
        ops::attention(out, q, k, v, lens, c.window, float(scale));
        EXPECT_TRUE(near(out, ref, 1e-13)) << "window " << c.window << " Tq " << c.Tq;
        OwnedTensor q32 = to_f32(q), k32 = to_f32(k), v32 = to_f32(v);
        OwnedTensor out32(DType::f32, {c.B, c.Tq, c.Hq, c.Dv});
        ops::attention(out32, q32, k32, v32, lens, c.window, float(scale));
        EXPECT_TRUE(near(out32, ref, 1e-5)) << "window " << c.window << " Tq " << c.Tq;
    }
}

TEST(Attention, DecodeEqualsLastRowOfPrefill) {
    const int64_t B = 2, L = 11, Hq = 4, Hkv = 2, D = 8;
    OwnedTensor q = random_normal({B, L, Hq, D}, 4), k = random_normal({B, L, Hkv, D}, 5);
    OwnedTensor v = random_normal({B, L, Hkv, D}, 6);
    for (int64_t window : {int64_t(0), int64_t(4)}) {
        OwnedTensor full(DType::f32, {B, L, Hq, D});
        ops::attention(full, q, k, v, index_tensor({B}, {L, L}), window, 0.3f);
        // One query per sequence, the last one, against the whole buffer.
        OwnedTensor q1(DType::f32, {B, 1, Hq, D}), out1(DType::f32, {B, 1, Hq, D});
        for (int64_t b = 0; b < B; ++b)
            copy_tensor(q1->select0(b), q->select0(b).narrow0(L - 1, 1));
        ops::attention(out1, q1, k, v, index_tensor({B}, {L, L}), window, 0.3f);
        for (int64_t b = 0; b < B; ++b)
            EXPECT_TRUE(near(out1->select0(b), full->select0(b).narrow0(L - 1, 1), 1e-6));
    }
}

TEST(Attention, BackwardMatchesFiniteDifferences) {
    const int64_t B = 2, L = 6, Hq = 4, Hkv = 2, D = 3, Dv = 5;
    for (int64_t window : {int64_t(0), int64_t(3)}) {
        OwnedTensor q = normal64({B, L, Hq, D}, 7), k = normal64({B, L, Hkv, D}, 8);
        OwnedTensor v = normal64({B, L, Hkv, Dv}, 9), dy = normal64({B, L, Hq, Dv}, 10);
        OwnedTensor lens = index_tensor({B}, {L, L}), out(DType::f64, {B, L, Hq, Dv});
        auto loss = [&] {
            ops::attention(out, q, k, v, lens, window, 0.7f);
            return dot(out, dy);
        };
        OwnedTensor dq(DType::f64, {B, L, Hq, D}), dk(DType::f64, {B, L, Hkv, D});
        OwnedTensor dv(DType::f64, {B, L, Hkv, Dv});
        ops::attention_backward(dq, dk, dv, dy, q, k, v, window, 0.7f);
        EXPECT_TRUE(near(dq, numeric_grad(q, loss), kGradTol)) << "window " << window;
        EXPECT_TRUE(near(dk, numeric_grad(k, loss), kGradTol)) << "window " << window;
        EXPECT_TRUE(near(dv, numeric_grad(v, loss), kGradTol)) << "window " << window;
    }
}

TEST(Attention, KvAppendWritesRowsAtStart) {
    const int64_t B = 2, L = 6, H = 2, D = 3, T = 2;
    OwnedTensor cache = random_uniform({B, L, H, D}, 11), before = clone(cache);
    OwnedTensor x = random_uniform({B, T, H, D}, 12);
    ops::kv_append(cache, x, index_tensor({B}, {0, 4}));
    const int64_t starts[2] = {0, 4};
    for (int64_t b = 0; b < B; ++b)
        for (int64_t l = 0; l < L; ++l)
            for (int64_t i = 0; i < H * D; ++i) {
                const int64_t idx = (b * L + l) * H * D + i;
                const bool written = l >= starts[b] && l < starts[b] + T;
                const float want =
                    written ? x.f32()[(b * T + l - starts[b]) * H * D + i] : before.f32()[idx];
                EXPECT_EQ(cache.f32()[idx], want);
            }
    EXPECT_THROW(ops::kv_append(cache, x, index_tensor({B}, {0, 5})), Error);
    EXPECT_THROW(ops::kv_append(cache, x, index_tensor({B}, {-1, 0})), Error);
}

TEST(Attention, RejectsBadArguments) {
    OwnedTensor q(DType::f32, {1, 4, 3, 8}), k(DType::f32, {1, 4, 2, 8}),
        v(DType::f32, {1, 4, 2, 8});
    OwnedTensor out(DType::f32, {1, 4, 3, 8});
    EXPECT_THROW(ops::attention(out, q, k, v, index_tensor({1}, {4}), 0, 1.0f), Error);  // 3 % 2
    OwnedTensor q4(DType::f32, {1, 4, 4, 8}), out4(DType::f32, {1, 4, 4, 8});
    OwnedTensor k7(DType::f32, {1, 4, 2, 7});
    EXPECT_THROW(ops::attention(out4, q4, k7, v, index_tensor({1}, {4}), 0, 1.0f), Error);
    EXPECT_THROW(ops::attention(out4, q4, k, v, index_tensor({1}, {5}), 0, 1.0f), Error);
    EXPECT_THROW(ops::attention(out4, q4, k, v, index_tensor({1}, {3}), 0, 1.0f), Error);
    EXPECT_THROW(ops::attention(out4, q4, k, v, index_tensor({2}, {4, 4}), 0, 1.0f), Error);
    OwnedTensor kshort(DType::f32, {1, 3, 2, 8}), vshort(DType::f32, {1, 3, 2, 8});
    EXPECT_THROW(ops::attention_backward(q4, kshort, vshort, out4, q4, kshort, vshort, 0, 1.0f),
                 Error);
}

}  // namespace
}  // namespace olmo::testing
