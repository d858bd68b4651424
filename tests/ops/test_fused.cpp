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

// ---- attention_prologue ------------------------------------------------------------------------

struct PrologueCase {
    int64_t B, T, Hq, Hkv, D, Dv, L;
    bool rope;
};

TEST(Fused, AttentionPrologueEqualsNormsRopeAndAppends) {
    const PrologueCase cases[] = {{1, 1, 4, 2, 8, 8, 6, true},
                                  {3, 1, 4, 4, 8, 8, 5, false},
                                  {2, 3, 2, 1, 6, 4, 9, true},
                                  {4, 1, 3, 3, 10, 10, 3, true}};
    for (DType dt : kDtypes)
        for (const PrologueCase& c : cases)
            for (bool in_place : {false, true}) {
                SCOPED_TRACE(cat(dtype_name(dt), " B ", c.B, " T ", c.T, " Hq ", c.Hq, " Hkv ",
                                 c.Hkv, " D ", c.D, c.rope ? " rope" : "",
                                 in_place ? " in place" : ""));
                const int64_t N = c.B * c.T;
                OwnedTensor q_raw = rnd({N, c.Hq * c.D}, 1, dt, 2.0),
                            k_raw = rnd({N, c.Hkv * c.D}, 2, dt, 2.0);
                OwnedTensor v = rnd({c.B, c.T, c.Hkv, c.Dv}, 3, dt);
                OwnedTensor q_norm = rnd_uniform({c.Hq * c.D}, 4, dt, 0.5, 1.5),
                            k_norm = rnd_uniform({c.Hkv * c.D}, 5, dt, 0.5, 1.5);
                OwnedTensor k_cache0 = rnd({c.B, c.L, c.Hkv, c.D}, 6, dt),
                            v_cache0 = rnd({c.B, c.L, c.Hkv, c.Dv}, 7, dt);
                std::vector<int64_t> pos, start;
                for (int64_t b = 0; b < c.B; ++b) {
                    start.push_back((b * 5 + 1) % (c.L - c.T + 1));
                    for (int64_t t = 0; t < c.T; ++t) pos.push_back(start.back() + t + 1000 * b);
                }
                OwnedTensor positions(DType::i32, {N}), starts(DType::i32, {c.B});
                for (int64_t i = 0; i < N; ++i) positions->as<int32_t>()[i] = int32_t(pos[i]);
                for (int64_t b = 0; b < c.B; ++b) starts->as<int32_t>()[b] = int32_t(start[b]);
                OwnedTensor freq(DType::f32, {c.D / 2});
                for (int64_t i = 0; i < c.D / 2; ++i)
                    freq.f32()[i] = float(std::pow(10000.0, -2.0 * double(i) / double(c.D)));
                const Tensor inv_freq = c.rope ? freq.view() : Tensor();

                // The attention layer's statements.
                OwnedTensor q_ref(dt, {c.B, c.T, c.Hq, c.D}), k_ref(dt, {c.B, c.T, c.Hkv, c.D});
                OwnedTensor kc_ref = clone(k_cache0), vc_ref = clone(v_cache0);
                ops::rmsnorm(q_ref.view().reshape({N, c.Hq * c.D}), q_raw, q_norm, 1e-6f);
                ops::rmsnorm(k_ref.view().reshape({N, c.Hkv * c.D}), k_raw, k_norm, 1e-6f);
                if (c.rope) {
                    const Tensor q3 = q_ref.view().reshape({N, c.Hq, c.D}),
                                 k3 = k_ref.view().reshape({N, c.Hkv, c.D});
                    ops::rope(q3, q3, positions, freq, 1.25f);
                    ops::rope(k3, k3, positions, freq, 1.25f);
                }
                ops::kv_append(kc_ref, k_ref, starts);
                ops::kv_append(vc_ref, v, starts);

                OwnedTensor q_out(dt, {c.B, c.T, c.Hq, c.D}), k_out(dt, {c.B, c.T, c.Hkv, c.D});
                OwnedTensor kc = clone(k_cache0), vc = clone(v_cache0);
                Tensor q_in = q_raw, k_in = k_raw;
                if (in_place) {  // q, k over q_raw, k_raw, as the model plans them
                    copy_tensor(q_out.view().reshape({N, c.Hq * c.D}), q_raw);
                    copy_tensor(k_out.view().reshape({N, c.Hkv * c.D}), k_raw);
                    q_in = q_out.view().reshape({N, c.Hq * c.D});
                    k_in = k_out.view().reshape({N, c.Hkv * c.D});
                }
                ops::attention_prologue(q_out, k_out, kc, vc, q_in, k_in, v, q_norm, k_norm,
                                        positions, inv_freq, starts, 1e-6f, 1.25f);
                EXPECT_TRUE(identical(q_out, q_ref));
                EXPECT_TRUE(identical(k_out, k_ref));
                EXPECT_TRUE(identical(kc, kc_ref));
                EXPECT_TRUE(identical(vc, vc_ref));
            }
}

TEST(Fused, AttentionPrologueChecksItsArguments) {
    const int64_t B = 2, T = 1, H = 2, D = 4, L = 3;
    OwnedTensor q(DType::f32, {B, T, H, D}), k(DType::f32, {B, T, H, D}),
        v(DType::f32, {B, T, H, D});
    OwnedTensor kc(DType::f32, {B, L, H, D}), vc(DType::f32, {B, L, H, D});
    OwnedTensor raw = rnd({B * T, H * D}, 1, DType::f32), w = rnd({H * D}, 2, DType::f32);
    OwnedTensor pos = index_tensor({B}, {0, 1}), start = index_tensor({B}, {0, 1});
    OwnedTensor freq(DType::f32, {D / 2}), bad_freq(DType::f32, {D});
    freq.fill(1.0f);
    v.fill(1.0f);
    ops::attention_prologue(q, k, kc, vc, raw, raw, v, w, w, pos, freq, start, 1e-6f, 1.0f);
    EXPECT_THROW(
        ops::attention_prologue(q, k, kc, vc, raw, raw, v, w, w, pos, bad_freq, start, 1e-6f, 1.0f),
        Error);
    OwnedTensor short_cache(DType::f32, {B, L, H, D - 1});
    EXPECT_THROW(ops::attention_prologue(q, k, short_cache, vc, raw, raw, v, w, w, pos, freq, start,
                                         1e-6f, 1.0f),
                 Error);
    OwnedTensor pos3 = index_tensor({3}, {0, 1, 2});
    EXPECT_THROW(
        ops::attention_prologue(q, k, kc, vc, raw, raw, v, w, w, pos3, freq, start, 1e-6f, 1.0f),
        Error);
    OwnedTensor late = index_tensor({B}, {0, L});  // the row would land past the cache
    EXPECT_THROW(
        ops::attention_prologue(q, k, kc, vc, raw, raw, v, w, w, pos, freq, late, 1e-6f, 1.0f),
        Error);
}

}  // namespace
}  // namespace olmo::testing
