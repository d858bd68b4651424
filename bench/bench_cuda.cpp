// GPU benchmarks of the engine, printing JSON lines (one per measurement) for scripts/gpu/bench:
//   bench_cuda gdn  --B 1 --T 2048 --H 30 --Dk 96 --Dv 192     chunked GDN forward alone
//   bench_cuda e2e  --model DIR [--prompts 2048,8192] [--batches 1,16,64] [--context 512] [--steps
//   64]
//   bench_cuda e2e  --config config.json [--seed 0] ...          random weights made on the device
//   bench_cuda gemv --shapes 17340x3840,3840x5760 [--tokens 1]   decode matrix products alone
// Timings use CUDA events around many repetitions (median), inputs are random, never zeros.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <nvtx3/nvToolsExt.h>

#include "core/rng.h"
#include "cuda/profiler.h"
#include "cuda/runtime.h"
#include "cuda/runtime_internal.h"
#include "infer/decode_graph.h"
#include "model/layers.h"
#include "model/model.h"
#include "ops/ops.h"

using namespace olmo;

namespace {

std::map<std::string, std::string> parse(int argc, char** argv) {
    std::map<std::string, std::string> a;
    for (int i = 2; i + 1 < argc; i += 2) a[std::string(argv[i]).substr(2)] = argv[i + 1];
    return a;
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> v;
    size_t i = 0;
    while (i < s.size()) {
        size_t j = s.find(',', i);
        if (j == std::string::npos) j = s.size();
        v.push_back(s.substr(i, j - i));
        i = j + 1;
    }
    return v;
}

std::vector<int64_t> list(const std::string& s) {
    std::vector<int64_t> v;
    for (const std::string& item : split(s)) v.push_back(std::stoll(item));
    return v;
}

OwnedTensor random_device(DType dt, std::initializer_list<int64_t> shape, uint64_t seed, float lo,
                          float hi) {
    OwnedTensor h(DType::f32, shape);
    Rng r(seed, 5);
    for (int64_t i = 0; i < h->numel(); ++i)
        h.f32()[i] = lo + (hi - lo) * float(r.uniform(uint64_t(i)));
    OwnedTensor d(dt, shape, Device::cuda);
    copy_convert(d, h);
    return d;
}

// Median milliseconds of fn() over `reps` runs, timed with events on the stream.
template <class Fn>
double time_ms(Fn&& fn, int reps, int warmup = 2) {
    for (int i = 0; i < warmup; ++i) fn();
    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    std::vector<float> ms;
    for (int i = 0; i < reps; ++i) {
        CUDA_CHECK(cudaEventRecord(a, cuda::current_stream()));
        fn();
        CUDA_CHECK(cudaEventRecord(b, cuda::current_stream()));
        CUDA_CHECK(cudaEventSynchronize(b));
        float t = 0;
        CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
        ms.push_back(t);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

void bench_gdn(const std::map<std::string, std::string>& a) {
    const int64_t B = std::stoll(a.at("B")), T = std::stoll(a.at("T")), H = std::stoll(a.at("H")),
                  Dk = std::stoll(a.at("Dk")), Dv = std::stoll(a.at("Dv"));
    OwnedTensor q = random_device(DType::bf16, {B, T, H, Dk}, 1, -1, 1),
                k = random_device(DType::bf16, {B, T, H, Dk}, 2, -1, 1);
    OwnedTensor v = random_device(DType::bf16, {B, T, H, Dv}, 3, -1, 1);
    OwnedTensor g = random_device(DType::f32, {B, T, H}, 4, -0.5f, -0.01f),
                beta = random_device(DType::f32, {B, T, H}, 5, 0.1f, 1.9f);
    ops::l2norm(q.view().reshape({-1, Dk}), q.view().reshape({-1, Dk}), 1e-6f,
                1.0f / std::sqrt(float(Dk)));
    ops::l2norm(k.view().reshape({-1, Dk}), k.view().reshape({-1, Dk}), 1e-6f, 1.0f);
    OwnedTensor o(DType::bf16, {B, T, H, Dv}, Device::cuda),
        s(DType::f32, {B, H, Dk, Dv}, Device::cuda);
    const double ms = time_ms(
        [&] {
            ops::fill(s, 0.0f);
            ops::gdn_chunked(o, s, q, k, v, g, beta);
        },
        20, 3);
    // FLOPs of the chunked algorithm as counted in performance-anchors §2.4 (full C-terms).
    const double C = 64, flops = double(B) * T * H * (6.0 * Dk * Dv + 6.0 * C * Dk + 4.0 * C * Dv);
    std::printf(
        "{\"bench\": \"gdn_chunked\", \"B\": %lld, \"T\": %lld, \"H\": %lld, \"Dk\": %lld, \"Dv\": "
        "%lld, "
        "\"ms\": %.4f, \"tflops\": %.2f}\n",
        (long long)B, (long long)T, (long long)H, (long long)Dk, (long long)Dv, ms,
        flops / ms / 1e9);
}

void bench_e2e(const std::map<std::string, std::string>& a) {
    const auto prompts = list(a.count("prompts") ? a.at("prompts") : "2048,8192");
    const auto batches = list(a.count("batches") ? a.at("batches") : "1,16,64");
    const int64_t context = a.count("context") ? std::stoll(a.at("context")) : 512;
    const int64_t steps = a.count("steps") ? std::stoll(a.at("steps")) : 64;
    const auto t0 = std::chrono::steady_clock::now();
    cuda::reset_peak_allocated();
    // A checkpoint folder, or a config whose weights are drawn on the device (the values
    // `olmo-hybrid init --seed` writes, without a 15 GB file to write and read back).
    Model model = [&] {
        if (a.count("model")) return Model::load(a.at("model"), Device::cuda, DType::bf16);
        ModelConfig config = ModelConfig::from_file(a.at("config"));
        ModelWeights weights(config, Device::cuda, DType::bf16);
        weights.init_random(a.count("seed") ? std::stoull(a.at("seed")) : 0);
        return Model(std::move(config), std::move(weights));
    }();
    cuda::synchronize();
    const double load_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const ModelConfig& c = model.config();
    const double weight_bytes = double(model.weights().num_params()) * 2;
    const double embed_bytes = double(c.vocab_size * c.hidden_size) * 2;
    std::printf(
        "{\"bench\": \"load\", \"seconds\": %.2f, \"weights_gb\": %.3f, \"device_mb\": %.0f}\n",
        load_s, weight_bytes / 1e9, double(cuda::allocated_bytes()) / 1e6);
    std::fflush(stdout);
    const int64_t V = c.vocab_size;
    auto random_ids = [&](int64_t n, uint64_t seed) {
        OwnedTensor ids(DType::i32, {1, n});
        Rng r(seed, 9);
        for (int64_t i = 0; i < n; ++i)
            ids->as<int32_t>()[i] =
                int32_t(r.uniform(uint64_t(i)) * double(std::min<int64_t>(V, 100000)));
        return ids;
    };
    // Prefill: one prompt into a fresh state, logits of the last position.
    for (int64_t L : prompts) {
        InferenceState st(model, 1, L + 1);
        Arena arena(Device::cuda);
        OwnedTensor logits(model.dtype(), {1, V}, Device::cuda);
        OwnedTensor ids = random_ids(L, 100 + L);
        ForwardOutputs out;
        out.logits = logits;
        out.last_only = true;
        const double ms = time_ms(
            [&] {
                st.reset();
                forward(model, &st, 0, ids, out, arena);
            },
            5, 1);
        std::printf(
            "{\"bench\": \"prefill\", \"tokens\": %lld, \"ms\": %.3f, \"tok_per_s\": %.1f}\n",
            (long long)L, ms, double(L) / ms * 1e3);
        std::fflush(stdout);
    }
    // Decode: B sequences with `context` tokens of history each, greedy steps through the CUDA
    // graph.
    for (int64_t B : batches) {
        InferenceState st(model, B, context + steps + 8);
        Arena arena(Device::cuda);
        for (int64_t b = 0; b < B; ++b) {
            OwnedTensor ids = random_ids(context, 7 + b);
            ForwardOutputs out;
            forward(model, &st, b, ids, out, arena);
        }
        DecodeGraph dg(model, st, B);
        std::vector<int32_t> next(B, 11);
        dg.step(next);  // eager first step
        next = dg.greedy();
        dg.step(next);  // capture
        next = dg.greedy();
        cuda::synchronize();
        const auto s0 = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < steps; ++i) {
            dg.step(next);
            next = dg.greedy();
        }
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
        std::printf(
            "{\"bench\": \"decode\", \"batch\": %lld, \"context\": %lld, \"steps\": %lld, "
            "\"ms_per_step\": %.3f, "
            "\"tok_per_s\": %.1f, \"graph\": %s}\n",
            (long long)B, (long long)context, (long long)steps, s / double(steps) * 1e3,
            double(B * steps) / s, dg.captured() ? "true" : "false");
        std::fflush(stdout);
        if (B == 1) {
            // Per-op time of one eager decode step.
            cuda::OpProfiler prof;
            DecodeGraph eager(model, st, 1, false);
            eager.step(next);
            ops::set_observer(&prof);
            nvtxRangePushA("decode_step");  // for profilers: ncu --nvtx --nvtx-include decode_step/
            eager.step(next);
            nvtxRangePop();
            ops::set_observer(nullptr);
            double total = 0;
            for (auto& [op, e] : prof.collect()) {
                std::printf(
                    "{\"bench\": \"decode_op\", \"op\": \"%s\", \"calls\": %d, \"ms\": %.4f}\n",
                    op.c_str(), e.calls, e.ms);
                total += e.ms;
            }
            std::printf("{\"bench\": \"decode_op_total\", \"ms\": %.4f}\n", total);
        }
    }
    std::printf("{\"bench\": \"memory\", \"peak_mb\": %.0f, \"matmul_weight_bytes\": %.0f}\n",
                double(cuda::peak_allocated_bytes()) / 1e6, weight_bytes - embed_bytes);
}

// Decode-sized matrix products alone: for each shape OxI, out[N, O] = x[N, I] · wᵀ over enough
// distinct weight matrices that none is served from L2, replayed from a CUDA graph (launch gaps as
// in a decode step). Prints the time per product and the weight bytes streamed per second.
void bench_gemv(const std::map<std::string, std::string>& a) {
    const int64_t N = a.count("tokens") ? std::stoll(a.at("tokens")) : 1;
    for (const std::string& shape : split(a.at("shapes"))) {
        const size_t x_at = shape.find('x');
        OLMO_CHECK(x_at != std::string::npos, "shapes are OxI, got ", shape);
        const int64_t O = std::stoll(shape.substr(0, x_at)), I = std::stoll(shape.substr(x_at + 1));
        const double bytes = double(O) * double(I) * 2;
        const int copies = int(std::max(2.0, std::ceil(400e6 / bytes)));  // > 8× the 50 MB L2
        // Random rows tiled over every copy (drawing 400 MB on the host would dominate the run).
        const int64_t tile_rows = std::min<int64_t>(O, 1024);
        OwnedTensor tile = random_device(DType::bf16, {tile_rows, I}, 50, -0.05f, 0.05f);
        std::vector<OwnedTensor> ws;
        for (int i = 0; i < copies; ++i) {
            ws.emplace_back(DType::bf16, std::initializer_list<int64_t>{O, I}, Device::cuda);
            for (int64_t r = 0; r < O; r += tile_rows) {
                const int64_t n = std::min(tile_rows, O - r);
                CUDA_CHECK(cudaMemcpy(static_cast<char*>(ws.back()->data) + r * I * 2, tile->data,
                                      size_t(n * I * 2), cudaMemcpyDeviceToDevice));
            }
        }
        OwnedTensor x = random_device(DType::bf16, {N, I}, 40, -1, 1);
        OwnedTensor out(DType::bf16, {N, O}, Device::cuda);
        cudaStream_t s = cuda::current_stream();
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
        for (int i = 0; i < copies; ++i) ops::matmul(out, x, ws[size_t(i)]);
        CUDA_CHECK(cudaStreamEndCapture(s, &graph));
        CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
        const double ms = time_ms([&] { CUDA_CHECK(cudaGraphLaunch(exec, s)); }, 20, 3) / copies;
        CUDA_CHECK(cudaGraphExecDestroy(exec));
        CUDA_CHECK(cudaGraphDestroy(graph));
        std::printf(
            "{\"bench\": \"gemv\", \"O\": %lld, \"I\": %lld, \"N\": %lld, \"us\": %.2f, "
            "\"tb_per_s\": %.3f}\n",
            (long long)O, (long long)I, (long long)N, ms * 1e3, bytes / ms / 1e9);
        std::fflush(stdout);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_cuda gdn|e2e|gemv --key value ...\n");
        return 2;
    }
    try {
        const std::string what = argv[1];
        const auto a = parse(argc, argv);
        if (what == "gdn")
            bench_gdn(a);
        else if (what == "e2e")
            bench_e2e(a);
        else if (what == "gemv")
            bench_gemv(a);
        else
            fail("unknown benchmark ", what);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_cuda: %s\n", e.what());
        return 1;
    }
    return 0;
}
