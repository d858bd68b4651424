// The fused decode ops equal, bit for bit, the compositions of the ops they replace (called here
// through ops:: in the order the model used to call them), in f32 and f64, in place where the
// contract allows it; and their argument checks.
#include <gtest/gtest.h>

#include <cmath>
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

// ---- matmul_swiglu ------------------------------------------------------------------------------

TEST(Fused, MatmulSwigluChecksItsArguments) {
    OwnedTensor x = rnd({2, 8}, 1, DType::f32), wg = rnd({5, 8}, 2, DType::f32),
                wu = rnd({5, 8}, 3, DType::f32);
    OwnedTensor gate(DType::f32, {2, 5}), up(DType::f32, {2, 5}), act(DType::f32, {2, 5});
    OwnedTensor wu6(DType::f32, {6, 8}), gate6(DType::f32, {2, 6}), x7(DType::f32, {2, 7});
    EXPECT_THROW(ops::matmul_swiglu(act, gate, up, x, wg, wu6), Error);
    EXPECT_THROW(ops::matmul_swiglu(act, gate6, up, x, wg, wu), Error);
    EXPECT_THROW(ops::matmul_swiglu(act, gate, up, x7, wg, wu), Error);
    OwnedTensor act64(DType::f64, {2, 5});
    EXPECT_THROW(ops::matmul_swiglu(act64, gate, up, x, wg, wu), Error);
}

// ---- the RMSNorm carried across products (matmul_sumsq, rmsnorm_matmul_*) --------------------

// The reference leaves nothing (count 0) and computes the norms in full: each op equals its
// composition, the normalised input left in `normed`.
TEST(Fused, CarriedNormOpsEqualTheirCompositions) {
    for (DType dt : kDtypes) {
        SCOPED_TRACE(dtype_name(dt));
        const int64_t K = 12, C = 16, F = 5;
        OwnedTensor x = rnd({1, K}, 1, dt), wp = rnd({C, K}, 2, dt, 0.2);
        OwnedTensor h0 = rnd({1, C}, 3, dt), nw = rnd_uniform({C}, 4, dt, 0.5, 1.5);
        OwnedTensor h_ref = clone(h0), h = clone(h0);
        ops::matmul(h_ref, x, wp, true);
        OwnedTensor partials(DType::f32, {C}), scaled(dt, {C});
        SumSquares sumsq;
        sumsq.partials = partials;
        sumsq.scaled = scaled;
        sumsq.count = 3;
        ops::matmul_sumsq(h, sumsq, x, wp, true, nw);
        EXPECT_TRUE(identical(h, h_ref));
        EXPECT_EQ(sumsq.count, 0);
        OwnedTensor normed_ref(dt, {1, C});
        ops::rmsnorm(normed_ref, h, nw, 1e-6f);
        OwnedTensor w = rnd({7 + 2, C}, 5, dt, 0.2);
        OwnedTensor a_ref(dt, {1, 7}), b_ref(dt, {1, 2}), a(dt, {1, 7}), b(dt, {1, 2});
        const Tensor refs[] = {a_ref, b_ref}, outs[] = {a, b};
        ops::matmul_segments(refs, normed_ref, w);
        OwnedTensor normed(dt, {1, C});
        ops::rmsnorm_matmul_segments(outs, normed, h, nw, 1e-6f, sumsq, w);
        EXPECT_TRUE(identical(a, a_ref));
        EXPECT_TRUE(identical(b, b_ref));
        EXPECT_TRUE(identical(normed, normed_ref));
        OwnedTensor wg = rnd({F, C}, 6, dt, 0.2), wu = rnd({F, C}, 7, dt, 0.2);
        OwnedTensor g_ref(dt, {1, F}), u_ref(dt, {1, F}), act_ref(dt, {1, F});
        ops::matmul_swiglu(act_ref, g_ref, u_ref, normed_ref, wg, wu);
        OwnedTensor g(dt, {1, F}), u(dt, {1, F}), act(dt, {1, F});
        ops::rmsnorm_matmul_swiglu(act, g, u, normed, h, nw, 1e-6f, sumsq, wg, wu);
        EXPECT_TRUE(identical(act, act_ref));
        EXPECT_TRUE(identical(g, g_ref));
        EXPECT_TRUE(identical(u, u_ref));
    }
}

TEST(Fused, CarriedNormOpsCheckTheirArguments) {
    const int64_t C = 8;
    OwnedTensor x = rnd({1, 4}, 1, DType::f32), wp = rnd({C, 4}, 2, DType::f32);
    OwnedTensor h(DType::f32, {1, C}), nw = rnd({C}, 3, DType::f32), nw7(DType::f32, {7});
    OwnedTensor partials(DType::f32, {C}), scaled(DType::f32, {C});
    OwnedTensor partials64(DType::f64, {C}), scaled7(DType::f32, {C - 1});
    SumSquares sumsq;
    sumsq.partials = partials;
    sumsq.scaled = scaled;
    EXPECT_THROW(ops::matmul_sumsq(h, sumsq, x, wp, false, nw7), Error);  // norm_w ≠ [C]
    SumSquares f64_partials = sumsq;
    f64_partials.partials = partials64;
    EXPECT_THROW(ops::matmul_sumsq(h, f64_partials, x, wp, false, nw), Error);
    SumSquares short_scaled = sumsq;
    short_scaled.scaled = scaled7;
    EXPECT_THROW(ops::matmul_sumsq(h, short_scaled, x, wp, false, nw), Error);
    // A consumer given more sums than the partials hold, or sums for several rows.
    OwnedTensor w = rnd({3, C}, 4, DType::f32), out(DType::f32, {1, 3}), normed(DType::f32, {1, C});
    const Tensor outs[] = {out};
    SumSquares too_many = sumsq;
    too_many.count = C + 1;
    EXPECT_THROW(ops::rmsnorm_matmul_segments(outs, normed, h, nw, 1e-6f, too_many, w), Error);
    OwnedTensor h2(DType::f32, {2, C}), normed2(DType::f32, {2, C}), out2(DType::f32, {2, 3});
    const Tensor outs2[] = {out2};
    SumSquares one = sumsq;
    one.count = 1;
    EXPECT_THROW(ops::rmsnorm_matmul_segments(outs2, normed2, h2, nw, 1e-6f, one, w), Error);
    OwnedTensor g(DType::f32, {1, 3}), u(DType::f32, {1, 3}), act(DType::f32, {1, 3});
    EXPECT_THROW(ops::rmsnorm_matmul_swiglu(act, g, u, normed, h, nw7, 1e-6f, sumsq, w, w), Error);
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

// ---- gdn_decode_step ---------------------------------------------------------------------------

struct GdnStepCase {
    int64_t B, Hk, H, Dk, Dv, W;
};

// The weights and states of one GDN layer and the projections of one decoding step.
struct GdnStepOperands {
    OwnedTensor conv_q, conv_k, conv_v, A_log, dt_bias, o_norm;  // weights
    OwnedTensor state, cq, ck, cv;                               // states
    GdnStepOperands(const GdnStepCase& c, DType dt)
        : conv_q(rnd({c.Hk * c.Dk, c.W}, 11, dt, 0.5)),
          conv_k(rnd({c.Hk * c.Dk, c.W}, 12, dt, 0.5)),
          conv_v(rnd({c.H * c.Dv, c.W}, 13, dt, 0.5)),
          A_log(rnd_uniform({c.H}, 14, dt, -1.0, 1.5)),
          dt_bias(rnd_uniform({c.H}, 15, dt, -1.0, 1.0)),
          o_norm(rnd_uniform({c.Dv}, 16, dt, 0.5, 1.5)),
          state(rnd({c.B, c.H, c.Dk, c.Dv}, 17, dt, 0.3)),
          cq(rnd({c.B, c.W - 1, c.Hk * c.Dk}, 18, dt, 2.0)),
          ck(rnd({c.B, c.W - 1, c.Hk * c.Dk}, 19, dt, 2.0)),
          cv(rnd({c.B, c.W - 1, c.H * c.Dv}, 20, dt, 2.0)) {}
};

TEST(Fused, GdnDecodeStepEqualsTheLayerStatements) {
    const GdnStepCase cases[] = {{1, 2, 2, 8, 16, 4},
                                 {3, 2, 4, 8, 12, 4},
                                 {2, 3, 3, 20, 36, 3},
                                 {5, 1, 3, 6, 10, 2},
                                 {2, 1, 2, 4, 6, 1}};
    for (DType dt : kDtypes)
        for (const GdnStepCase& c : cases)
            for (bool neg : {true, false}) {
                SCOPED_TRACE(cat(dtype_name(dt), " B ", c.B, " Hk ", c.Hk, " H ", c.H, " Dk ", c.Dk,
                                 " Dv ", c.Dv, " W ", c.W, neg ? " neg" : ""));
                const int64_t B = c.B, H = c.H, Hk = c.Hk, Dk = c.Dk, Dv = c.Dv;
                const int64_t Kd = Hk * Dk, Vd = H * Dv;
                const GdnStepOperands ref(c, dt), fused(c, dt);
                for (uint64_t step = 0; step < 2; ++step) {  // the second step reads rolled states
                    SCOPED_TRACE(cat("step ", step));
                    const uint64_t s = 100 * (step + 1);
                    OwnedTensor q = rnd({B, 1, Kd}, s + 1, dt), k = rnd({B, 1, Kd}, s + 2, dt),
                                v = rnd({B, 1, Vd}, s + 3, dt);
                    OwnedTensor a = rnd_uniform({B, H}, s + 4, dt, -3.0, 3.0),
                                b = rnd({B, H}, s + 5, dt, 2.0), z = rnd({B, Vd}, s + 6, dt, 2.0);

                    // The GDN layer's statements for T = 1 with a decoding state.
                    OwnedTensor qc(dt, {B, 1, Kd}), kc(dt, {B, 1, Kd}), vc(dt, {B, 1, Vd});
                    ops::conv1d_silu(qc, q, ref.conv_q, ref.cq);
                    ops::conv1d_silu(kc, k, ref.conv_k, ref.ck);
                    ops::conv1d_silu(vc, v, ref.conv_v, ref.cv);
                    const Tensor qn = qc.view().reshape({B * Hk, Dk}),
                                 kn = kc.view().reshape({B * Hk, Dk});
                    ops::l2norm(qn, qn, 1e-6f, 1.0f / std::sqrt(float(Dk)));
                    ops::l2norm(kn, kn, 1e-6f, 1.0f);
                    OwnedTensor q_rep(dt, {B, 1, H, Dk}), k_rep(dt, {B, 1, H, Dk});
                    ops::repeat_heads(q_rep.view().reshape({B, H, Dk}),
                                      qc.view().reshape({B, Hk, Dk}));
                    ops::repeat_heads(k_rep.view().reshape({B, H, Dk}),
                                      kc.view().reshape({B, Hk, Dk}));
                    OwnedTensor g(dt, {B, 1, H}), beta(dt, {B, 1, H});
                    ops::gdn_gates(g.view().reshape({B, H}), beta.view().reshape({B, H}), a, b,
                                   ref.A_log, ref.dt_bias, neg);
                    OwnedTensor o(dt, {B, 1, H, Dv}), y_ref(dt, {B * H, Dv});
                    ops::gdn_recurrent(o, ref.state, q_rep, k_rep, vc.view().reshape({B, 1, H, Dv}),
                                       g, beta);
                    ops::rmsnorm_gated(y_ref, o.view().reshape({B * H, Dv}),
                                       z.view().reshape({B * H, Dv}), ref.o_norm, 1e-5f);

                    OwnedTensor y(dt, {B * H, Dv});
                    ops::gdn_decode_step(y, fused.state, fused.cq, fused.ck, fused.cv, q, k, v, a,
                                         b, z, fused.conv_q, fused.conv_k, fused.conv_v,
                                         fused.A_log, fused.dt_bias, fused.o_norm, neg, 1e-6f,
                                         1e-5f);
                    EXPECT_TRUE(identical(y, y_ref));
                    EXPECT_TRUE(identical(fused.state, ref.state));
                    EXPECT_TRUE(identical(fused.cq, ref.cq));
                    EXPECT_TRUE(identical(fused.ck, ref.ck));
                    EXPECT_TRUE(identical(fused.cv, ref.cv));
                }
            }
}

TEST(Fused, GdnDecodeStepChecksItsArguments) {
    const GdnStepCase c{2, 1, 2, 4, 6, 4};
    const DType dt = DType::f32;
    const GdnStepOperands w(c, dt);
    const int64_t Kd = c.Hk * c.Dk, Vd = c.H * c.Dv;
    OwnedTensor q = rnd({c.B, 1, Kd}, 1, dt), v = rnd({c.B, 1, Vd}, 2, dt);
    OwnedTensor a = rnd({c.B, c.H}, 3, dt), z = rnd({c.B, Vd}, 4, dt), y(dt, {c.B * c.H, c.Dv});
    auto step = [&](const Tensor& yy, const Tensor& state, const Tensor& qq, const Tensor& cq,
                    const Tensor& conv_v) {
        ops::gdn_decode_step(yy, state, cq, w.ck, w.cv, qq, qq, v, a, a, z, w.conv_q, w.conv_k,
                             conv_v, w.A_log, w.dt_bias, w.o_norm, true, 1e-6f, 1e-5f);
    };
    step(y, w.state, q, w.cq, w.conv_v);  // valid
    OwnedTensor two_tokens = rnd({c.B, 2, Kd}, 5, dt);
    EXPECT_THROW(step(y, w.state, two_tokens, w.cq, w.conv_v), Error);
    OwnedTensor state64 = rnd({c.B, c.H, c.Dk, c.Dv}, 6, DType::f64);
    EXPECT_THROW(step(y, state64, q, w.cq, w.conv_v), Error);
    OwnedTensor short_state = rnd({c.B, 2, Kd}, 7, dt);  // W − 1 = 3 rows expected
    EXPECT_THROW(step(y, w.state, q, short_state, w.conv_v), Error);
    OwnedTensor conv_v3 = rnd({Vd, 3}, 8, dt);
    EXPECT_THROW(step(y, w.state, q, w.cq, conv_v3), Error);
    OwnedTensor y_short(dt, {c.B * c.H, c.Dv - 1});
    EXPECT_THROW(step(y_short, w.state, q, w.cq, w.conv_v), Error);
    // H = 2 value heads cannot share Hk = 3 key heads of Dk = 4 (conv_q of 12 rows).
    OwnedTensor conv_q3 = rnd({3 * c.Dk, c.W}, 9, dt);
    OwnedTensor q3 = rnd({c.B, 1, 3 * c.Dk}, 10, dt), cq3 = rnd({c.B, c.W - 1, 3 * c.Dk}, 11, dt);
    EXPECT_THROW(
        ops::gdn_decode_step(y, w.state, cq3, cq3, w.cv, q3, q3, v, a, a, z, conv_q3, conv_q3,
                             w.conv_v, w.A_log, w.dt_bias, w.o_norm, true, 1e-6f, 1e-5f),
        Error);
}

}  // namespace
}  // namespace olmo::testing
