// The model against HF transformers (logits, hidden states, greedy continuation), and the
// equivalences that decoding relies on: prefill = token-by-token decode, a prompt in pieces = in
// one piece, a batch = its sequences one by one.
#include <cmath>
#include <cstring>

#include "infer/generate.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "model_fixtures.h"

namespace olmo {
namespace {

using testing::hf_fixture_dirs;

// Expected agreement of an f32 implementation with HF's f32 reference (fixtures/README.md): about
// 1e-5; the bar is 1e-4.
constexpr double kParityTol = 1e-4;
// Two f32 evaluations of the same function by different op orders (chunked vs recurrent GDN, one
// pass vs pieces) differ by accumulated rounding only.
constexpr double kSameFunctionTol = 2e-5;

struct Loaded {
    Model model;
    SafetensorsReader ref;
};

Loaded load(const std::string& dir) {
    return {Model::load(dir), SafetensorsReader::open(dir + "/reference.safetensors")};
}

OwnedTensor ids_slice(const Tensor& ids, int64_t b0, int64_t nb, int64_t t0, int64_t nt) {
    OwnedTensor out(DType::i32, {nb, nt});
    const int64_t T = ids.size(1);
    for (int64_t b = 0; b < nb; ++b)
        for (int64_t t = 0; t < nt; ++t) {
            const int64_t i = (b0 + b) * T + t0 + t;
            out->as<int32_t>()[b * nt + t] =
                int32_t(ids.dtype == DType::i64 ? ids.as<int64_t>()[i] : ids.as<int32_t>()[i]);
        }
    return out;
}

// Runs ids through the model (optionally continuing `state`) and returns logits [B, T, V].
OwnedTensor run(const Model& m, InferenceState* state, int64_t slot0, const Tensor& ids,
                Arena& arena) {
    OwnedTensor logits(DType::f32, {ids.size(0), ids.size(1), m.config().vocab_size});
    ForwardOutputs out;
    out.logits = logits;
    forward(m, state, slot0, ids, out, arena);
    return logits;
}

class HfParity : public ::testing::TestWithParam<std::string> {};

TEST_P(HfParity, LogitsAndHiddenStates) {
    Loaded f = load(GetParam());
    const Tensor ids = f.ref.get("input_ids").view();
    Arena arena;
    OwnedTensor logits(DType::f32, {ids.size(0), ids.size(1), f.model.config().vocab_size});
    int64_t seen = 0;
    ForwardOutputs out;
    out.logits = logits;
    out.on_hidden = [&](int64_t i, const Tensor& h) {
        EXPECT_TRUE(
            testing::close(h, f.ref.get("hidden_states." + std::to_string(i)).view(), kParityTol))
            << "hidden_states." << i;
        ++seen;
    };
    forward(f.model, nullptr, 0, ids, out, arena);
    EXPECT_EQ(seen, f.model.config().num_hidden_layers + 1);
    EXPECT_TRUE(testing::close(logits, f.ref.get("logits").view(), kParityTol));
}

TEST_P(HfParity, GreedyContinuation) {
    Loaded f = load(GetParam());
    const Tensor prompt = f.ref.get("generate.prompt").view();
    const Tensor expect = f.ref.get("generate.tokens").view();
    std::vector<int32_t> p(prompt.numel());
    for (int64_t i = 0; i < prompt.numel(); ++i) p[i] = int32_t(prompt.as<int64_t>()[i]);
    GenerateOptions opt;
    opt.max_new_tokens = expect.numel();
    opt.ignore_eos = true;
    const auto got = generate(f.model, {p}, opt);
    ASSERT_EQ(int64_t(got[0].size()), expect.numel());
    for (int64_t i = 0; i < expect.numel(); ++i)
        EXPECT_EQ(got[0][i], expect.as<int64_t>()[i]) << "token " << i;
}

TEST_P(HfParity, PrefillEqualsDecodeSteps) {
    Loaded f = load(GetParam());
    const Tensor ids = f.ref.get("input_ids").view();
    const int64_t T = ids.size(1);
    Arena arena;
    InferenceState a(f.model, 1, T), b(f.model, 1, T);
    OwnedTensor one = run(f.model, &a, 0, ids_slice(ids, 0, 1, 0, T), arena);
    const int64_t V = f.model.config().vocab_size;
    for (int64_t t = 0; t < T; ++t) {
        OwnedTensor step = run(f.model, &b, 0, ids_slice(ids, 0, 1, t, 1), arena);
        ASSERT_TRUE(
            testing::close(step->reshape({V}), one->select0(0).select0(t), kSameFunctionTol))
            << "t=" << t;
    }
    // The states agree too: recurrent states and conv windows of every GDN layer.
    for (size_t l = 0; l < a.layers.size(); ++l) {
        if (!a.layers[l].recurrent.allocated()) continue;
        EXPECT_TRUE(testing::close(b.layers[l].recurrent, a.layers[l].recurrent, kSameFunctionTol))
            << l;
        EXPECT_TRUE(testing::close(b.layers[l].conv_v, a.layers[l].conv_v, kSameFunctionTol)) << l;
    }
}

TEST_P(HfParity, PromptInPiecesEqualsOnePiece) {
    Loaded f = load(GetParam());
    const Tensor ids = f.ref.get("input_ids").view();
    const int64_t T = ids.size(1);
    Arena arena;
    InferenceState whole(f.model, 1, T);
    OwnedTensor ref = run(f.model, &whole, 0, ids_slice(ids, 1, 1, 0, T), arena);
    // Split points: a first piece shorter than the conv window, and splits off chunk boundaries.
    for (int64_t split : {int64_t(1), int64_t(2), int64_t(T / 2 + 1), T - 3}) {
        InferenceState st(f.model, 1, T);
        OwnedTensor first = run(f.model, &st, 0, ids_slice(ids, 1, 1, 0, split), arena);
        OwnedTensor second = run(f.model, &st, 0, ids_slice(ids, 1, 1, split, T - split), arena);
        EXPECT_TRUE(testing::close(second->select0(0), ref->select0(0).narrow0(split, T - split),
                                   kSameFunctionTol))
            << "split " << split;
        EXPECT_TRUE(
            testing::close(first->select0(0), ref->select0(0).narrow0(0, split), kSameFunctionTol));
    }
}

TEST_P(HfParity, BatchEqualsSequencesOneByOne) {
    Loaded f = load(GetParam());
    const Tensor ids = f.ref.get("input_ids").view();
    const int64_t B = ids.size(0), T = ids.size(1);
    Arena arena;
    OwnedTensor batch = run(f.model, nullptr, 0, ids_slice(ids, 0, B, 0, T), arena);
    for (int64_t b = 0; b < B; ++b) {
        OwnedTensor single = run(f.model, nullptr, 0, ids_slice(ids, b, 1, 0, T), arena);
        EXPECT_TRUE(testing::close(single->select0(0), batch->select0(b), kSameFunctionTol))
            << "sequence " << b;
    }
    // Batched generation of prompts of different lengths equals generating each alone.
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t b = 0; b < B; ++b) {
        OwnedTensor p = ids_slice(ids, b, 1, 0, 5 + 4 * b);
        prompts.emplace_back(p->as<int32_t>(), p->as<int32_t>() + p->numel());
    }
    GenerateOptions opt;
    opt.max_new_tokens = 10;
    opt.ignore_eos = true;
    const auto together = generate(f.model, prompts, opt);
    for (int64_t b = 0; b < B; ++b)
        EXPECT_EQ(together[b], generate(f.model, {prompts[b]}, opt)[0]) << b;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfParity, ::testing::ValuesIn(hf_fixture_dirs()),
                         testing::FixtureTestName());

TEST(ModelInput, RejectsBadIds) {
    Model m = Model::load(testing::shared_dir() + "/fixtures/olmo-hybrid-tiny");
    Arena arena;
    OwnedTensor ids(DType::i64, {1, 3});
    ids->as<int64_t>()[0] = 1;
    ids->as<int64_t>()[1] = 1024;  // vocab is 1024
    ids->as<int64_t>()[2] = 2;
    ForwardOutputs out;
    try {
        forward(m, nullptr, 0, ids, out, arena);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("token id 1024 at position 1"), std::string::npos)
            << e.what();
    }
    ids->as<int64_t>()[1] = -5;
    EXPECT_THROW(forward(m, nullptr, 0, ids, out, arena), Error);
    OwnedTensor empty(DType::i64, {1, 0});
    EXPECT_THROW(forward(m, nullptr, 0, empty, out, arena), Error);
    InferenceState st(m, 1, 2);
    ids->as<int64_t>()[1] = 3;
    EXPECT_THROW(forward(m, &st, 0, ids, out, arena), Error);  // past the state's length limit
}

}  // namespace
}  // namespace olmo

namespace olmo {
namespace {

// Checkpoints written by `olmo-hybrid init` (tests/data/init), loaded by HF transformers, which
// recorded its logits for them (scripts/check_hf_loads.py): HF reads our files as we do.
TEST(InitCheckpoints, HfLoadsThemToTheSameLogits) {
    for (const char* name : {"olmo-hybrid", "olmo3"}) {
        const std::string dir = testing::test_data_dir() + "/init/" + name;
        Model m = Model::load(dir);
        SafetensorsReader ref = SafetensorsReader::open(dir + "/hf_reference.safetensors");
        const Tensor ids = ref.get("input_ids").view();
        OwnedTensor logits(DType::f32, {ids.size(0), ids.size(1), m.config().vocab_size});
        ForwardOutputs out;
        out.logits = logits;
        Arena arena;
        forward(m, nullptr, 0, ids, out, arena);
        EXPECT_TRUE(testing::close(logits, ref.get("logits").view(), kParityTol)) << name;
    }
}

// The random initialisation is a pure function of (config, seed): re-running it reproduces the
// committed checkpoints bit for bit, whatever the thread count.
TEST(InitCheckpoints, InitIsReproducible) {
    const std::pair<const char*, uint64_t> cases[] = {{"olmo-hybrid", 3}, {"olmo3", 4}};
    for (auto [name, seed] : cases) {
        const std::string dir = testing::test_data_dir() + "/init/" + name;
        const ModelConfig config = ModelConfig::from_file(dir);
        const DType dt = SafetensorsReader::open(dir).get("model.norm.weight").dtype;
        const std::string out = testing::temp_dir() + "/model.safetensors";
        write_random_checkpoint(config, out, seed, dt);
        SafetensorsReader a = SafetensorsReader::open(out), b = SafetensorsReader::open(dir);
        ASSERT_EQ(a.entries().size(), b.entries().size());
        for (const auto& e : a.entries()) {
            const SafetensorsEntry& f = b.get(e.name);
            ASSERT_EQ(e.nbytes, f.nbytes) << e.name;
            EXPECT_EQ(0, std::memcmp(e.data, f.data, e.nbytes)) << name << ": " << e.name;
        }
        // Init statistics follow spec §7.1: normal weights with std = initializer_range, norms at
        // one.
        ModelWeights w(config, Device::cpu, DType::f32);
        w.load(out);
        const Tensor emb = w.param("model.embed_tokens.weight");
        double sum2 = 0, maxabs = 0;
        for (int64_t i = 0; i < emb.numel(); ++i) {
            sum2 += double(emb.f32()[i]) * emb.f32()[i];
            maxabs = std::max(maxabs, double(std::fabs(emb.f32()[i])));
        }
        const double std = std::sqrt(sum2 / double(emb.numel()));
        EXPECT_NEAR(std / config.initializer_range, 0.986, 0.06)
            << name;  // truncated at 3σ: std ≈ 0.986σ
        EXPECT_LE(maxabs, 3 * config.initializer_range * 1.01) << name;
        EXPECT_EQ(w.param("model.norm.weight").f32()[0], 1.0f);
    }
}

}  // namespace
}  // namespace olmo
