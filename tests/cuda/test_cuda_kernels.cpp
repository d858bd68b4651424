// The CUDA matrix products, gated delta rule and attention against the CPU reference on the same
// inputs (rounded through the storage dtype), f32 and bf16, with guard zones around every output.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "cuda/runtime_internal.h"
#include "cuda_testing.h"
#include "ops/ops.h"

namespace olmo {
namespace {

using testing::close;
using testing::Guarded;
using testing::rounded;
using testing::to_device;
using testing::tolerance;

const DType kDtypes[] = {DType::f32, DType::bf16};

TEST(CudaMatmul, ForwardAndBackward) {
    OLMO_REQUIRE_CUDA();
    struct Case {
        int64_t N, I, O;
    };
    // Beyond the small cases, the decode GEMV's paths (sized for the H200's 132 SMs): one token
    // with 1 row per warp (5,760 columns), 2 rows (17,000 rows), 4 rows in one wave
    // (9,000 rows, the last block partly empty) and 4 rows over several waves (34,000 rows); 3
    // tokens with 2 rows per warp; every row ending in a partial batch of vectors.
    const Case cases[] = {{1, 96, 5},       {7, 64, 130},  {64, 384, 192},  {3, 3840, 72},
                          {1, 5760, 40},    {2, 1000, 24}, {1, 776, 17000}, {3, 1000, 17000},
                          {1, 1000, 34000}, {1, 520, 9000}};
    for (const Case c : cases) {
        for (DType dt : kDtypes) {
            OwnedTensor x = testing::random_uniform({c.N, c.I}, 1),
                        w = testing::random_uniform({c.O, c.I}, 2, -0.2f, 0.2f);
            OwnedTensor xr = rounded(x, dt), wr = rounded(w, dt);
            OwnedTensor ref(DType::f32, {c.N, c.O});
            ops::matmul(ref, xr, wr);
            Guarded out(dt, {c.N, c.O});
            out.poison();
            OwnedTensor xd = to_device(x, dt), wd = to_device(w, dt);
            ops::matmul(out, xd, wd);
            EXPECT_TRUE(close(out.view(), ref, tolerance("matmul", dt)))
                << c.N << "x" << c.I << "x" << c.O;
            EXPECT_TRUE(out.guards_intact());
            // accumulate: out += x·wᵀ again -> 2·ref
            ops::matmul(out, xd, wd, true);
            OwnedTensor twice(DType::f32, {c.N, c.O});
            ops::scale(twice, ref, 2.0f);
            EXPECT_TRUE(close(out.view(), twice, tolerance("matmul", dt)));
            // backward: d_x = d_out·w; d_w (f32) += d_outᵀ·x
            OwnedTensor dout = testing::random_uniform({c.N, c.O}, 3);
            OwnedTensor doutr = rounded(dout, dt);
            OwnedTensor dx_ref(DType::f32, {c.N, c.I}), dw_ref(DType::f32, {c.O, c.I});
            ops::matmul_backward_input(dx_ref, doutr, wr, false);
            ops::fill(dw_ref, 0.0f);
            ops::matmul_backward_weight(dw_ref, doutr, xr);
            Guarded dx(dt, {c.N, c.I}), dw(DType::f32, {c.O, c.I});
            dx.poison();
            ops::fill(dw, 0.0f);
            OwnedTensor doutd = to_device(dout, dt);
            ops::matmul_backward_input(dx, doutd, wd, false);
            ops::matmul_backward_weight(dw, doutd, xd);
            EXPECT_TRUE(close(dx.view(), dx_ref, tolerance("matmul", dt)));
            EXPECT_TRUE(close(dw.view(), dw_ref,
                              tolerance("matmul", DType::f32) * (dt == DType::f32 ? 1 : 10)));
            EXPECT_TRUE(dx.guards_intact() && dw.guards_intact());
        }
    }
}

TEST(CudaMatmul, SegmentsEqualSeparateProducts) {
    OLMO_REQUIRE_CUDA();
    const int64_t I = 136, rows[3] = {40, 8, 72};
    for (int64_t N : {1, 5, 16, 40}) {
        for (DType dt : kDtypes) {
            OwnedTensor x = testing::random_uniform({N, I}, 11),
                        w = testing::random_uniform({120, I}, 12, -0.3f, 0.3f);
            OwnedTensor xd = to_device(x, dt), wd = to_device(w, dt);
            std::vector<Guarded> outs;
            std::vector<Tensor> views;
            for (int64_t r : rows) {
                outs.emplace_back(dt, std::initializer_list<int64_t>{N, r});
                outs.back().poison();
            }
            for (auto& o : outs) views.push_back(o.view());
            ops::matmul_segments(views, xd, wd);
            int64_t r0 = 0;
            for (size_t s = 0; s < outs.size(); ++s) {
                OwnedTensor ref(DType::f32, {N, rows[s]});
                ops::matmul(ref, rounded(x, dt), rounded(w, dt).view().narrow0(r0, rows[s]));
                EXPECT_TRUE(close(outs[s].view(), ref, tolerance("matmul", dt)))
                    << "N=" << N << " segment " << s;
                EXPECT_TRUE(outs[s].guards_intact());
                r0 += rows[s];
            }
        }
    }
}

struct GdnInputs {
    OwnedTensor q, k, v, g, beta, state;
};

// q, k L2-normalised (q scaled), β ∈ (0, 2), decays mostly mild with some near −20.
GdnInputs gdn_inputs(int64_t B, int64_t T, int64_t H, int64_t Dk, int64_t Dv, uint64_t seed) {
    GdnInputs in{testing::random_normal({B, T, H, Dk}, seed),
                 testing::random_normal({B, T, H, Dk}, seed + 1),
                 testing::random_normal({B, T, H, Dv}, seed + 2),
                 testing::random_uniform({B, T, H}, seed + 3, -1.0f, -0.01f),
                 testing::random_uniform({B, T, H}, seed + 4, 0.01f, 1.99f),
                 testing::random_normal({B, H, Dk, Dv}, seed + 5, 0.3f)};
    ops::l2norm(in.q.view().reshape({-1, Dk}), in.q.view().reshape({-1, Dk}), 1e-6f,
                1.0f / std::sqrt(float(Dk)));
    ops::l2norm(in.k.view().reshape({-1, Dk}), in.k.view().reshape({-1, Dk}), 1e-6f, 1.0f);
    for (int64_t i = 0; i < in.g->numel(); i += 17)
        in.g.f32()[i] = -20.0f;  // strong decay in places
    return in;
}

TEST(CudaGdn, RecurrentAndChunkedMatchTheCpu) {
    OLMO_REQUIRE_CUDA();
    struct Case {
        int64_t B, T, H, Dk, Dv;
    };
    const Case cases[] = {{2, 1, 3, 16, 32},    {2, 63, 3, 16, 32},    {1, 64, 2, 96, 192},
                          {2, 65, 3, 96, 192},  {1, 200, 2, 128, 128}, {1, 130, 2, 12, 20},
                          {2, 16, 30, 96, 192}, {1, 300, 30, 96, 192}, {1, 1000, 3, 128, 128},
                          {3, 700, 2, 64, 96}};
    for (const Case c : cases) {
        for (DType dt : kDtypes) {
            for (bool chunked : {false, true}) {
                GdnInputs in = gdn_inputs(c.B, c.T, c.H, c.Dk, c.Dv, 40 + c.T);
                OwnedTensor qr = rounded(in.q, dt), kr = rounded(in.k, dt), vr = rounded(in.v, dt);
                OwnedTensor o_ref(DType::f32, {c.B, c.T, c.H, c.Dv}),
                    s_ref(DType::f32, {c.B, c.H, c.Dk, c.Dv});
                copy_tensor(s_ref, in.state);
                ops::gdn_recurrent(o_ref, s_ref, qr, kr, vr, in.g, in.beta);
                Guarded o(dt, {c.B, c.T, c.H, c.Dv}), s(DType::f32, {c.B, c.H, c.Dk, c.Dv});
                o.poison();
                copy_tensor(s, in.state);
                OwnedTensor qd = to_device(in.q, dt), kd = to_device(in.k, dt),
                            vd = to_device(in.v, dt);
                OwnedTensor gd = to_device(in.g, DType::f32), bd = to_device(in.beta, DType::f32);
                if (chunked)
                    ops::gdn_chunked(o, s, qd, kd, vd, gd, bd);
                else
                    ops::gdn_recurrent(o, s, qd, kd, vd, gd, bd);
                const std::string what = std::string(chunked ? "chunked" : "recurrent") + " " +
                                         std::string(dtype_name(dt)) + " T=" + std::to_string(c.T) +
                                         " Dk/Dv=" + std::to_string(c.Dk) + "/" +
                                         std::to_string(c.Dv);
                EXPECT_TRUE(close(o.view(), o_ref, tolerance("gdn", dt))) << what;
                EXPECT_TRUE(close(s.view(), s_ref, tolerance("gdn", dt))) << what << " (state)";
                EXPECT_TRUE(o.guards_intact() && s.guards_intact()) << what;
            }
        }
    }
}

// The regime where the chunked form is ill-conditioned: strongly correlated keys, β near 2 and weak
// decay make T = (I + A)⁻¹ large with alternating signs; the bf16 kernels must still track the f32
// reference.
TEST(CudaGdn, CorrelatedKeysAndLargeBeta) {
    OLMO_REQUIRE_CUDA();
    const int64_t B = 1, T = 130, H = 2, Dk = 16, Dv = 32;
    GdnInputs in = gdn_inputs(B, T, H, Dk, Dv, 77);
    OwnedTensor base = testing::random_normal({Dk}, 78);
    for (int64_t r = 0; r < B * T * H; ++r)
        for (int64_t d = 0; d < Dk; ++d)
            in.k.f32()[r * Dk + d] = base.f32()[d] + 0.3f * in.k.f32()[r * Dk + d];
    ops::l2norm(in.k.view().reshape({-1, Dk}), in.k.view().reshape({-1, Dk}), 1e-6f, 1.0f);
    for (int64_t i = 0; i < in.beta->numel(); ++i)
        in.beta.f32()[i] = 1.6f + 0.35f * in.beta.f32()[i] / 2.0f;
    for (int64_t i = 0; i < in.g->numel(); ++i) in.g.f32()[i] = -0.02f;
    const DType dt = DType::bf16;
    OwnedTensor o_ref(DType::f32, {B, T, H, Dv}), s_ref(DType::f32, {B, H, Dk, Dv});
    copy_tensor(s_ref, in.state);
    ops::gdn_recurrent(o_ref, s_ref, rounded(in.q, dt), rounded(in.k, dt), rounded(in.v, dt), in.g,
                       in.beta);
    for (bool chunked : {false, true}) {
        Guarded o(dt, {B, T, H, Dv}), s(DType::f32, {B, H, Dk, Dv});
        copy_tensor(s, in.state);
        OwnedTensor qd = to_device(in.q, dt), kd = to_device(in.k, dt), vd = to_device(in.v, dt);
        OwnedTensor gd = to_device(in.g, DType::f32), bd = to_device(in.beta, DType::f32);
        if (chunked)
            ops::gdn_chunked(o, s, qd, kd, vd, gd, bd);
        else
            ops::gdn_recurrent(o, s, qd, kd, vd, gd, bd);
        // The chunked form rounds W, U and the chunk states to bf16 (as fla does); in this
        // ill-conditioned regime T = (I + A)⁻¹ amplifies those roundings (docs/NUMERICS.md,
        // "gdn_ill_conditioned").
        const double tol = tolerance(chunked ? "gdn_ill_conditioned" : "gdn", dt);
        EXPECT_TRUE(close(o.view(), o_ref, tol)) << (chunked ? "chunked" : "recurrent");
        EXPECT_TRUE(close(s.view(), s_ref, tol)) << (chunked ? "chunked" : "recurrent") << " state";
    }
}

TEST(CudaAttention, MatchesTheCpu) {
    OLMO_REQUIRE_CUDA();
    struct Case {
        int64_t B, Tq, L, Hq, Hkv, D;
        int64_t window;
        std::vector<int32_t> kv_lens;
    };
    const std::vector<Case> cases = {
        {2, 1, 40, 4, 2, 128, 0, {17, 40}}, {2, 1, 40, 4, 4, 96, 0, {1, 33}},
        {1, 64, 64, 2, 2, 128, 0, {64}},    {2, 65, 90, 4, 2, 128, 0, {65, 90}},
        {1, 130, 130, 2, 1, 64, 0, {130}},  {2, 63, 80, 4, 2, 64, 17, {63, 80}},
        {1, 16, 300, 2, 2, 128, 0, {300}},  {1, 200, 200, 2, 2, 128, 33, {200}},
        {2, 24, 50, 3, 3, 32, 0, {24, 50}},
    };
    for (const Case& c : cases) {
        for (DType dt : kDtypes) {
            OwnedTensor q = testing::random_normal({c.B, c.Tq, c.Hq, c.D}, 7),
                        k = testing::random_normal({c.B, c.L, c.Hkv, c.D}, 8),
                        v = testing::random_normal({c.B, c.L, c.Hkv, c.D}, 9);
            OwnedTensor lens(DType::i32, {c.B});
            for (int64_t b = 0; b < c.B; ++b) lens->as<int32_t>()[b] = c.kv_lens[b];
            const float scale = 1.0f / std::sqrt(float(c.D));
            OwnedTensor ref(DType::f32, {c.B, c.Tq, c.Hq, c.D});
            ops::attention(ref, rounded(q, dt), rounded(k, dt), rounded(v, dt), lens, c.window,
                           scale);
            Guarded out(dt, {c.B, c.Tq, c.Hq, c.D});
            out.poison();
            OwnedTensor lens_d(DType::i32, {c.B}, Device::cuda);
            copy_tensor(lens_d, lens);
            ops::attention(out, to_device(q, dt), to_device(k, dt), to_device(v, dt), lens_d,
                           c.window, scale);
            const std::string what = std::string(dtype_name(dt)) + " Tq=" + std::to_string(c.Tq) +
                                     " D=" + std::to_string(c.D) +
                                     " window=" + std::to_string(c.window);
            EXPECT_TRUE(close(out.view(), ref, tolerance("attention", dt))) << what;
            EXPECT_TRUE(out.guards_intact()) << what;
        }
    }
}

// Inputs of a bf16 attention call: host f32 (for the CPU reference, rounded through bf16) and their
// device copies; kv_lens on the host and on the device.
struct AttentionInputs {
    OwnedTensor q, k, v, lens, q_d, k_d, v_d, lens_d;
};

AttentionInputs attention_inputs(int64_t B, int64_t Tq, int64_t L, int64_t Hq, int64_t Hkv,
                                 int64_t D, const std::vector<int32_t>& kv_lens, uint64_t seed) {
    const DType dt = DType::bf16;
    AttentionInputs in;
    in.q = rounded(testing::random_normal({B, Tq, Hq, D}, seed), dt);
    in.k = rounded(testing::random_normal({B, L, Hkv, D}, seed + 1), dt);
    in.v = rounded(testing::random_normal({B, L, Hkv, D}, seed + 2), dt);
    in.q_d = to_device(in.q, dt);
    in.k_d = to_device(in.k, dt);
    in.v_d = to_device(in.v, dt);
    in.lens = OwnedTensor(DType::i32, {B});
    for (int64_t b = 0; b < B; ++b) in.lens->as<int32_t>()[b] = kv_lens[b];
    in.lens_d = OwnedTensor(DType::i32, {B}, Device::cuda);
    copy_tensor(in.lens_d, in.lens);
    return in;
}

// The split-key decode kernel (bf16, head dim 64/128, up to 4 queries per sequence): one run of
// keys and many, runs that do not divide the visible keys, sequences shorter than one run or of
// one key, short sequences in a long buffer, different lengths in a batch, GQA and MHA, sliding
// windows shorter and longer than a run.
TEST(CudaAttention, SplitKeyDecodeMatchesTheCpu) {
    OLMO_REQUIRE_CUDA();
    const DType dt = DType::bf16;
    struct Shape {
        int64_t B, L;
        std::vector<int32_t> kv_lens;  // raised to Tq where shorter
    };
    const std::vector<Shape> shapes = {
        {1, 1, {1}},
        {1, 29, {29}},
        {1, 3000, {3000}},
        {1, 4096, {1234}},
        {3, 2100, {1, 1000, 2051}},
        {3, 300, {300, 65, 33}},
    };
    struct Heads {
        int64_t Hq, Hkv;
    };
    for (const Shape& sh : shapes) {
        for (int64_t D : {64, 128}) {
            for (const Heads h : {Heads{4, 2}, Heads{3, 3}}) {
                for (int64_t Tq : {1, 3}) {
                    const int64_t L = std::max(sh.L, Tq);
                    std::vector<int32_t> kv_lens = sh.kv_lens;
                    for (int32_t& n : kv_lens) n = std::max(n, int32_t(Tq));
                    const AttentionInputs in =
                        attention_inputs(sh.B, Tq, L, h.Hq, h.Hkv, D, kv_lens, 50 + L + D);
                    const float scale = 1.0f / std::sqrt(float(D));
                    for (int64_t window : {0, 17, 333}) {
                        OwnedTensor ref(DType::f32, {sh.B, Tq, h.Hq, D});
                        ops::attention(ref, in.q, in.k, in.v, in.lens, window, scale);
                        Guarded out(dt, {sh.B, Tq, h.Hq, D});
                        out.poison();
                        ops::attention(out, in.q_d, in.k_d, in.v_d, in.lens_d, window, scale);
                        std::string what =
                            "B=" + std::to_string(sh.B) + " L=" + std::to_string(L) + " kv_lens=";
                        for (int32_t n : kv_lens) what += std::to_string(n) + ",";
                        what += " Tq=" + std::to_string(Tq) + " Hq/Hkv=" + std::to_string(h.Hq) +
                                "/" + std::to_string(h.Hkv) + " D=" + std::to_string(D) +
                                " window=" + std::to_string(window);
                        EXPECT_TRUE(close(out.view(), ref, tolerance("attention", dt))) << what;
                        EXPECT_TRUE(out.guards_intact()) << what;
                    }
                }
            }
        }
    }
}

// The splits of a query are combined by the last of its blocks to finish, counted with a counter
// that this block sets back to zero: calls in a row, and a CUDA graph replayed (with another shape
// run eagerly in between), give the reference every time.
TEST(CudaAttention, SplitKeyDecodeRepeatsAndReplays) {
    OLMO_REQUIRE_CUDA();
    const DType dt = DType::bf16;
    const int64_t B = 2, Tq = 1, L = 3000, Hq = 4, Hkv = 2, D = 128;
    const float scale = 1.0f / std::sqrt(float(D));
    const AttentionInputs in = attention_inputs(B, Tq, L, Hq, Hkv, D, {3000, 1500}, 90);
    OwnedTensor ref(DType::f32, {B, Tq, Hq, D});
    ops::attention(ref, in.q, in.k, in.v, in.lens, 0, scale);
    Guarded out(dt, {B, Tq, Hq, D});
    auto run = [&] { ops::attention(out, in.q_d, in.k_d, in.v_d, in.lens_d, 0, scale); };
    auto check = [&](const char* what) {
        EXPECT_TRUE(close(out.view(), ref, tolerance("attention", dt))) << what;
        EXPECT_TRUE(out.guards_intact()) << what;
    };
    for (const char* what : {"eager, first call", "eager, second call"}) {
        out.poison();
        run();
        check(what);
    }

    // Another shape, eagerly (more rows, three queries per sequence, a window).
    const AttentionInputs other = attention_inputs(3, 3, 700, 4, 4, 64, {700, 3, 400}, 91);
    OwnedTensor other_ref(DType::f32, {3, 3, 4, 64});
    ops::attention(other_ref, other.q, other.k, other.v, other.lens, 100, 0.125f);
    Guarded other_out(dt, {3, 3, 4, 64});
    auto run_other = [&] {
        other_out.poison();
        ops::attention(other_out, other.q_d, other.k_d, other.v_d, other.lens_d, 100, 0.125f);
        EXPECT_TRUE(close(other_out.view(), other_ref, tolerance("attention", dt))) << "other";
        EXPECT_TRUE(other_out.guards_intact()) << "other";
    };

    cudaStream_t stream = cuda::current_stream();
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
    run();
    ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    for (const char* what :
         {"graph, first replay", "graph, second replay", "", "graph, replay after another shape"}) {
        if (!*what) {
            run_other();
            continue;
        }
        out.poison();
        ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
        ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
        check(what);
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    out.poison();
    run();
    check("eager after the replays");
}

}  // namespace
}  // namespace olmo
