// The CUDA backend's memory-bound ops against the CPU reference. Every case draws random host
// inputs, runs the CPU op on them rounded through the storage dtype (what the device sees) and the
// CUDA op on device copies, in f32 and bf16 storage, and compares with the tolerance table of
// cuda_testing.cpp (docs/NUMERICS.md). Outputs are guarded (poisoned first, guard bytes checked
// after), in-place calls are tested where the contract allows them, and the decode-path ops are
// replayed from a CUDA graph.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "cuda_testing.h"
#include "ops/ops.h"

namespace olmo::testing {
namespace {

const DType kStorage[] = {DType::f32, DType::bf16};

// A host f32 copy (for CPU outputs that accumulate or are updated in place).
OwnedTensor host_copy(const Tensor& t) {
    return to_host_f32(t);
}

// An index tensor (i32 or i64) on the host or the device.
OwnedTensor index_tensor(const std::vector<int64_t>& v, DType dt, Device dev) {
    const int64_t n = int64_t(v.size());
    OwnedTensor h(dt, {n});
    for (int64_t i = 0; i < n; ++i) {
        if (dt == DType::i32) {
            h->as<int32_t>()[i] = int32_t(v[size_t(i)]);
        } else {
            h->as<int64_t>()[i] = v[size_t(i)];
        }
    }
    if (dev == Device::cpu) return h;
    OwnedTensor d(dt, {n}, Device::cuda);
    copy_tensor(d, h);
    return d;
}

std::vector<int64_t> random_ints(int64_t n, int64_t lo, int64_t hi, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int64_t> dist(lo, hi - 1);
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = dist(rng);
    return v;
}

::testing::AssertionResult matches(const Tensor& actual, const Tensor& expected, const char* family,
                                   DType dt) {
    return close(actual, expected, tolerance(family, dt));
}

::testing::AssertionResult scalar_matches(double actual, double expected, double tol) {
    const double err = std::fabs(actual - expected) / std::max(std::fabs(expected), 1e-30);
    if (std::isfinite(actual) && err <= tol) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "got " << actual << ", expected " << expected
                                         << " (rel error " << err << " > " << tol << ")";
}

// ---- elementwise -------------------------------------------------------------------------------

const std::vector<Shape> kElementwiseShapes = {{1}, {7}, {3, 33}, {2, 3840}, {4, 11008}, {1001}};

TEST(CudaElementwise, AddMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const Shape& shape : kElementwiseShapes)
            for (uint64_t seed : {1, 2}) {
                SCOPED_TRACE(cat(dtype_name(dt), " numel ", numel(shape), " seed ", seed));
                In a = make_in(randn(shape, seed), dt), b = make_in(randn(shape, seed + 100), dt);
                OwnedTensor ref = host_like(a.host);
                ops::add(ref, a.host, b.host);
                Guarded out = out_like(dt, a.host);
                ops::add(out, a.dev, b.dev);
                EXPECT_TRUE(matches(out, ref, "elementwise", dt));
                EXPECT_TRUE(out.guards_intact());
                Guarded inplace = preset(dt, a.host);  // out aliases a
                ops::add(inplace, inplace, b.dev);
                EXPECT_TRUE(matches(inplace, ref, "elementwise", dt));
                EXPECT_TRUE(inplace.guards_intact());
            }
}

TEST(CudaElementwise, ScaleMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const Shape& shape : kElementwiseShapes) {
            SCOPED_TRACE(cat(dtype_name(dt), " numel ", numel(shape)));
            In x = make_in(randn(shape, 3), dt);
            OwnedTensor ref = host_like(x.host);
            ops::scale(ref, x.host, -0.37f);
            Guarded out = out_like(dt, x.host);
            ops::scale(out, x.dev, -0.37f);
            EXPECT_TRUE(matches(out, ref, "elementwise", dt));
            EXPECT_TRUE(out.guards_intact());
            Guarded inplace = preset(dt, x.host);
            ops::scale(inplace, inplace, -0.37f);
            EXPECT_TRUE(matches(inplace, ref, "elementwise", dt));
            EXPECT_TRUE(inplace.guards_intact());
        }
}

TEST(CudaElementwise, FillEveryFloatDtype) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64})
        for (int64_t n : {1, 7, 4099}) {
            SCOPED_TRACE(cat(dtype_name(dt), " n ", n));
            OwnedTensor ref(dt, {n});
            ref.fill(1.375f);
            Guarded out = out_like(dt, ref);
            ops::fill(out, 1.375f);
            EXPECT_TRUE(close(out, to_host_f32(ref), 0.0));
            EXPECT_TRUE(out.guards_intact());
            // A view that starts one element into the buffer (not 16-byte aligned).
            Guarded big(dt, {n + 1});
            big.poison();
            ops::fill(big.view().narrow0(1, n), -2.5f);
            OwnedTensor ref2(dt, {n});
            ref2.fill(-2.5f);
            EXPECT_TRUE(close(big.view().narrow0(1, n), to_host_f32(ref2), 0.0));
            EXPECT_TRUE(big.guards_intact());
        }
}

// The same counter-based draws as the CPU (double-precision log and cos may differ in the last
// bit between the device's and the host's libm; after rounding to f32 that is at most one ulp on a
// rare element).
TEST(CudaElementwise, FillTruncNormalMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : {DType::f32, DType::bf16})
        for (int64_t n : {1, 4099, 1 << 20}) {
            SCOPED_TRACE(cat(dtype_name(dt), " n ", n));
            OwnedTensor ref(dt, {n});
            ops::fill_trunc_normal(ref, 7, 3, 0.02);
            Guarded out = out_like(dt, ref);
            ops::fill_trunc_normal(out, 7, 3, 0.02);
            EXPECT_TRUE(matches(out, to_host_f32(ref), "elementwise", dt));
            EXPECT_TRUE(out.guards_intact());
        }
}

// Views whose start is not 16-byte aligned take the element-by-element paths.
TEST(CudaElementwise, MisalignedViewsMatchCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (int64_t n : {5, 4099}) {
            SCOPED_TRACE(cat(dtype_name(dt), " n ", n));
            In a = make_in(randn({n + 1}, 7), dt), b = make_in(randn({n + 1}, 8), dt);
            const Tensor av = a.dev.view().narrow0(1, n), bv = b.dev.view().narrow0(1, n);
            const Tensor ah = a.host.view().narrow0(1, n), bh = b.host.view().narrow0(1, n);
            OwnedTensor ref(DType::f32, {n});
            ops::add(ref, ah, bh);
            Guarded out(dt, {n + 1});
            out.poison();
            ops::add(out.view().narrow0(1, n), av, bv);
            EXPECT_TRUE(matches(out.view().narrow0(1, n), ref, "elementwise", dt));
            ops::swiglu(ref, ah, bh);
            ops::swiglu(out.view().narrow0(1, n), av, bv);
            EXPECT_TRUE(matches(out.view().narrow0(1, n), ref, "elementwise", dt));
            EXPECT_TRUE(out.guards_intact());
            EXPECT_TRUE(scalar_matches(ops::sum_squares(av), ops::sum_squares(ah),
                                       tolerance("elementwise", DType::f32)));
        }
}

TEST(CudaMlp, SwigluMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const Shape& shape : kElementwiseShapes)
            for (uint64_t seed : {1, 2}) {
                SCOPED_TRACE(cat(dtype_name(dt), " numel ", numel(shape), " seed ", seed));
                In gate = make_in(randn(shape, seed, 3.0f), dt),
                   up = make_in(randn(shape, seed + 50), dt);
                OwnedTensor ref = host_like(gate.host);
                ops::swiglu(ref, gate.host, up.host);
                Guarded out = out_like(dt, gate.host);
                ops::swiglu(out, gate.dev, up.dev);
                EXPECT_TRUE(matches(out, ref, "elementwise", dt));
                EXPECT_TRUE(out.guards_intact());
                Guarded inplace = preset(dt, gate.host);  // out aliases gate
                ops::swiglu(inplace, inplace, up.dev);
                EXPECT_TRUE(matches(inplace, ref, "elementwise", dt));
                EXPECT_TRUE(inplace.guards_intact());
            }
}

TEST(CudaMlp, SwigluBackwardMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const Shape& shape : kElementwiseShapes)
            for (uint64_t seed : {1, 2}) {
                SCOPED_TRACE(cat(dtype_name(dt), " numel ", numel(shape), " seed ", seed));
                In gate = make_in(randn(shape, seed, 3.0f), dt),
                   up = make_in(randn(shape, seed + 50), dt);
                In dy = make_in(randn(shape, seed + 60), dt);
                OwnedTensor dg_ref = host_like(gate.host), du_ref = host_like(gate.host);
                ops::swiglu_backward(dg_ref, du_ref, dy.host, gate.host, up.host);
                Guarded dg = out_like(dt, gate.host), du = out_like(dt, gate.host);
                ops::swiglu_backward(dg, du, dy.dev, gate.dev, up.dev);
                EXPECT_TRUE(matches(dg, dg_ref, "elementwise", dt));
                EXPECT_TRUE(matches(du, du_ref, "elementwise", dt));
                EXPECT_TRUE(dg.guards_intact());
                EXPECT_TRUE(du.guards_intact());
                // In place: d_gate over d_out, d_up over up.
                Guarded dg2 = preset(dt, dy.host), du2 = preset(dt, up.host);
                ops::swiglu_backward(dg2, du2, dg2, gate.dev, du2);
                EXPECT_TRUE(matches(dg2, dg_ref, "elementwise", dt));
                EXPECT_TRUE(matches(du2, du_ref, "elementwise", dt));
            }
}

// ---- embedding ---------------------------------------------------------------------------------

struct EmbeddingCase {
    int64_t N, V, C;
};
const EmbeddingCase kEmbeddingCases[] = {{1, 50, 3840}, {7, 50, 96},   {64, 50, 33},
                                         {64, 10, 7},   {600, 20, 96}, {5, 100352, 128}};

TEST(CudaEmbedding, LookupMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (DType id_dt : {DType::i32, DType::i64})
            for (const EmbeddingCase& c : kEmbeddingCases) {
                SCOPED_TRACE(cat(dtype_name(dt), " ids ", dtype_name(id_dt), " N ", c.N, " V ", c.V,
                                 " C ", c.C));
                In table = make_in(randn({c.V, c.C}, 11), dt);
                const auto ids = random_ints(c.N, 0, c.V, 12);
                OwnedTensor ref(DType::f32, {c.N, c.C});
                ops::embedding(ref, index_tensor(ids, id_dt, Device::cpu), table.host);
                Guarded out = out_like(dt, ref);
                ops::embedding(out, index_tensor(ids, id_dt, Device::cuda), table.dev);
                EXPECT_TRUE(matches(out, ref, "elementwise", dt));
                EXPECT_TRUE(out.guards_intact());
            }
}

TEST(CudaEmbedding, BackwardAccumulatesLikeCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (DType id_dt : {DType::i32, DType::i64})
            for (const EmbeddingCase& c : kEmbeddingCases) {
                if (c.V * c.C > (int64_t(1) << 22)) continue;  // the CPU reference is per column
                SCOPED_TRACE(cat(dtype_name(dt), " ids ", dtype_name(id_dt), " N ", c.N, " V ", c.V,
                                 " C ", c.C));
                In d_out = make_in(randn({c.N, c.C}, 13), dt);
                OwnedTensor table0 = rounded(randn({c.V, c.C}, 14), dt);
                const auto ids = random_ints(c.N, 0, c.V, 15);  // with repeats
                OwnedTensor ref = host_copy(table0);
                ops::embedding_backward(ref, d_out.host, index_tensor(ids, id_dt, Device::cpu));
                Guarded d_table = preset(dt, table0);
                ops::embedding_backward(d_table, d_out.dev, index_tensor(ids, id_dt, Device::cuda));
                EXPECT_TRUE(matches(d_table, ref, "elementwise", dt));
                EXPECT_TRUE(d_table.guards_intact());
            }
}

// ---- norms -------------------------------------------------------------------------------------

struct NormCase {
    Shape x;  // [..., C]
};
const NormCase kNormCases[] = {{{1, 3840}}, {{5, 96}},   {{64, 192}}, {{3, 7}},     {{9, 33}},
                               {{4, 128}},  {{2, 1000}}, {{300, 96}}, {{2, 3, 40}}, {{130, 3840}}};

int64_t last(const Shape& s) {
    return s.back();
}

TEST(CudaNorm, RmsnormMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const NormCase& c : kNormCases)
            for (uint64_t seed : {1, 2}) {
                SCOPED_TRACE(cat(dtype_name(dt), " rows x C ", numel(c.x) / last(c.x), " x ",
                                 last(c.x), " seed ", seed));
                In x = make_in(randn(c.x, seed, 2.0f), dt),
                   w = make_in(randu({last(c.x)}, seed + 1, 0.5f, 1.5f), dt);
                OwnedTensor ref = host_like(x.host);
                ops::rmsnorm(ref, x.host, w.host, 1e-6f);
                Guarded out = out_like(dt, x.host);
                ops::rmsnorm(out, x.dev, w.dev, 1e-6f);
                EXPECT_TRUE(matches(out, ref, "norm", dt));
                EXPECT_TRUE(out.guards_intact());
                Guarded inplace = preset(dt, x.host);
                ops::rmsnorm(inplace, inplace, w.dev, 1e-6f);
                EXPECT_TRUE(matches(inplace, ref, "norm", dt));
                EXPECT_TRUE(inplace.guards_intact());
            }
}

TEST(CudaNorm, RmsnormBackwardMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const NormCase& c : kNormCases)
            for (uint64_t seed : {1, 2}) {
                SCOPED_TRACE(cat(dtype_name(dt), " rows x C ", numel(c.x) / last(c.x), " x ",
                                 last(c.x), " seed ", seed));
                const int64_t C = last(c.x);
                In x = make_in(randn(c.x, seed, 2.0f), dt), dy = make_in(randn(c.x, seed + 2), dt);
                In w = make_in(randu({C}, seed + 1, 0.5f, 1.5f), dt);
                OwnedTensor dw0 = rounded(randn({C}, seed + 3), dt);
                OwnedTensor dx_ref = host_like(x.host), dw_ref = host_copy(dw0);
                ops::rmsnorm_backward(dx_ref, dw_ref, dy.host, x.host, w.host, 1e-6f);
                Guarded dx = out_like(dt, x.host), dw = preset(dt, dw0);
                ops::rmsnorm_backward(dx, dw, dy.dev, x.dev, w.dev, 1e-6f);
                EXPECT_TRUE(matches(dx, dx_ref, "norm", dt));
                EXPECT_TRUE(matches(dw, dw_ref, "norm", dt));
                EXPECT_TRUE(dx.guards_intact());
                EXPECT_TRUE(dw.guards_intact());
                // d_x over d_out.
                Guarded dx2 = preset(dt, dy.host), dw2 = preset(dt, dw0);
                ops::rmsnorm_backward(dx2, dw2, dx2, x.dev, w.dev, 1e-6f);
                EXPECT_TRUE(matches(dx2, dx_ref, "norm", dt));
                EXPECT_TRUE(matches(dw2, dw_ref, "norm", dt));
            }
}

TEST(CudaNorm, GatedRmsnormMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const NormCase& c : kNormCases)
            for (uint64_t seed : {1, 2}) {
                SCOPED_TRACE(cat(dtype_name(dt), " rows x D ", numel(c.x) / last(c.x), " x ",
                                 last(c.x), " seed ", seed));
                const int64_t D = last(c.x);
                In x = make_in(randn(c.x, seed, 2.0f), dt),
                   z = make_in(randn(c.x, seed + 4, 3.0f), dt);
                In w = make_in(randu({D}, seed + 1, 0.5f, 1.5f), dt);
                OwnedTensor ref = host_like(x.host);
                ops::rmsnorm_gated(ref, x.host, z.host, w.host, 1e-5f);
                Guarded out = out_like(dt, x.host);
                ops::rmsnorm_gated(out, x.dev, z.dev, w.dev, 1e-5f);
                EXPECT_TRUE(matches(out, ref, "norm", dt));
                EXPECT_TRUE(out.guards_intact());
                Guarded inplace = preset(dt, x.host);
                ops::rmsnorm_gated(inplace, inplace, z.dev, w.dev, 1e-5f);
                EXPECT_TRUE(matches(inplace, ref, "norm", dt));
            }
}

TEST(CudaNorm, GatedRmsnormBackwardMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const NormCase& c : kNormCases)
            for (uint64_t seed : {1, 2}) {
                SCOPED_TRACE(cat(dtype_name(dt), " rows x D ", numel(c.x) / last(c.x), " x ",
                                 last(c.x), " seed ", seed));
                const int64_t D = last(c.x);
                In x = make_in(randn(c.x, seed, 2.0f), dt),
                   z = make_in(randn(c.x, seed + 4, 3.0f), dt);
                In dy = make_in(randn(c.x, seed + 5), dt),
                   w = make_in(randu({D}, seed + 1, 0.5f, 1.5f), dt);
                OwnedTensor dw0 = rounded(randn({D}, seed + 6), dt);
                OwnedTensor dx_ref = host_like(x.host), dz_ref = host_like(x.host),
                            dw_ref = host_copy(dw0);
                ops::rmsnorm_gated_backward(dx_ref, dz_ref, dw_ref, dy.host, x.host, z.host, w.host,
                                            1e-5f);
                Guarded dx = out_like(dt, x.host), dz = out_like(dt, x.host), dw = preset(dt, dw0);
                ops::rmsnorm_gated_backward(dx, dz, dw, dy.dev, x.dev, z.dev, w.dev, 1e-5f);
                EXPECT_TRUE(matches(dx, dx_ref, "norm", dt));
                EXPECT_TRUE(matches(dz, dz_ref, "norm", dt));
                EXPECT_TRUE(matches(dw, dw_ref, "norm", dt));
                EXPECT_TRUE(dx.guards_intact());
                EXPECT_TRUE(dz.guards_intact());
                EXPECT_TRUE(dw.guards_intact());
                // d_x over d_out, d_z over z.
                Guarded dx2 = preset(dt, dy.host), dz2 = preset(dt, z.host), dw2 = preset(dt, dw0);
                ops::rmsnorm_gated_backward(dx2, dz2, dw2, dx2, x.dev, dz2, w.dev, 1e-5f);
                EXPECT_TRUE(matches(dx2, dx_ref, "norm", dt));
                EXPECT_TRUE(matches(dz2, dz_ref, "norm", dt));
                EXPECT_TRUE(matches(dw2, dw_ref, "norm", dt));
            }
}

TEST(CudaNorm, L2normMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const NormCase& c : kNormCases)
            for (uint64_t seed : {1, 2}) {
                SCOPED_TRACE(cat(dtype_name(dt), " rows x D ", numel(c.x) / last(c.x), " x ",
                                 last(c.x), " seed ", seed));
                const float scale = 1.0f / std::sqrt(float(last(c.x)));
                In x = make_in(randn(c.x, seed, 2.0f), dt), dy = make_in(randn(c.x, seed + 7), dt);
                OwnedTensor ref = host_like(x.host), dx_ref = host_like(x.host);
                ops::l2norm(ref, x.host, 1e-6f, scale);
                ops::l2norm_backward(dx_ref, dy.host, x.host, 1e-6f, scale);
                Guarded out = out_like(dt, x.host), dx = out_like(dt, x.host);
                ops::l2norm(out, x.dev, 1e-6f, scale);
                ops::l2norm_backward(dx, dy.dev, x.dev, 1e-6f, scale);
                EXPECT_TRUE(matches(out, ref, "norm", dt));
                EXPECT_TRUE(matches(dx, dx_ref, "norm", dt));
                EXPECT_TRUE(out.guards_intact());
                EXPECT_TRUE(dx.guards_intact());
                Guarded inplace = preset(dt, x.host), dx2 = preset(dt, dy.host);
                ops::l2norm(inplace, inplace, 1e-6f, scale);
                ops::l2norm_backward(dx2, dx2, x.dev, 1e-6f, scale);
                EXPECT_TRUE(matches(inplace, ref, "norm", dt));
                EXPECT_TRUE(matches(dx2, dx_ref, "norm", dt));
            }
}

// A row that is not 16-byte aligned takes the element-by-element path.
TEST(CudaNorm, MisalignedRowsMatchCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage) {
        SCOPED_TRACE(dtype_name(dt));
        const int64_t C = 3840;
        In x = make_in(randn({C + 1}, 21, 2.0f), dt), w = make_in(randu({C}, 22, 0.5f, 1.5f), dt);
        const Tensor xv = x.dev.view().narrow0(1, C).reshape({1, C});
        OwnedTensor ref(DType::f32, {1, C});
        ops::rmsnorm(ref, x.host.view().narrow0(1, C).reshape({1, C}), w.host, 1e-6f);
        Guarded out(dt, {C + 1});
        out.poison();
        ops::rmsnorm(out.view().narrow0(1, C).reshape({1, C}), xv, w.dev, 1e-6f);
        EXPECT_TRUE(matches(out.view().narrow0(1, C).reshape({1, C}), ref, "norm", dt));
        EXPECT_TRUE(out.guards_intact());
    }
}

// ---- rotary position embedding
// -------------------------------------------------------------------

struct RopeCase {
    Shape x;  // [..., H, D]
    float scaling;
};
const RopeCase kRopeCases[] = {{{1, 30, 128}, 1.0f},
                               {{5, 3, 64}, 1.25f},
                               {{33, 2, 6}, 1.0f},
                               {{2, 7, 4, 128}, 0.8f},
                               {{64, 1, 128}, 1.0f}};

TEST(CudaRope, ForwardAndBackwardMatchCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const RopeCase& c : kRopeCases) {
            SCOPED_TRACE(cat(dtype_name(dt), " x numel ", numel(c.x), " D ", last(c.x)));
            const int64_t D = last(c.x), H = c.x[c.x.size() - 2], N = numel(c.x) / (H * D);
            OwnedTensor freq(DType::f32, {D / 2});
            for (int64_t i = 0; i < D / 2; ++i)
                freq.f32()[i] = float(std::pow(500000.0, -2.0 * double(i) / double(D)));
            OwnedTensor freq_dev = to_device(freq, DType::f32);
            const auto pos = random_ints(N, 0, 5000, 31);
            OwnedTensor pos_host = index_tensor(pos, DType::i32, Device::cpu);
            OwnedTensor pos_dev = index_tensor(pos, DType::i32, Device::cuda);
            In x = make_in(randn(c.x, 32), dt), dy = make_in(randn(c.x, 33), dt);
            OwnedTensor ref = host_like(x.host), dx_ref = host_like(x.host);
            ops::rope(ref, x.host, pos_host, freq, c.scaling);
            ops::rope_backward(dx_ref, dy.host, pos_host, freq, c.scaling);
            Guarded out = out_like(dt, x.host), dx = out_like(dt, x.host);
            ops::rope(out, x.dev, pos_dev, freq_dev, c.scaling);
            ops::rope_backward(dx, dy.dev, pos_dev, freq_dev, c.scaling);
            EXPECT_TRUE(matches(out, ref, "rope", dt));
            EXPECT_TRUE(matches(dx, dx_ref, "rope", dt));
            EXPECT_TRUE(out.guards_intact());
            EXPECT_TRUE(dx.guards_intact());
            Guarded inplace = preset(dt, x.host), dx2 = preset(dt, dy.host);
            ops::rope(inplace, inplace, pos_dev, freq_dev, c.scaling);
            ops::rope_backward(dx2, dx2, pos_dev, freq_dev, c.scaling);
            EXPECT_TRUE(matches(inplace, ref, "rope", dt));
            EXPECT_TRUE(matches(dx2, dx_ref, "rope", dt));
        }
}

// ---- KV cache
// ------------------------------------------------------------------------------------

TEST(CudaCache, KvAppendMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    struct Case {
        int64_t B, L, T, H, D;
    };
    for (DType dt : kStorage)
        for (const Case& c : {Case{1, 20, 1, 2, 128}, Case{3, 20, 5, 2, 128}, Case{3, 9, 1, 3, 7},
                              Case{2, 16, 16, 1, 96}, Case{4, 64, 1, 30, 128}}) {
            SCOPED_TRACE(
                cat(dtype_name(dt), " B ", c.B, " L ", c.L, " T ", c.T, " H ", c.H, " D ", c.D));
            OwnedTensor cache0 = rounded(randn({c.B, c.L, c.H, c.D}, 41), dt);
            In x = make_in(randn({c.B, c.T, c.H, c.D}, 42), dt);
            std::vector<int64_t> start(static_cast<size_t>(c.B));
            for (int64_t b = 0; b < c.B; ++b) start[size_t(b)] = (b * 7) % (c.L - c.T + 1);
            OwnedTensor ref = host_copy(cache0);
            ops::kv_append(ref, x.host, index_tensor(start, DType::i32, Device::cpu));
            Guarded cache = preset(dt, cache0);
            ops::kv_append(cache, x.dev, index_tensor(start, DType::i32, Device::cuda));
            EXPECT_TRUE(matches(cache, ref, "elementwise", dt));
            EXPECT_TRUE(cache.guards_intact());
        }
}

// ---- causal conv + SiLU
// --------------------------------------------------------------------------

struct ConvCase {
    int64_t B, T, Ch, W;
    bool state;
};
const ConvCase kConvCases[] = {
    {1, 1, 96, 4, true},   {4, 1, 5760, 4, true},  {64, 1, 2880, 4, true}, {2, 1, 7, 4, true},
    {1, 2, 64, 4, true},   {2, 3, 64, 4, true},    {1, 7, 33, 3, true},    {2, 16, 96, 4, true},
    {2, 17, 96, 4, true},  {1, 63, 128, 4, false}, {2, 64, 128, 4, true},  {3, 65, 64, 4, true},
    {2, 65, 7, 4, false},  {1, 20, 16, 6, true},   {2, 5, 16, 8, true},    {1, 9, 8, 1, true},
    {2, 40, 24, 2, false}, {2, 1, 96, 4, false},   {1, 63, 96, 4, true},   {1, 64, 96, 4, false},
};

TEST(CudaConv, ForwardMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const ConvCase& c : kConvCases)
            for (uint64_t seed : {1, 2}) {
                SCOPED_TRACE(cat(dtype_name(dt), " B ", c.B, " T ", c.T, " Ch ", c.Ch, " W ", c.W,
                                 c.state ? " with state" : " without state", " seed ", seed));
                In x = make_in(randn({c.B, c.T, c.Ch}, seed, 2.0f), dt);
                In w = make_in(randn({c.Ch, c.W}, seed + 1, 0.5f), dt);
                OwnedTensor s0 = rounded(randn({c.B, c.W - 1, c.Ch}, seed + 2, 2.0f), dt);
                OwnedTensor ref = host_like(x.host), s_ref = host_copy(s0);
                ops::conv1d_silu(ref, x.host, w.host, c.state ? s_ref.view() : Tensor());
                Guarded out = out_like(dt, x.host), state = preset(dt, s0);
                ops::conv1d_silu(out, x.dev, w.dev, c.state ? state.view() : Tensor());
                EXPECT_TRUE(matches(out, ref, "conv", dt));
                EXPECT_TRUE(matches(state, s_ref, "conv", dt));
                EXPECT_TRUE(out.guards_intact());
                EXPECT_TRUE(state.guards_intact());
            }
}

// A sequence fed in pieces (one segment, several segments, single steps) through the rolling state
// gives the outputs and final state of one call over the whole sequence.
TEST(CudaConv, PiecewiseDecodingMatchesOneCall) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (int64_t W : {4, 3}) {
            SCOPED_TRACE(cat(dtype_name(dt), " W ", W));
            const int64_t T = 45, Ch = 96;
            In x = make_in(randn({1, T, Ch}, 51, 2.0f), dt),
               w = make_in(randn({Ch, W}, 52, 0.5f), dt);
            OwnedTensor ref = host_like(x.host), s_ref(DType::f32, {1, W - 1, Ch});
            s_ref.fill(0.0f);
            ops::conv1d_silu(ref, x.host, w.host, s_ref);
            Guarded out = out_like(dt, x.host), state = preset(dt, host_like(s_ref));
            const Tensor xs = x.dev.view().reshape({T, Ch}), os = out.view().reshape({T, Ch});
            int64_t t = 0;
            for (int64_t len : {17, 1, 1, 2, 16, 1, 7}) {
                ops::conv1d_silu(os.narrow0(t, len).reshape({1, len, Ch}),
                                 xs.narrow0(t, len).reshape({1, len, Ch}), w.dev, state);
                t += len;
            }
            ASSERT_EQ(t, T);
            EXPECT_TRUE(matches(out, ref, "conv", dt));
            EXPECT_TRUE(matches(state, s_ref, "conv", dt));
            EXPECT_TRUE(out.guards_intact());
        }
}

const ConvCase kConvBackwardCases[] = {
    {1, 1, 96, 4, false}, {2, 3, 64, 4, false},     {2, 17, 96, 4, false}, {1, 64, 128, 4, false},
    {2, 65, 7, 4, false}, {1, 200, 40, 4, false},   {3, 33, 16, 6, false}, {1, 300, 32, 3, false},
    {2, 10, 8, 1, false}, {4, 130, 5760, 4, false},
};

TEST(CudaConv, BackwardMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const ConvCase& c : kConvBackwardCases)
            for (uint64_t seed : {1, 2}) {
                SCOPED_TRACE(cat(dtype_name(dt), " B ", c.B, " T ", c.T, " Ch ", c.Ch, " W ", c.W,
                                 " seed ", seed));
                In x = make_in(randn({c.B, c.T, c.Ch}, seed, 2.0f), dt);
                In w = make_in(randn({c.Ch, c.W}, seed + 1, 0.5f), dt);
                In dy = make_in(randn({c.B, c.T, c.Ch}, seed + 3), dt);
                OwnedTensor dw0 = rounded(randn({c.Ch, c.W}, seed + 4), dt);
                OwnedTensor dx_ref = host_like(x.host), dw_ref = host_copy(dw0);
                ops::conv1d_silu_backward(dx_ref, dw_ref, dy.host, x.host, w.host);
                Guarded dx = out_like(dt, x.host), dw = preset(dt, dw0);
                ops::conv1d_silu_backward(dx, dw, dy.dev, x.dev, w.dev);
                EXPECT_TRUE(matches(dx, dx_ref, "conv", dt));
                EXPECT_TRUE(matches(dw, dw_ref, "conv", dt));
                EXPECT_TRUE(dx.guards_intact());
                EXPECT_TRUE(dw.guards_intact());
            }
}

// ---- GDN gates
// -----------------------------------------------------------------------------------

struct GatesCase {
    int64_t N, H;
};
const GatesCase kGatesCases[] = {{1, 30}, {7, 30}, {64, 30}, {5, 7}, {700, 33}, {3000, 30}};

TEST(CudaGates, ForwardAndBackwardMatchCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (const GatesCase& c : kGatesCases)
            for (bool neg : {true, false}) {
                SCOPED_TRACE(cat(dtype_name(dt), " N ", c.N, " H ", c.H, neg ? " neg" : ""));
                // a + dt_bias spans both sides of softplus's threshold at 20.
                In a = make_in(randu({c.N, c.H}, 61, -25.0f, 25.0f), dt);
                In b = make_in(randn({c.N, c.H}, 62, 3.0f), dt);
                In A_log = make_in(randu({c.H}, 63, -1.0f, 2.0f), dt);
                In dt_bias = make_in(randu({c.H}, 64, -2.0f, 2.0f), dt);
                OwnedTensor g_ref(DType::f32, {c.N, c.H}), beta_ref(DType::f32, {c.N, c.H});
                ops::gdn_gates(g_ref, beta_ref, a.host, b.host, A_log.host, dt_bias.host, neg);
                Guarded g = out_like(DType::f32, g_ref), beta = out_like(DType::f32, beta_ref);
                ops::gdn_gates(g, beta, a.dev, b.dev, A_log.dev, dt_bias.dev, neg);
                // g and beta are f32 outputs of identical inputs.
                EXPECT_TRUE(matches(g, g_ref, "gates", DType::f32));
                EXPECT_TRUE(matches(beta, beta_ref, "gates", DType::f32));
                EXPECT_TRUE(g.guards_intact());
                EXPECT_TRUE(beta.guards_intact());

                In d_g = make_in(randn({c.N, c.H}, 65), DType::f32);
                In d_beta = make_in(randn({c.N, c.H}, 66), DType::f32);
                OwnedTensor dA0 = rounded(randn({c.H}, 67), dt),
                            db0 = rounded(randn({c.H}, 68), dt);
                OwnedTensor da_ref = host_like(a.host), db_ref = host_like(a.host);
                OwnedTensor dA_ref = host_copy(dA0), dbias_ref = host_copy(db0);
                ops::gdn_gates_backward(da_ref, db_ref, dA_ref, dbias_ref, d_g.host, d_beta.host,
                                        a.host, b.host, A_log.host, dt_bias.host, neg);
                Guarded da = out_like(dt, a.host), db = out_like(dt, a.host);
                Guarded dA = preset(dt, dA0), dbias = preset(dt, db0);
                ops::gdn_gates_backward(da, db, dA, dbias, d_g.dev, d_beta.dev, a.dev, b.dev,
                                        A_log.dev, dt_bias.dev, neg);
                EXPECT_TRUE(matches(da, da_ref, "gates", dt));
                EXPECT_TRUE(matches(db, db_ref, "gates", dt));
                EXPECT_TRUE(matches(dA, dA_ref, "gates", dt));
                EXPECT_TRUE(matches(dbias, dbias_ref, "gates", dt));
                EXPECT_TRUE(da.guards_intact());
                EXPECT_TRUE(db.guards_intact());
                EXPECT_TRUE(dA.guards_intact());
                EXPECT_TRUE(dbias.guards_intact());
            }
}

// ---- GVA head repeat
// -----------------------------------------------------------------------------

TEST(CudaHeads, RepeatAndBackwardMatchCpu) {
    OLMO_REQUIRE_CUDA();
    struct Case {
        int64_t N, Hk, rep, D;
    };
    for (DType dt : kStorage)
        for (const Case& c : {Case{1, 2, 3, 96}, Case{5, 1, 4, 7}, Case{3, 3, 1, 128},
                              Case{4, 2, 2, 33}, Case{64, 30, 2, 96}}) {
            SCOPED_TRACE(cat(dtype_name(dt), " N ", c.N, " Hk ", c.Hk, " rep ", c.rep, " D ", c.D));
            const int64_t Hv = c.Hk * c.rep;
            In x = make_in(randn({c.N, c.Hk, c.D}, 71), dt),
               dy = make_in(randn({c.N, Hv, c.D}, 72), dt);
            OwnedTensor ref(DType::f32, {c.N, Hv, c.D}), dx_ref = host_like(x.host);
            ops::repeat_heads(ref, x.host);
            ops::repeat_heads_backward(dx_ref, dy.host);
            Guarded out = out_like(dt, ref), dx = out_like(dt, x.host);
            ops::repeat_heads(out, x.dev);
            ops::repeat_heads_backward(dx, dy.dev);
            EXPECT_TRUE(matches(out, ref, "elementwise", dt));
            EXPECT_TRUE(matches(dx, dx_ref, "elementwise", dt));
            EXPECT_TRUE(out.guards_intact());
            EXPECT_TRUE(dx.guards_intact());
        }
}

// ---- loss --------------------------------------------------------------------------------------

struct LossCase {
    int64_t N, V;
    float z_loss;
};
const LossCase kLossCases[] = {{1, 33, 0.0f},    {7, 33, 1e-4f},     {64, 1000, 0.0f},
                               {9, 4096, 1e-4f}, {3, 100352, 1e-4f}, {5, 7, 0.0f}};

TEST(CudaLoss, CrossEntropyMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    const int64_t ignore = -100;
    for (DType dt : kStorage)
        for (DType id_dt : {DType::i32, DType::i64})
            for (const LossCase& c : kLossCases) {
                SCOPED_TRACE(cat(dtype_name(dt), " targets ", dtype_name(id_dt), " N ", c.N, " V ",
                                 c.V, " z ", c.z_loss));
                In logits = make_in(randn({c.N, c.V}, 81, 2.0f), dt);
                auto targets = random_ints(c.N, 0, c.V, 82);
                for (int64_t n = 1; n < c.N; n += 3) targets[size_t(n)] = ignore;
                OwnedTensor t_host = index_tensor(targets, id_dt, Device::cpu);
                OwnedTensor t_dev = index_tensor(targets, id_dt, Device::cuda);
                OwnedTensor d_ref = host_like(logits.host);
                int64_t count_ref = -1, count = -1;
                const double loss_ref =
                    ops::cross_entropy(d_ref, logits.host, t_host, c.z_loss, ignore, &count_ref);
                Guarded d = out_like(dt, logits.host);
                const double loss =
                    ops::cross_entropy(d, logits.dev, t_dev, c.z_loss, ignore, &count);
                EXPECT_EQ(count, count_ref);
                EXPECT_TRUE(scalar_matches(loss, loss_ref, tolerance("loss", dt)));
                EXPECT_TRUE(matches(d, d_ref, "loss_grad", dt));
                EXPECT_TRUE(d.guards_intact());
                // Without a gradient, and with the gradient written over the logits.
                EXPECT_TRUE(scalar_matches(
                    ops::cross_entropy(Tensor(), logits.dev, t_dev, c.z_loss, ignore), loss_ref,
                    tolerance("loss", dt)));
                Guarded inplace = preset(dt, logits.host);
                EXPECT_TRUE(
                    scalar_matches(ops::cross_entropy(inplace, inplace, t_dev, c.z_loss, ignore),
                                   loss_ref, tolerance("loss", dt)));
                EXPECT_TRUE(matches(inplace, d_ref, "loss_grad", dt));
                EXPECT_TRUE(inplace.guards_intact());
            }
}

TEST(CudaLoss, AllRowsIgnoredGiveZero) {
    OLMO_REQUIRE_CUDA();
    In logits = make_in(randn({4, 10}, 91), DType::f32);
    OwnedTensor t = index_tensor({-1, -1, -1, -1}, DType::i32, Device::cuda);
    Guarded d = out_like(DType::f32, logits.host);
    int64_t count = -1;
    EXPECT_EQ(ops::cross_entropy(d, logits.dev, t, 0.0f, -1, &count), 0.0);
    EXPECT_EQ(count, 0);
    EXPECT_TRUE(close(d, host_like(logits.host), 0.0));
}

TEST(CudaLoss, TargetOutsideVocabularyIsReported) {
    OLMO_REQUIRE_CUDA();
    In logits = make_in(randn({3, 10}, 92), DType::f32);
    OwnedTensor t = index_tensor({1, 10, 2}, DType::i64, Device::cuda);
    EXPECT_THROW(ops::cross_entropy(Tensor(), logits.dev, t, 0.0f, -100), Error);
    // The stream is still usable afterwards.
    OwnedTensor ok = index_tensor({1, 9, 2}, DType::i64, Device::cuda);
    EXPECT_TRUE(std::isfinite(ops::cross_entropy(Tensor(), logits.dev, ok, 0.0f, -100)));
}

// ---- optimiser ---------------------------------------------------------------------------------

TEST(CudaOptim, SumSquaresMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (int64_t n : {int64_t(1), int64_t(7), int64_t(4099), (int64_t(1) << 20) + 3}) {
            SCOPED_TRACE(cat(dtype_name(dt), " n ", n));
            In x = make_in(randn({n}, 101, 3.0f), dt);
            // The inputs are identical and both sums are f64: the f32 bound applies to both dtypes.
            EXPECT_TRUE(scalar_matches(ops::sum_squares(x.dev), ops::sum_squares(x.host),
                                       tolerance("elementwise", DType::f32)));
        }
}

TEST(CudaOptim, AdamwMatchesCpu) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage)
        for (int64_t n : {1, 7, 4099, 100003})
            for (int64_t step : {1, 10}) {
                SCOPED_TRACE(cat(dtype_name(dt), " n ", n, " step ", step));
                OwnedTensor p0 = rounded(randn({n}, 111, 0.02f), dt);
                OwnedTensor m0 = rounded(randn({n}, 112, 0.01f), dt);
                OwnedTensor v0 = rounded(randu({n}, 113, 0.0f, 1e-4f), dt);
                In g = make_in(randn({n}, 114, 0.01f), dt);
                OwnedTensor p_ref = host_copy(p0), m_ref = host_copy(m0), v_ref = host_copy(v0);
                ops::adamw(p_ref, m_ref, v_ref, g.host, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step,
                           0.7f);
                Guarded p = preset(dt, p0), m = preset(dt, m0), v = preset(dt, v0);
                ops::adamw(p, m, v, g.dev, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.7f);
                EXPECT_TRUE(matches(p, p_ref, "elementwise", dt));
                EXPECT_TRUE(matches(m, m_ref, "elementwise", dt));
                EXPECT_TRUE(matches(v, v_ref, "elementwise", dt));
                EXPECT_TRUE(p.guards_intact());
                EXPECT_TRUE(m.guards_intact());
                EXPECT_TRUE(v.guards_intact());
                // A view that starts one element in (element-by-element path).
                if (n > 1) {
                    const int64_t k = n - 1;
                    OwnedTensor p_ref2 = host_copy(p0), m_ref2 = host_copy(m0),
                                v_ref2 = host_copy(v0);
                    ops::adamw(p_ref2.view().narrow0(1, k), m_ref2.view().narrow0(1, k),
                               v_ref2.view().narrow0(1, k), g.host.view().narrow0(1, k), 1e-3f,
                               0.9f, 0.95f, 1e-8f, 0.1f, step, 0.7f);
                    Guarded p2 = preset(dt, p0), m2 = preset(dt, m0), v2 = preset(dt, v0);
                    ops::adamw(p2.view().narrow0(1, k), m2.view().narrow0(1, k),
                               v2.view().narrow0(1, k), g.dev.view().narrow0(1, k), 1e-3f, 0.9f,
                               0.95f, 1e-8f, 0.1f, step, 0.7f);
                    EXPECT_TRUE(matches(p2, p_ref2, "elementwise", dt));
                    EXPECT_TRUE(matches(m2, m_ref2, "elementwise", dt));
                    EXPECT_TRUE(matches(v2, v_ref2, "elementwise", dt));
                }
            }
}

// ---- CUDA graph capture of the decode path
// -------------------------------------------------------

// conv1d_silu (T = 1, rolling state) + rmsnorm + gdn_gates captured on the op stream, replayed
// twice, give exactly what two eager calls give (and match the CPU).
TEST(CudaGraph, DecodeStepReplaysLikeEager) {
    OLMO_REQUIRE_CUDA();
    for (DType dt : kStorage) {
        SCOPED_TRACE(dtype_name(dt));
        const int64_t B = 4, Ch = 2880, W = 4, H = 30;
        In x = make_in(randn({B, 1, Ch}, 121, 2.0f), dt),
           w = make_in(randn({Ch, W}, 122, 0.5f), dt);
        In nw = make_in(randu({Ch}, 123, 0.5f, 1.5f), dt);
        In a = make_in(randn({B, H}, 124, 3.0f), dt), b = make_in(randn({B, H}, 125, 3.0f), dt);
        In A_log = make_in(randu({H}, 126, -1.0f, 2.0f), dt),
           dt_bias = make_in(randu({H}, 127, -2.0f, 2.0f), dt);
        OwnedTensor s0 = rounded(randn({B, W - 1, Ch}, 128, 2.0f), dt);

        struct Buffers {
            Guarded conv, norm, state, g, beta;
        };
        auto make = [&] {
            return Buffers{out_like(dt, x.host), out_like(dt, x.host), preset(dt, s0),
                           Guarded(DType::f32, {B, H}), Guarded(DType::f32, {B, H})};
        };
        auto step = [&](const Buffers& o) {
            ops::conv1d_silu(o.conv, x.dev, w.dev, o.state);
            ops::rmsnorm(o.norm, o.conv, nw.dev, 1e-6f);
            ops::gdn_gates(o.g, o.beta, a.dev, b.dev, A_log.dev, dt_bias.dev, true);
        };
        Buffers graph_out = make(), eager_out = make();

        ASSERT_TRUE(capture_and_replay([&] { step(graph_out); }, 2));
        for (int i = 0; i < 2; ++i) step(eager_out);

        EXPECT_TRUE(close(graph_out.conv, to_host_f32(eager_out.conv), 0.0));
        EXPECT_TRUE(close(graph_out.norm, to_host_f32(eager_out.norm), 0.0));
        EXPECT_TRUE(close(graph_out.state, to_host_f32(eager_out.state), 0.0));
        EXPECT_TRUE(close(graph_out.g, to_host_f32(eager_out.g), 0.0));
        EXPECT_TRUE(close(graph_out.beta, to_host_f32(eager_out.beta), 0.0));
        for (const Guarded* g :
             {&graph_out.conv, &graph_out.norm, &graph_out.state, &graph_out.g, &graph_out.beta})
            EXPECT_TRUE(g->guards_intact());

        // The CPU, two steps.
        OwnedTensor conv_ref = host_like(x.host), norm_ref = host_like(x.host),
                    s_ref = host_copy(s0);
        OwnedTensor g_ref(DType::f32, {B, H}), beta_ref(DType::f32, {B, H});
        for (int i = 0; i < 2; ++i) {
            ops::conv1d_silu(conv_ref, x.host, w.host, s_ref);
            ops::rmsnorm(norm_ref, conv_ref, nw.host, 1e-6f);
            ops::gdn_gates(g_ref, beta_ref, a.host, b.host, A_log.host, dt_bias.host, true);
        }
        EXPECT_TRUE(matches(graph_out.conv, conv_ref, "conv", dt));
        EXPECT_TRUE(matches(graph_out.state, s_ref, "conv", dt));
        EXPECT_TRUE(matches(graph_out.g, g_ref, "gates", DType::f32));
        EXPECT_TRUE(matches(graph_out.beta, beta_ref, "gates", DType::f32));
        // The CPU normalises the f32 conv output; the device the rounded one: compare with the norm
        // of the device's conv output.
        OwnedTensor conv_dev = to_host_f32(graph_out.conv), norm_ref2 = host_like(x.host);
        ops::rmsnorm(norm_ref2, conv_dev, nw.host, 1e-6f);
        EXPECT_TRUE(matches(graph_out.norm, norm_ref2, "norm", dt));
    }
}

}  // namespace
}  // namespace olmo::testing
