// Optimiser, schedules, skip-step, the trainer's checkpoints and its exact resume, and a checkpoint
// write killed half way.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "io/safetensors.h"
#include "ops/ops.h"
#include "testing.h"
#include "train/trainer.h"

extern char** environ;

namespace olmo {
namespace {

namespace fs = std::filesystem;

ModelConfig tiny_config(int64_t hidden = 32, int64_t vocab = 64) {
    nlohmann::json j = {{"model_type", "olmo_hybrid"},
                        {"vocab_size", vocab},
                        {"hidden_size", hidden},
                        {"intermediate_size", 2 * hidden},
                        {"num_hidden_layers", 4},
                        {"num_attention_heads", 2},
                        {"linear_num_key_heads", 2},
                        {"linear_key_head_dim", hidden / 4},
                        {"linear_value_head_dim", hidden / 2},
                        {"rope_parameters", nullptr},
                        {"eos_token_id", 1}};
    return ModelConfig::from_json(j, "tiny");
}

std::string random_data(const std::string& dir, int64_t tokens, int32_t vocab, uint64_t seed) {
    TokenShardWriter w(dir + "/shard-00000.tok", kNoEos, uint32_t(vocab));
    // A learnable stream: a noisy repeating pattern.
    std::vector<int32_t> t(tokens);
    Rng rng(seed, 3);
    for (int64_t i = 0; i < tokens; ++i)
        t[i] = rng.uniform(i) < 0.1 ? int32_t(rng.uniform(i + 7777777) * vocab)
                                    : int32_t((i * 7) % 23);
    w.add_document(t);
    w.finish();
    return dir;
}

TEST(AdamW, OneStepEqualsHandComputed) {
    Model model = Model::load(testing::shared_dir() + "/fixtures/olmo-hybrid-tiny");
    SafetensorsReader ref = SafetensorsReader::open(
        testing::shared_dir() + "/fixtures/olmo-hybrid-tiny/reference.safetensors");
    const Tensor ids = ref.get("input_ids").view();
    ModelWeights grads(model.config(), Device::cpu, DType::f32);
    ops::fill(grads.flat(), 0.0f);
    Arena arena;
    forward_backward(model, ids, next_token_targets(ids), grads, 1.0f, {}, arena);
    OwnedTensor before = to_host_f32(model.weights().flat());
    AdamWConfig cfg;
    cfg.clip_norm = 0.5;  // the fixture's gradient norm is larger: clipping is exercised
    AdamW opt(model.weights(), cfg);
    const double norm = AdamW::grad_norm(grads);
    ASSERT_GT(norm, cfg.clip_norm);
    const double lr = 3e-3;
    opt.step(model.weights(), grads, lr, norm);
    // By hand, in double: first step, m = (1-β1)·g', v = (1-β2)·g'², g' = g·clip/(norm + 1e-6).
    const double clip = cfg.clip_norm / (norm + 1e-6);
    double worst = 0;
    for (size_t p = 0; p < grads.table().size(); ++p) {
        const int64_t n = grads.params()[p].numel(), off = grads.offset_of(p);
        const double wd = grads.table()[p].weight_decay ? cfg.weight_decay : 0.0;
        for (int64_t i = 0; i < n; ++i) {
            const double g = double(grads.flat().f32()[off + i]) * clip;
            const double m = (1 - cfg.beta1) * g, v = (1 - cfg.beta2) * g * g;
            const double x0 = before.f32()[off + i];
            const double expect =
                x0 * (1 - lr * wd) -
                (lr / (1 - cfg.beta1)) * m / (std::sqrt(v / (1 - cfg.beta2)) + cfg.eps);
            const double got = model.weights().flat().f32()[off + i];
            worst = std::max(worst, std::fabs(got - expect) / (std::fabs(expect) + 1e-3));
        }
    }
    EXPECT_LT(worst, 1e-6);
    EXPECT_FALSE(model.config().raw.empty());
    // The embedding is exempt from weight decay.
    EXPECT_FALSE(grads.table()[0].weight_decay);
    EXPECT_EQ(grads.table()[0].name, "model.embed_tokens.weight");
}

TEST(Schedule, ShapesOfTheCurves) {
    Schedule s;
    s.lr = 1.0;
    s.warmup = 10;
    s.total = 110;
    s.alpha_f = 0.1;
    EXPECT_NEAR(s.at(0), 1.0 / 11, 1e-12);
    EXPECT_NEAR(s.at(10), 1.0, 1e-12);
    EXPECT_NEAR(s.at(60), 0.55, 1e-12);  // half way through the cosine: (1 + α)/2
    EXPECT_NEAR(s.at(110), 0.1, 1e-12);
    s.kind = "linear";
    EXPECT_NEAR(s.at(60), 0.55, 1e-12);
    s.kind = "wsd";
    s.decay_fraction = 0.5;
    EXPECT_NEAR(s.at(50), 1.0, 1e-12);  // stable until step 55 = 110 - 0.5·110
    EXPECT_NEAR(s.at(88), 0.4, 1e-12);  // then linear to 0: (110 - 88) / 55
    s.kind = "bogus";
    EXPECT_THROW(s.validate(), Error);
}

TEST(SkipStep, SpikeIsSkipped) {
    SkipStepMonitor m(6.0, 128, 20);
    for (int i = 0; i < 30; ++i)
        EXPECT_FALSE(m.should_skip(2.0 + 0.01 * (i % 5), 1.0 + 0.01 * (i % 3)));
    EXPECT_TRUE(m.should_skip(9.0, 1.0));   // loss spike
    EXPECT_TRUE(m.should_skip(2.0, 50.0));  // gradient-norm spike
    EXPECT_TRUE(m.should_skip(NAN, 1.0));
    EXPECT_FALSE(m.should_skip(2.02, 1.01));
}

TEST(Checkpoint, TrainedModelLoadsBackIdentically) {
    const ModelConfig cfg = tiny_config();
    ModelWeights w(cfg, Device::cpu, DType::f32);
    w.init_random(5);
    Model m(cfg, std::move(w));
    const std::string dir = testing::temp_dir() + "/model";
    save_model(m, dir, DType::f32);
    Model back = Model::load(dir);
    ASSERT_EQ(back.weights().num_params(), m.weights().num_params());
    EXPECT_EQ(0, std::memcmp(back.weights().flat().data, m.weights().flat().data,
                             m.weights().flat().nbytes()));
}

std::vector<double> train_losses(const std::string& out, const std::string& data_dir, int64_t steps,
                                 int64_t stop_at, bool resume, uint64_t init_seed) {
    const ModelConfig cfg = tiny_config();
    ModelWeights w(cfg, Device::cpu, DType::f32);
    w.init_random(init_seed);
    Model model(cfg, std::move(w));
    TokenStream data = TokenStream::open({data_dir});
    TrainOptions o;
    o.output_dir = out;
    o.steps = steps;
    o.stop_at_step = stop_at;
    o.batch_size = 2;
    o.seq_len = 24;
    o.grad_accum = 2;
    o.schedule.lr = 3e-3;
    o.schedule.warmup = 2;
    o.eval_every = 3;
    o.eval_batches = 1;
    o.checkpoint_every = 4;
    o.progress = false;
    Trainer t(model, data, o);
    if (resume) t.resume(out);
    std::vector<double> losses;
    t.run([&](const StepMetrics& m) { losses.push_back(m.loss); });
    return losses;
}

TEST(Trainer, ResumeIsBitIdentical) {
    const std::string data = random_data(testing::temp_dir(), 4000, 64, 11);
    const std::string a = testing::temp_dir(), b = testing::temp_dir();
    const std::vector<double> whole = train_losses(a, data, 10, 0, false, 1);
    ASSERT_EQ(whole.size(), 10u);
    const std::vector<double> first = train_losses(b, data, 10, 6, false, 1);
    ASSERT_EQ(first.size(), 6u);
    // A different initialisation proves the resumed run takes the checkpoint's weights.
    const std::vector<double> rest = train_losses(b, data, 10, 0, true, 999);
    ASSERT_EQ(rest.size(), 4u);
    for (int i = 0; i < 6; ++i) EXPECT_EQ(first[i], whole[i]) << "step " << i + 1;
    for (int i = 0; i < 4; ++i) EXPECT_EQ(rest[i], whole[6 + i]) << "step " << 7 + i;
    EXPECT_LT(whole.back(), whole.front());
    // The metrics file holds each step once, in order.
    std::ifstream csv(b + "/metrics.csv");
    std::string line;
    std::getline(csv, line);
    int64_t expect = 1;
    while (std::getline(csv, line)) EXPECT_EQ(std::stoll(line), expect++);
    EXPECT_EQ(expect, 11);
    EXPECT_TRUE(fs::exists(b + "/model/model.safetensors"));
}

// Kills the trainer (SIGKILL) at different moments while it checkpoints every step; whatever the
// moment, the newest complete checkpoint loads and training resumes from it.
TEST(Trainer, KilledWhileCheckpointingLeavesTheLastCheckpointIntact) {
    const std::string bin = std::string(OLMO_BINARY_DIR) + "/bin/olmo-hybrid";
    ASSERT_TRUE(fs::exists(bin)) << bin;
    const std::string dir = testing::temp_dir();
    const std::string data = random_data(testing::temp_dir(), 20000, 64, 12);
    const ModelConfig cfg =
        tiny_config(128, 64);  // big enough that a checkpoint takes a while to write
    std::ofstream(dir + "/config.json") << cfg.raw.dump();
    const std::string out = dir + "/run";
    auto spawn = [&](std::vector<std::string> args) {
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_t pid;
        EXPECT_EQ(0, posix_spawn(&pid, bin.c_str(), nullptr, nullptr, argv.data(), environ));
        return pid;
    };
    std::vector<std::string> base = {bin,
                                     "train",
                                     "--config",
                                     dir + "/config.json",
                                     "--data",
                                     data,
                                     "--output",
                                     out,
                                     "--steps",
                                     "100000",
                                     "--checkpoint-every",
                                     "1",
                                     "--eval-every",
                                     "0",
                                     "--batch-size",
                                     "1",
                                     "--seq-len",
                                     "16",
                                     "--sample-tokens",
                                     "0",
                                     "--max-minutes",
                                     "0",
                                     "--threads",
                                     "1"};
    int resumed = 0;
    for (int round = 0; round < 6; ++round) {
        std::vector<std::string> args = base;
        if (round > 0) args.insert(args.end(), {"--resume", "latest"});
        const pid_t pid = spawn(args);
        std::this_thread::sleep_for(std::chrono::milliseconds(700 + 137 * round));
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
        const std::string latest = find_latest_checkpoint(out);
        if (latest.empty()) continue;  // killed before the first checkpoint
        for (const char* f :
             {"model.safetensors", "optimizer.safetensors", "config.json", "trainer_state.json"})
            EXPECT_TRUE(fs::exists(fs::path(latest) / f)) << latest << "/" << f;
        EXPECT_NO_THROW(SafetensorsReader::open(latest + "/model.safetensors"));
        EXPECT_NO_THROW(Model::load(latest));
        ++resumed;
    }
    EXPECT_GE(resumed, 3);
    // No partial checkpoint is ever named like a complete one.
    for (const auto& e : fs::directory_iterator(out + "/checkpoints")) {
        if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0) {
            EXPECT_TRUE(fs::exists(e.path() / "trainer_state.json")) << e.path();
        }
    }
}

}  // namespace
}  // namespace olmo
