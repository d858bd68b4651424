// The olmo-hybrid command end to end: each kind of bad input gives one line on stderr, a non-zero
// exit and no output file (nor a damaged previous one); generate, chat, init and inspect on small
// models.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/safetensors.h"
#include "testing.h"

namespace olmo {
namespace {

namespace fs = std::filesystem;

struct Result {
    int code;
    std::string out, err;
};

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// Runs the command with `args` (shell words), feeding `input` on stdin.
Result run(const std::string& args, const std::string& input = "") {
    const std::string dir = testing::temp_dir();
    std::ofstream(dir + "/stdin") << input;
    const std::string cmd = std::string(OLMO_BINARY_DIR) + "/bin/olmo-hybrid " + args + " < " +
                            dir + "/stdin > " + dir + "/stdout 2> " + dir + "/stderr";
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
            slurp(dir + "/stdout"), slurp(dir + "/stderr")};
}

const std::string kHybrid = testing::shared_dir() + "/fixtures/olmo-hybrid-tiny";

// A copy of the hybrid fixture that the test may damage.
std::string model_copy() {
    const std::string dir = testing::temp_dir() + "/model";
    fs::create_directories(dir);
    for (const char* f : {"config.json", "model.safetensors"})
        fs::copy_file(kHybrid + "/" + f, dir + "/" + f);
    return dir;
}

std::string ids_file(const std::vector<int64_t>& ids, int64_t B, int64_t T) {
    const std::string path = testing::temp_dir() + "/ids.safetensors";
    OwnedTensor t(DType::i64, {B, T});
    for (size_t i = 0; i < ids.size(); ++i) t->as<int64_t>()[i] = ids[i];
    SafetensorsWriter w;
    w.add("input_ids", t);
    w.write(path);
    return path;
}

// One line on stderr naming the problem, exit 1, and the output left as it was.
void expect_clean_failure(const Result& r, const std::string& needle, const std::string& output,
                          const std::string& previous) {
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("olmo-hybrid: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos)
        << "expected \"" << needle << "\" in: " << r.err;
    if (previous.empty())
        EXPECT_FALSE(fs::exists(output));
    else
        EXPECT_EQ(slurp(output), previous);
}

TEST(Cli, ForwardWritesLogitsAndHiddenStates) {
    const std::string out = testing::temp_dir() + "/out.safetensors";
    const Result r =
        run("forward --model " + kHybrid + " --input " + ids_file({5, 6, 7, 8, 9, 10}, 2, 3) +
            " --output " + out + " --hidden-states");
    ASSERT_EQ(r.code, 0) << r.err;
    SafetensorsReader rd = SafetensorsReader::open(out);
    EXPECT_EQ(rd.get("logits").shape, (std::vector<int64_t>{2, 3, 1024}));
    EXPECT_NE(rd.find("hidden_states.4"), nullptr);
}

TEST(Cli, BadInputsFailCleanly) {
    const std::string out = testing::temp_dir() + "/out.safetensors";
    const std::string good_ids = ids_file({1, 2, 3}, 1, 3);
    {  // truncated safetensors
        const std::string m = model_copy();
        fs::resize_file(m + "/model.safetensors", fs::file_size(m + "/model.safetensors") / 2);
        expect_clean_failure(
            run("forward --model " + m + " --input " + good_ids + " --output " + out),
            "past the end", out, "");
    }
    {  // malformed header
        const std::string m = model_copy();
        std::fstream f(m + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(8);
        f << "{{{{";
        f.close();
        expect_clean_failure(
            run("forward --model " + m + " --input " + good_ids + " --output " + out),
            "not valid JSON", out, "");
    }
    {  // unknown model_type
        const std::string m = model_copy();
        std::string cfg = slurp(m + "/config.json");
        cfg.replace(cfg.find("\"olmo_hybrid\""), 13, "\"llama\"");
        std::ofstream(m + "/config.json") << cfg;
        expect_clean_failure(
            run("forward --model " + m + " --input " + good_ids + " --output " + out),
            "unsupported model_type \"llama\"", out, "");
    }
    {  // missing tensor
        const std::string m = model_copy();
        SafetensorsReader rd = SafetensorsReader::open(m + "/model.safetensors");
        SafetensorsWriter w;
        for (const auto& e : rd.entries())
            if (e.name != "model.layers.1.mlp.up_proj.weight") w.add(e.name, e.view());
        w.write(m + "/model2.safetensors");
        fs::rename(m + "/model2.safetensors", m + "/model.safetensors");
        expect_clean_failure(
            run("forward --model " + m + " --input " + good_ids + " --output " + out),
            "missing tensor \"model.layers.1.mlp.up_proj.weight\"", out, "");
    }
    // Token id outside the vocabulary, and empty input; an existing output file survives untouched.
    std::ofstream(out) << "previous result";
    expect_clean_failure(run("forward --model " + kHybrid + " --input " +
                             ids_file({1, 1024, 2}, 1, 3) + " --output " + out),
                         "token id 1024 at position 1", out, "previous result");
    expect_clean_failure(
        run("forward --model " + kHybrid + " --input " + ids_file({}, 1, 0) + " --output " + out),
        "empty", out, "previous result");
    expect_clean_failure(run("generate --model " + kHybrid + " --prompt-ids 1,99999"),
                         "outside the vocabulary", "", "");
    expect_clean_failure(run("generate --model " + kHybrid + " --prompt-ids 1,x"), "not a token id",
                         "", "");
    expect_clean_failure(run("inspect --model /nonexistent/model"), "cannot read", "", "");
    // Wrong options are reported by the parser with a usage hint (exit code 2 from CLI11 is fine).
    const Result bad = run("generate --model " + kHybrid + " --prompt-ids 1 --temperature -1");
    EXPECT_NE(bad.code, 0);
}

TEST(Cli, GenerateMatchesHfGreedyTokens) {
    SafetensorsReader ref = SafetensorsReader::open(kHybrid + "/reference.safetensors");
    const Tensor p = ref.get("generate.prompt").view(), t = ref.get("generate.tokens").view();
    std::string prompt, expect;
    for (int64_t i = 0; i < p.numel(); ++i)
        prompt += (i ? "," : "") + std::to_string(p.as<int64_t>()[i]);
    for (int64_t i = 0; i < t.numel(); ++i)
        expect += (i ? " " : "") + std::to_string(t.as<int64_t>()[i]);
    const Result r =
        run("generate --model " + kHybrid + " --prompt-ids " + prompt + " --max-new-tokens " +
            std::to_string(t.numel()) + " --ignore-eos --print-ids");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, expect + "\n");
}

TEST(Cli, InitThenInspectAndChat) {
    const std::string dir = testing::temp_dir() + "/m";
    const std::string cfg = testing::temp_dir() + "/config.json";
    std::ofstream(cfg)
        << R"({"model_type": "olmo_hybrid", "vocab_size": 320, "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 4, "num_attention_heads": 2, "linear_num_key_heads": 2, "linear_key_head_dim": 8,
        "linear_value_head_dim": 16, "rope_parameters": null, "eos_token_id": 256})";
    Result r = run("init --config " + cfg + " --output " + dir + " --dtype f32 --seed 4");
    ASSERT_EQ(r.code, 0) << r.err;
    r = run("inspect --model " + dir);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("model.layers.0.linear_attn.q_conv1d.weight"), std::string::npos);
    // A byte-tokenizer model: two turns, each answered on its own line.
    std::ofstream(dir + "/tokenizer.txt") << "bytes\n";
    r = run("chat --model " + dir + " --temperature 0 --max-new-tokens 6",
            "hello\nand again\n/quit\n");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;
    r = run("generate --model " + dir + " --prompt \"Once upon\" --max-new-tokens 5 --ignore-eos");
    ASSERT_EQ(r.code, 0) << r.err;
}

}  // namespace
}  // namespace olmo
