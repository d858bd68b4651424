// CPU benchmark of the engine: prefill and decode tokens/s of a ~110M-parameter Olmo Hybrid built
// in memory (random init, spec §7.1), and the share of time in each op (matrix products first).
//   bench_cpu [--prompt 512] [--decode 32] [--threads N] [--config config.json]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include "core/rng.h"
#include "infer/decode_graph.h"
#include "model/model.h"
#include "ops/ops.h"

using namespace olmo;
using clock_type = std::chrono::steady_clock;

namespace {

const char* kConfig = R"({
  "model_type": "olmo_hybrid", "vocab_size": 32000, "hidden_size": 640, "intermediate_size": 1792,
  "num_hidden_layers": 12, "num_attention_heads": 10, "num_key_value_heads": 10,
  "linear_num_key_heads": 10, "linear_num_value_heads": 10, "linear_key_head_dim": 48, "linear_value_head_dim": 96,
  "rope_parameters": null, "eos_token_id": 1})";

// Wall-clock time per op (CPU ops are synchronous).
struct WallObserver : ops::OpObserver {
    std::map<std::string, double> seconds;
    clock_type::time_point t;
    void begin(const char*, Device) override { t = clock_type::now(); }
    void end(const char* op, Device) override {
        seconds[op] += std::chrono::duration<double>(clock_type::now() - t).count();
    }
};

double elapsed(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

void report(const char* phase, const WallObserver& w, double total) {
    std::vector<std::pair<double, std::string>> rows;
    for (auto& [op, s] : w.seconds) rows.emplace_back(s, op);
    std::sort(rows.rbegin(), rows.rend());
    std::printf("  %s time by op:\n", phase);
    for (auto& [s, op] : rows)
        if (s / total >= 0.005) std::printf("    %-22s %6.1f%%\n", op.c_str(), 100.0 * s / total);
}

}  // namespace

int main(int argc, char** argv) {
    int64_t prompt = 512, decode = 32;
    std::string config_path;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--prompt")
            prompt = std::stoll(v);
        else if (k == "--decode")
            decode = std::stoll(v);
        else if (k == "--threads")
            omp_set_num_threads(std::stoi(v));
        else if (k == "--config")
            config_path = v;
    }
    try {
        const ModelConfig c = config_path.empty()
                                  ? ModelConfig::from_json(nlohmann::json::parse(kConfig), "bench")
                                  : ModelConfig::from_file(config_path);
        ModelWeights w(c, Device::cpu, DType::f32);
        w.init_random(1);
        Model model(c, std::move(w));
        std::printf("model: %.1f M parameters (%s), %d threads\n",
                    double(model.weights().num_params()) / 1e6,
                    c.summary().substr(0, c.summary().find('\n')).c_str(), omp_get_max_threads());
        InferenceState st(model, 1, prompt + decode + 1);
        Arena arena;
        OwnedTensor ids(DType::i32, {1, prompt});
        Rng r(3, 1);
        for (int64_t i = 0; i < prompt; ++i)
            ids->as<int32_t>()[i] = int32_t(r.uniform(uint64_t(i)) * 30000);
        OwnedTensor logits(DType::f32, {1, c.vocab_size});
        ForwardOutputs out;
        out.logits = logits;
        out.last_only = true;
        // Warm-up (arena sizing, BLAS threads) on a short prompt.
        {
            InferenceState warm(model, 1, 64);
            const Tensor first(ids->data, DType::i32, Device::cpu,
                               {1, std::min<int64_t>(prompt, 32)});
            forward(model, &warm, 0, first, out, arena);
        }
        WallObserver pw;
        ops::set_observer(&pw);
        auto t0 = clock_type::now();
        forward(model, &st, 0, ids, out, arena);
        const double prefill_s = elapsed(t0);
        ops::set_observer(nullptr);
        DecodeGraph dg(model, st, 1);
        std::vector<int32_t> next = {7};
        dg.step(next);
        WallObserver dw;
        ops::set_observer(&dw);
        t0 = clock_type::now();
        for (int64_t i = 0; i < decode; ++i) {
            dg.step(next);
            next = dg.greedy();
        }
        const double decode_s = elapsed(t0);
        ops::set_observer(nullptr);
        auto gemm_share = [](WallObserver& w, double total) {
            return 100.0 * (w.seconds["matmul"] + w.seconds["matmul_segments"]) / total;
        };
        std::printf(
            "prefill %lld tokens: %.3f s = %.1f tok/s (matrix products %.0f%% of the time)\n",
            (long long)prompt, prefill_s, double(prompt) / prefill_s, gemm_share(pw, prefill_s));
        report("prefill", pw, prefill_s);
        std::printf(
            "decode %lld tokens: %.3f s = %.1f tok/s (matrix products %.0f%% of the time)\n",
            (long long)decode, decode_s, double(decode) / decode_s, gemm_share(dw, decode_s));
        report("decode", dw, decode_s);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_cpu: %s\n", e.what());
        return 1;
    }
    return 0;
}
