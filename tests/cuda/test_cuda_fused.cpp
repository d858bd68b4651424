// The fused decode ops of the CUDA backend against the CPU reference, which computes each of them
// as the composition of the ops it replaces. Inputs are random (never zero), rounded through the
// storage dtype for the CPU (what the device reads); outputs are poisoned and guarded; in-place
// calls are tested where the contract allows them, and the decode step is replayed from a CUDA
// graph. Tolerances come from the table of cuda_testing.cpp (docs/NUMERICS.md).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "cuda_testing.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

const DType kStorage[] = {DType::f32, DType::bf16};

// An i32 tensor on the host or the device.
OwnedTensor i32_tensor(const std::vector<int32_t>& v, Device dev) {
    OwnedTensor h(DType::i32, {int64_t(v.size())});
    if (!v.empty()) std::memcpy(h->data, v.data(), v.size() * sizeof(int32_t));
    if (dev == Device::cpu) return h;
    OwnedTensor d(DType::i32, {int64_t(v.size())}, Device::cuda);
    copy_tensor(d, h);
    return d;
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

// ---- attention_prologue ------------------------------------------------------------------------

struct PrologueCase {
    int64_t B, T, Hq, Hkv, D, Dv, L;
    bool rope;
};
const PrologueCase kPrologueCases[] = {
    {1, 1, 30, 30, 128, 128, 40, true},  // the released attention layers, B = 1, 3, 64
    {3, 1, 30, 30, 128, 128, 40, true}, {64, 1, 30, 30, 128, 128, 9, true},
    {3, 1, 8, 2, 64, 64, 20, true},                                    // GQA
    {2, 1, 4, 4, 128, 128, 20, false},                                 // no RoPE
    {2, 5, 4, 2, 64, 32, 20, true},                                    // several tokens, Dv ≠ D
    {3, 2, 3, 1, 6, 6, 7, true},        {2, 1, 3, 3, 7, 5, 4, false},  // tiny, odd D
};

// RoPE frequencies of a head dim (f32), as the model computes them (θ = 500000).
OwnedTensor frequencies(int64_t D) {
    OwnedTensor f(DType::f32, {D / 2});
    for (int64_t i = 0; i < D / 2; ++i)
        f.f32()[i] = float(std::pow(500000.0, -2.0 * double(i) / double(D)));
    return f;
}

TEST(CudaFused, AttentionPrologueMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const PrologueCase& c : kPrologueCases)
            for (bool in_place : {false, true}) {
                SCOPED_TRACE(cat(dtype_name(dt), " B ", c.B, " T ", c.T, " Hq ", c.Hq, " Hkv ",
                                 c.Hkv, " D ", c.D, " Dv ", c.Dv, c.rope ? " rope" : "",
                                 in_place ? " in place" : ""));
                const int64_t N = c.B * c.T;
                In q_raw = make_in(randn({N, c.Hq * c.D}, 1, 2.0f), dt),
                   k_raw = make_in(randn({N, c.Hkv * c.D}, 2, 2.0f), dt),
                   v = make_in(randn({c.B, c.T, c.Hkv, c.Dv}, 3), dt);
                In q_norm = make_in(randu({c.Hq * c.D}, 4, 0.5f, 1.5f), dt),
                   k_norm = make_in(randu({c.Hkv * c.D}, 5, 0.5f, 1.5f), dt);
                const OwnedTensor k_cache0 = rounded(randn({c.B, c.L, c.Hkv, c.D}, 6), dt),
                                  v_cache0 = rounded(randn({c.B, c.L, c.Hkv, c.Dv}, 7), dt);
                std::vector<int32_t> pos, start;
                for (int64_t b = 0; b < c.B; ++b) {
                    start.push_back(int32_t((b * 7 + 2) % (c.L - c.T + 1)));
                    for (int64_t t = 0; t < c.T; ++t)
                        pos.push_back(int32_t((b * 1013 + t * 17 + 5) % 5000));  // large angles
                }
                const OwnedTensor freq = frequencies(c.D);
                const OwnedTensor freq_dev = to_device(freq, DType::f32);
                const Tensor f_host = c.rope ? freq.view() : Tensor(),
                             f_dev = c.rope ? freq_dev.view() : Tensor();

                OwnedTensor q_ref(DType::f32, {c.B, c.T, c.Hq, c.D}),
                    k_ref(DType::f32, {c.B, c.T, c.Hkv, c.D});
                OwnedTensor kc_ref = to_host_f32(k_cache0), vc_ref = to_host_f32(v_cache0);
                ops::attention_prologue(q_ref, k_ref, kc_ref, vc_ref, q_raw.host, k_raw.host,
                                        v.host, q_norm.host, k_norm.host,
                                        i32_tensor(pos, Device::cpu), f_host,
                                        i32_tensor(start, Device::cpu), 1e-6f, 1.25f);

                Guarded q = out_like(dt, q_ref), k = out_like(dt, k_ref);
                Guarded kc = preset(dt, k_cache0), vc = preset(dt, v_cache0);
                Tensor q_in = q_raw.dev, k_in = k_raw.dev;
                if (in_place) {  // q, k written over q_raw, k_raw (the model's plan)
                    copy_tensor(q.view().reshape({N, c.Hq * c.D}), q_raw.dev);
                    copy_tensor(k.view().reshape({N, c.Hkv * c.D}), k_raw.dev);
                    q_in = q.view().reshape({N, c.Hq * c.D});
                    k_in = k.view().reshape({N, c.Hkv * c.D});
                }
                ops::attention_prologue(q, k, kc, vc, q_in, k_in, v.dev, q_norm.dev, k_norm.dev,
                                        i32_tensor(pos, Device::cuda), f_dev,
                                        i32_tensor(start, Device::cuda), 1e-6f, 1.25f);
                const char* family = c.rope ? "rope" : "norm";
                EXPECT_TRUE(matches(q, q_ref, family, dt));
                EXPECT_TRUE(matches(k, k_ref, family, dt));
                EXPECT_TRUE(matches(kc, kc_ref, family, dt));
                EXPECT_TRUE(close(vc, vc_ref, 0.0));  // raw copies
                // The cache holds exactly the k that was returned.
                OwnedTensor k_host = to_host_f32(k), kc_host = to_host_f32(kc);
                for (int64_t b = 0; b < c.B; ++b)
                    EXPECT_TRUE(close(kc_host.view().select0(b).narrow0(start[size_t(b)], c.T),
                                      k_host.view().select0(b), 0.0));
                for (const Guarded* g : {&q, &k, &kc, &vc}) EXPECT_TRUE(g->guards_intact());
            }
}

// A sequence whose rows would not fit the cache is not written to it (the CPU reports it); the
// others are, and q and k are returned for all.
TEST(CudaFused, AttentionPrologueSkipsRowsOutsideTheCache) {
    OLMO_REQUIRE_CUDA();
    const DType dt = DType::bf16;
    const int64_t B = 3, T = 2, H = 2, D = 64, L = 8;
    In q_raw = make_in(randn({B * T, H * D}, 11), dt),
       k_raw = make_in(randn({B * T, H * D}, 12), dt);
    In v = make_in(randn({B, T, H, D}, 13), dt), w = make_in(randu({H * D}, 14, 0.5f, 1.5f), dt);
    const OwnedTensor cache0 = rounded(randn({B, L, H, D}, 15), dt);
    const std::vector<int32_t> start = {2, int32_t(L - 1), -1}, pos = {0, 1, 2, 3, 4, 5};
    const OwnedTensor freq = to_device(frequencies(D), DType::f32);
    Guarded q(dt, {B, T, H, D}), k(dt, {B, T, H, D});
    Guarded kc = preset(dt, cache0), vc = preset(dt, cache0);
    ops::attention_prologue(q, k, kc, vc, q_raw.dev, k_raw.dev, v.dev, w.dev, w.dev,
                            i32_tensor(pos, Device::cuda), freq, i32_tensor(start, Device::cuda),
                            1e-6f, 1.0f);
    OwnedTensor kc_host = to_host_f32(kc), vc_host = to_host_f32(vc), c0 = to_host_f32(cache0);
    OwnedTensor k_host = to_host_f32(k), v_host = to_host_f32(v.dev);
    EXPECT_TRUE(close(kc_host.view().select0(0).narrow0(2, T), k_host.view().select0(0), 0.0));
    EXPECT_TRUE(close(vc_host.view().select0(0).narrow0(2, T), v_host.view().select0(0), 0.0));
    for (int64_t b : {1, 2}) {
        EXPECT_TRUE(close(kc_host.view().select0(b), c0.view().select0(b), 0.0))
            << "sequence " << b;
        EXPECT_TRUE(close(vc_host.view().select0(b), c0.view().select0(b), 0.0))
            << "sequence " << b;
    }
    for (const Guarded* g : {&q, &k, &kc, &vc}) EXPECT_TRUE(g->guards_intact());
}

// ---- gdn_decode_step ---------------------------------------------------------------------------

struct GdnStepCase {
    int64_t B, Hk, H, Dk, Dv, W;
};
const GdnStepCase kGdnStepCases[] = {
    {1, 30, 30, 96, 192, 4}, {3, 30, 30, 96, 192, 4}, {64, 30, 30, 96, 192, 4},  // released
    {3, 2, 4, 128, 128, 4},  {2, 2, 4, 96, 192, 4},  // GVA; 384 columns per block (a loop)
    {2, 3, 3, 16, 32, 4},    {3, 1, 2, 20, 36, 3},   // small and odd sizes
    {2, 2, 2, 256, 64, 4},   {2, 2, 2, 33, 300, 2},   {1, 4, 4, 64, 48, 4},
};

// The weights and states of one GDN layer, on the host (rounded through the storage dtype) and on
// the device.
struct GdnLayer {
    In conv_q, conv_k, conv_v, A_log, dt_bias, o_norm;
    OwnedTensor state, cq, ck, cv;  // host f32 initial states (conv states rounded)
    GdnLayer(const GdnStepCase& c, DType dt)
        : conv_q(make_in(randn({c.Hk * c.Dk, c.W}, 21, 0.5f), dt)),
          conv_k(make_in(randn({c.Hk * c.Dk, c.W}, 22, 0.5f), dt)),
          conv_v(make_in(randn({c.H * c.Dv, c.W}, 23, 0.5f), dt)),
          A_log(make_in(randu({c.H}, 24, -1.0f, 1.5f), dt)),
          dt_bias(make_in(randu({c.H}, 25, -1.0f, 1.0f), dt)),
          o_norm(make_in(randu({c.Dv}, 26, 0.5f, 1.5f), dt)),
          state(randn({c.B, c.H, c.Dk, c.Dv}, 27, 0.3f)),
          cq(rounded(randn({c.B, c.W - 1, c.Hk * c.Dk}, 28, 2.0f), dt)),
          ck(rounded(randn({c.B, c.W - 1, c.Hk * c.Dk}, 29, 2.0f), dt)),
          cv(rounded(randn({c.B, c.W - 1, c.H * c.Dv}, 30, 2.0f), dt)) {}
};

// The projections of one decoding step.
struct GdnStepInputs {
    In q, k, v, a, b, z;
    GdnStepInputs(const GdnStepCase& c, DType dt, uint64_t seed)
        : q(make_in(randn({c.B, 1, c.Hk * c.Dk}, seed + 1), dt)),
          k(make_in(randn({c.B, 1, c.Hk * c.Dk}, seed + 2), dt)),
          v(make_in(randn({c.B, 1, c.H * c.Dv}, seed + 3), dt)),
          a(make_in(randu({c.B, c.H}, seed + 4, -3.0f, 3.0f), dt)),
          b(make_in(randn({c.B, c.H}, seed + 5, 2.0f), dt)),
          z(make_in(randn({c.B, c.H * c.Dv}, seed + 6, 2.0f), dt)) {}
};

// Device states of a GDN layer, guarded.
struct GdnDeviceState {
    Guarded state, cq, ck, cv;
    GdnDeviceState(const GdnLayer& l, DType dt)
        : state(preset(DType::f32, l.state)),
          cq(preset(dt, l.cq)),
          ck(preset(dt, l.ck)),
          cv(preset(dt, l.cv)) {}
};

void gdn_step(const Tensor& y, const GdnDeviceState& s, const GdnLayer& l, const GdnStepInputs& in,
              bool neg) {
    ops::gdn_decode_step(y, s.state, s.cq, s.ck, s.cv, in.q.dev, in.k.dev, in.v.dev, in.a.dev,
                         in.b.dev, in.z.dev, l.conv_q.dev, l.conv_k.dev, l.conv_v.dev, l.A_log.dev,
                         l.dt_bias.dev, l.o_norm.dev, neg, 1e-6f, 1e-5f);
}

TEST(CudaFused, GdnDecodeStepMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    int index = 0;
    for (DType dt : kStorage)
        for (const GdnStepCase& c : kGdnStepCases) {
            const bool neg = (index++ % 2) == 0;
            SCOPED_TRACE(cat(dtype_name(dt), " B ", c.B, " Hk ", c.Hk, " H ", c.H, " Dk ", c.Dk,
                             " Dv ", c.Dv, " W ", c.W, neg ? " neg" : ""));
            const GdnLayer layer(c, dt);
            OwnedTensor s_ref = to_host_f32(layer.state), cq_ref = to_host_f32(layer.cq),
                        ck_ref = to_host_f32(layer.ck), cv_ref = to_host_f32(layer.cv);
            const GdnDeviceState dev(layer, dt);
            for (uint64_t step = 0; step < 2; ++step) {  // the second step reads rolled states
                SCOPED_TRACE(cat("step ", step));
                const GdnStepInputs in(c, dt, 100 * (step + 1));
                OwnedTensor y_ref(DType::f32, {c.B * c.H, c.Dv});
                ops::gdn_decode_step(y_ref, s_ref, cq_ref, ck_ref, cv_ref, in.q.host, in.k.host,
                                     in.v.host, in.a.host, in.b.host, in.z.host, layer.conv_q.host,
                                     layer.conv_k.host, layer.conv_v.host, layer.A_log.host,
                                     layer.dt_bias.host, layer.o_norm.host, neg, 1e-6f, 1e-5f);
                const Guarded y = out_like(dt, y_ref);
                gdn_step(y, dev, layer, in, neg);
                EXPECT_TRUE(matches(y, y_ref, "gdn_decode", dt));
                // Nothing is rounded before y: the f32 state follows the f32 reference in both
                // storage dtypes, and the conv states are copies of the inputs.
                EXPECT_TRUE(matches(dev.state, s_ref, "gdn_decode", DType::f32));
                EXPECT_TRUE(close(dev.cq, cq_ref, 0.0));
                EXPECT_TRUE(close(dev.ck, ck_ref, 0.0));
                EXPECT_TRUE(close(dev.cv, cv_ref, 0.0));
                for (const Guarded* g : {&y, &dev.state, &dev.cq, &dev.ck, &dev.cv})
                    EXPECT_TRUE(g->guards_intact());
            }
        }
}

// ---- matmul_swiglu ------------------------------------------------------------------------------

struct SwigluCase {
    int64_t N, I, F;
};
// N ≤ 8 in bf16: the product kernel with the activation in its epilogue (N = 1 with two and one
// row pairs per warp); otherwise, and in f32, the products and the SwiGLU op.
const SwigluCase kSwigluCases[] = {{1, 3840, 11008}, {1, 40, 33},  {2, 3840, 100},
                                   {3, 96, 50},      {8, 136, 17}, {9, 64, 24}};

TEST(CudaFused, MatmulSwigluMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const SwigluCase& c : kSwigluCases)
            for (bool act_aliases_gate : {false, true}) {
                SCOPED_TRACE(cat(dtype_name(dt), " N ", c.N, " I ", c.I, " F ", c.F,
                                 act_aliases_gate ? " act = gate" : ""));
                In x = make_in(randn({c.N, c.I}, 71, 2.0f), dt);
                In wg = make_in(randn({c.F, c.I}, 72, 0.05f), dt),
                   wu = make_in(randn({c.F, c.I}, 73, 0.05f), dt);
                OwnedTensor gate_ref(DType::f32, {c.N, c.F}), up_ref(DType::f32, {c.N, c.F}),
                    act_ref(DType::f32, {c.N, c.F});
                ops::matmul_swiglu(act_ref, gate_ref, up_ref, x.host, wg.host, wu.host);
                Guarded gate = out_like(dt, gate_ref), up = out_like(dt, up_ref),
                        act = out_like(dt, act_ref);
                const Tensor act_out = act_aliases_gate ? gate.view() : act.view();
                ops::matmul_swiglu(act_out, gate, up, x.dev, wg.dev, wu.dev);
                if (!act_aliases_gate) {
                    EXPECT_TRUE(matches(gate, gate_ref, "matmul", dt));
                    EXPECT_TRUE(matches(act, act_ref, "matmul", dt));
                }
                EXPECT_TRUE(matches(up, up_ref, "matmul", dt));
                EXPECT_TRUE(matches(act_out, act_ref, "matmul", dt));
                for (const Guarded* g : {&gate, &up, &act}) EXPECT_TRUE(g->guards_intact());
                // The activation is exactly the SwiGLU op on the stored gate and up.
                if (!act_aliases_gate) {
                    Guarded again = out_like(dt, act_ref);
                    ops::swiglu(again, gate, up);
                    EXPECT_TRUE(close(again, to_host_f32(act), 0.0));
                }
            }
}

// ---- the RMSNorm carried across products (matmul_sumsq, rmsnorm_matmul_*) --------------------

struct CarriedNormCase {
    int64_t C, K;               // residual width; the producer's input width
    std::vector<int64_t> segs;  // the consumer's segment widths
    int64_t F;                  // the consumer MLP's width
};
// On the H200 (132 SMs) the consumers take every rows-per-warp variant of the one-token products,
// with and without the register cap, and blocks whose last warps have no row (1,031 rows in blocks
// of 4); the producer of 40,008 rows leaves more partial sums than a consumer adds up.
const CarriedNormCase kCarriedNormCases[] = {{3840, 512, {1001, 23, 7}, 1200},
                                             {128, 64, {17000}, 9000},
                                             {64, 96, {9000, 100}, 17000},
                                             {24, 40, {40000}, 40},
                                             {40008, 16, {50}, 24}};

// Σ t (power 1) or Σ t² (power 2) in f64.
double sum_of_powers(const Tensor& t, int power) {
    const OwnedTensor h = to_host_f32(t);
    double s = 0.0;
    for (int64_t i = 0; i < h->numel(); ++i) {
        const double v = static_cast<const float*>(h->data)[i];
        s += power == 2 ? v * v : v;
    }
    return s;
}

// Every element still holds the poison of out_like (never written).
bool all_poisoned(const Tensor& t) {
    const OwnedTensor h = to_host_f32(t);
    for (int64_t i = 0; i < h->numel(); ++i)
        if (!std::isnan(static_cast<const float*>(h->data)[i])) return false;
    return true;
}

// A residual h = h0 + x · w_pᵀ written by matmul_sumsq, which leaves the sums of squares of h and
// h ⊙ norm_w for the RMSNorm after it, then the two products of that norm. The fused path (bf16,
// one row) must leave `normed` untouched (the norm is never computed apart) and agree with the CPU
// on the device's h: it rounds h ⊙ norm_w where rmsnorm rounds norm_w ⊙ (h · r), one bf16 rounding
// of the normalised input either way (docs/NUMERICS.md), within the products' bf16 tolerance.
TEST(CudaFused, NormCarriedAcrossProductsMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    const float eps = 1e-6f;
    for (DType dt : kStorage)
        for (const CarriedNormCase& c : kCarriedNormCases) {
            SCOPED_TRACE(cat(dtype_name(dt), " C ", c.C, " K ", c.K, " F ", c.F));
            const bool fused = dt == DType::bf16;  // the producer leaves sums
            In x = make_in(randn({1, c.K}, 81, 1.0f), dt),
               wp = make_in(randn({c.C, c.K}, 82, 0.1f), dt);
            In h0 = make_in(randn({1, c.C}, 83, 1.0f), dt);
            In nw = make_in(randu({c.C}, 84, 0.5f, 1.5f), dt);
            // The producer: h += x · w_pᵀ, with what it leaves for the norm.
            OwnedTensor h_ref = host_like(h0.host);
            std::memcpy(h_ref->data, h0.host->data, size_t(c.C) * sizeof(float));
            ops::matmul(h_ref, x.host, wp.host, true);
            Guarded h = preset(dt, h0.host);
            OwnedTensor partials(DType::f32, {c.C}, Device::cuda);
            Guarded scaled = out_like(dt, h0.host);
            SumSquares sumsq;
            sumsq.partials = partials;
            sumsq.scaled = scaled;
            ops::matmul_sumsq(h, sumsq, x.dev, wp.dev, true, nw.dev);
            EXPECT_TRUE(matches(h, h_ref, "matmul", dt));
            EXPECT_TRUE(h.guards_intact());
            ASSERT_EQ(sumsq.count > 0, fused);
            if (fused) {
                // f32 partial sums of the stored values: f32 rounding only.
                const double want = sum_of_powers(h, 2);
                EXPECT_NEAR(sum_of_powers(partials->narrow0(0, sumsq.count), 1), want, 1e-5 * want);
                // h ⊙ norm_w: one product of the stored values, rounded once.
                OwnedTensor hw = to_host_f32(h);
                for (int64_t i = 0; i < c.C; ++i)
                    static_cast<float*>(hw->data)[i] *= static_cast<const float*>(nw.host->data)[i];
                EXPECT_TRUE(close(scaled, rounded(hw, dt), 0.0));
                EXPECT_TRUE(scaled.guards_intact());
                EXPECT_EQ(sumsq.norm_w.data, nw.dev->data);
            }
            // The consumers, against the CPU on the h the device stored. They add up to 1,024
            // partial sums (more: the unfused ops).
            const bool fused_in = fused && sumsq.count <= 1024;
            const OwnedTensor h_dev = to_host_f32(h);
            OwnedTensor normed_ref = host_like(h_dev);
            ops::rmsnorm(normed_ref, h_dev, nw.host, eps);
            int64_t rows = 0;
            for (int64_t n : c.segs) rows += n;
            In w = make_in(randn({rows, c.C}, 85, 0.05f), dt);
            std::vector<OwnedTensor> outs_ref;
            std::vector<Guarded> outs;
            for (int64_t n : c.segs) {
                outs_ref.emplace_back(DType::f32, std::initializer_list<int64_t>{1, n});
                outs.emplace_back(dt, std::initializer_list<int64_t>{1, n});
                outs.back().poison();
            }
            std::vector<Tensor> ref_views(outs_ref.begin(), outs_ref.end()), dev_views;
            for (const Guarded& g : outs) dev_views.push_back(g.view());
            ops::matmul_segments(ref_views, normed_ref, w.host);
            Guarded normed = out_like(dt, h_dev);
            ops::rmsnorm_matmul_segments(dev_views, normed, h, nw.dev, eps, sumsq, w.dev);
            for (size_t s = 0; s < outs.size(); ++s) {
                EXPECT_TRUE(matches(outs[s], outs_ref[s], "matmul", dt)) << "segment " << s;
                EXPECT_TRUE(outs[s].guards_intact());
            }
            EXPECT_EQ(all_poisoned(normed), fused_in)
                << "the fused path leaves normed unwritten, the unfused one writes it";
            In wg = make_in(randn({c.F, c.C}, 86, 0.05f), dt),
               wu = make_in(randn({c.F, c.C}, 87, 0.05f), dt);
            OwnedTensor gate_ref(DType::f32, {1, c.F}), up_ref(DType::f32, {1, c.F}),
                act_ref(DType::f32, {1, c.F});
            ops::matmul_swiglu(act_ref, gate_ref, up_ref, normed_ref, wg.host, wu.host);
            Guarded gate = out_like(dt, gate_ref), up = out_like(dt, up_ref),
                    act = out_like(dt, act_ref);
            Guarded normed2 = out_like(dt, h_dev);
            ops::rmsnorm_matmul_swiglu(act, gate, up, normed2, h, nw.dev, eps, sumsq, wg.dev,
                                       wu.dev);
            EXPECT_TRUE(matches(gate, gate_ref, "matmul", dt));
            EXPECT_TRUE(matches(up, up_ref, "matmul", dt));
            EXPECT_TRUE(matches(act, act_ref, "matmul", dt));
            for (const Guarded* g : {&gate, &up, &act}) EXPECT_TRUE(g->guards_intact());
            EXPECT_EQ(all_poisoned(normed2), fused_in);
        }
}

// Where the backend leaves nothing (several rows, no norm weight, no room for the sums), count is
// 0 and the product is a plain matmul.
TEST(CudaFused, MatmulSumsqWithoutSums) {
    OLMO_REQUIRE_CUDA();
    In w = make_in(randn({96, 64}, 92, 0.1f), DType::bf16);
    In nw = make_in(randu({96}, 94, 0.5f, 1.5f), DType::bf16);
    OwnedTensor partials(DType::f32, {96}, Device::cuda), small(DType::f32, {3}, Device::cuda);
    OwnedTensor scaled(DType::bf16, {96}, Device::cuda);
    struct Case {
        int64_t N;
        bool with_norm;
        const OwnedTensor* room;
    };
    for (const Case& k :
         {Case{2, true, &partials}, Case{1, false, &partials}, Case{1, true, &small}}) {
        SCOPED_TRACE(cat("N ", k.N, k.with_norm ? "" : " no norm weight"));
        In x = make_in(randn({k.N, 64}, 91, 1.0f), DType::bf16);
        OwnedTensor ref(DType::f32, {k.N, 96});
        ops::matmul(ref, x.host, w.host);
        Guarded out = out_like(DType::bf16, ref);
        SumSquares sumsq;
        sumsq.partials = *k.room;
        sumsq.scaled = scaled;
        ops::matmul_sumsq(out, sumsq, x.dev, w.dev, false, k.with_norm ? nw.dev : OwnedTensor());
        EXPECT_EQ(sumsq.count, 0);
        EXPECT_TRUE(matches(out, ref, "matmul", DType::bf16));
    }
}

// ---- CUDA graph capture of the fused decode ops
// ---------------------------------------------------

// One GDN decode step, one attention prologue and one post-norm residual update captured on the op
// stream and replayed twice give exactly what two eager calls give, and match the CPU.
TEST(CudaFused, DecodeOpsReplayLikeEager) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage) {
        SCOPED_TRACE(dtype_name(dt));
        const GdnStepCase g{2, 30, 30, 96, 192, 4};  // B · H · 6 blocks: the cluster kernel
        const GdnLayer layer(g, dt);
        const GdnStepInputs in(g, dt, 300);
        const int64_t B = 4, H = 30, D = 128, L = 16, C = 3840;
        In q_raw = make_in(randn({B, H * D}, 31, 2.0f), dt),
           k_raw = make_in(randn({B, H * D}, 32, 2.0f), dt);
        In v = make_in(randn({B, 1, H, D}, 33), dt),
           qn = make_in(randu({H * D}, 34, 0.5f, 1.5f), dt),
           kn = make_in(randu({H * D}, 35, 0.5f, 1.5f), dt);
        In x = make_in(randn({B, C}, 36, 2.0f), dt), w = make_in(randu({C}, 37, 0.5f, 1.5f), dt);
        const OwnedTensor cache0 = rounded(randn({B, L, H, D}, 38), dt),
                          h0 = rounded(randn({B, C}, 39), dt);
        const std::vector<int32_t> start = {0, 3, 7, 15}, pos = {0, 3, 7, 15};
        const OwnedTensor freq = frequencies(D), freq_dev = to_device(freq, DType::f32);
        const OwnedTensor pos_dev = i32_tensor(pos, Device::cuda),
                          start_dev = i32_tensor(start, Device::cuda);

        struct Buffers {
            GdnDeviceState s;
            Guarded y, q, k, kc, vc, h;
        };
        auto make = [&] {
            return Buffers{GdnDeviceState(layer, dt),
                           Guarded(dt, {g.B * g.H, g.Dv}),
                           Guarded(dt, {B, 1, H, D}),
                           Guarded(dt, {B, 1, H, D}),
                           preset(dt, cache0),
                           preset(dt, cache0),
                           preset(dt, h0)};
        };
        auto step = [&](const Buffers& o) {
            gdn_step(o.y, o.s, layer, in, true);
            ops::attention_prologue(o.q, o.k, o.kc, o.vc, q_raw.dev, k_raw.dev, v.dev, qn.dev,
                                    kn.dev, pos_dev, freq_dev, start_dev, 1e-6f, 1.0f);
            ops::rmsnorm_add(o.h, o.h, x.dev, w.dev, 1e-6f);
        };
        Buffers graph_out = make(), eager_out = make();

        ASSERT_TRUE(capture_and_replay([&] { step(graph_out); }, 2));
        for (int i = 0; i < 2; ++i) step(eager_out);

        const Guarded* gs[] = {
            &graph_out.s.state, &graph_out.s.cq, &graph_out.s.ck, &graph_out.s.cv, &graph_out.y,
            &graph_out.q,       &graph_out.k,    &graph_out.kc,   &graph_out.vc,   &graph_out.h};
        const Guarded* es[] = {
            &eager_out.s.state, &eager_out.s.cq, &eager_out.s.ck, &eager_out.s.cv, &eager_out.y,
            &eager_out.q,       &eager_out.k,    &eager_out.kc,   &eager_out.vc,   &eager_out.h};
        for (size_t i = 0; i < std::size(gs); ++i) {
            EXPECT_TRUE(close(*gs[i], to_host_f32(*es[i]), 0.0)) << "output " << i;
            EXPECT_TRUE(gs[i]->guards_intact()) << "output " << i;
        }

        // The CPU, two steps.
        OwnedTensor s_ref = to_host_f32(layer.state), cq_ref = to_host_f32(layer.cq),
                    ck_ref = to_host_f32(layer.ck), cv_ref = to_host_f32(layer.cv);
        OwnedTensor y_ref(DType::f32, {g.B * g.H, g.Dv}), q_ref(DType::f32, {B, 1, H, D}),
            k_ref(DType::f32, {B, 1, H, D});
        OwnedTensor kc_ref = to_host_f32(cache0), vc_ref = to_host_f32(cache0),
                    h_ref = to_host_f32(h0);
        for (int i = 0; i < 2; ++i) {
            ops::gdn_decode_step(y_ref, s_ref, cq_ref, ck_ref, cv_ref, in.q.host, in.k.host,
                                 in.v.host, in.a.host, in.b.host, in.z.host, layer.conv_q.host,
                                 layer.conv_k.host, layer.conv_v.host, layer.A_log.host,
                                 layer.dt_bias.host, layer.o_norm.host, true, 1e-6f, 1e-5f);
            ops::attention_prologue(q_ref, k_ref, kc_ref, vc_ref, q_raw.host, k_raw.host, v.host,
                                    qn.host, kn.host, i32_tensor(pos, Device::cpu), freq,
                                    i32_tensor(start, Device::cpu), 1e-6f, 1.0f);
            ops::rmsnorm_add(h_ref, h_ref, x.host, w.host, 1e-6f);
        }
        EXPECT_TRUE(matches(graph_out.y, y_ref, "gdn_decode", dt));
        EXPECT_TRUE(matches(graph_out.s.state, s_ref, "gdn_decode", DType::f32));
        EXPECT_TRUE(close(graph_out.s.cv, cv_ref, 0.0));
        EXPECT_TRUE(matches(graph_out.q, q_ref, "rope", dt));
        EXPECT_TRUE(matches(graph_out.kc, kc_ref, "rope", dt));
        EXPECT_TRUE(close(graph_out.vc, vc_ref, 0.0));
        // Two residual updates, each rounded once to the storage dtype on the device.
        EXPECT_TRUE(close(graph_out.h, h_ref, 2 * tolerance("norm", dt)));
    }
}

}  // namespace
}  // namespace olmo::testing
