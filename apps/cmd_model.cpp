// Subcommands that run a model: forward, generate, inspect, init.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "apps/cli_util.h"
#include "apps/commands.h"
#include "apps/text_codec.h"
#include "infer/generate.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/model.h"

namespace olmo::cli {

namespace fs = std::filesystem;

namespace {

struct ForwardArgs {
    std::string model, input, output;
    bool hidden = false;
    RuntimeOptions rt;
};

void run_forward(const ForwardArgs& a) {
    set_threads(a.rt.threads);
    const Device dev = parse_device(a.rt.device);
    const DType model_dtype = parse_model_dtype(a.rt, dev);
    SafetensorsReader in = SafetensorsReader::open(a.input);
    const SafetensorsEntry* ids = in.find("input_ids");
    if (!ids) fail("[forward] ", a.input, ": no tensor named \"input_ids\"");
    if (ids->shape.size() != 2)
        fail("[forward] input_ids must be [B, T], got ", ids->view().shape_str());
    if (ids->numel() == 0) fail("[forward] input_ids is empty");
    // Validate before loading the model, so that bad input fails fast.
    const ModelConfig config = ModelConfig::from_file(a.model);
    validate_ids(ids->view(), config.vocab_size);
    Model model = Model::load(a.model, dev, model_dtype);
    const int64_t B = ids->shape[0], T = ids->shape[1], V = config.vocab_size;
    Arena arena(dev);
    OwnedTensor logits(model.dtype(), {B, T, V}, dev);
    SafetensorsWriter writer;
    ForwardOutputs out;
    out.logits = logits;
    if (a.hidden)
        out.on_hidden = [&](int64_t i, const Tensor& h) {
            writer.add("hidden_states." + std::to_string(i), to_host_f32(h));
        };
    forward(model, nullptr, 0, ids->view(), out, arena);
    writer.add("logits", to_host_f32(logits));
    writer.write(a.output);
}

struct GenerateArgs {
    std::string model, prompt, tokenizer;
    std::vector<std::string> prompt_ids;
    int64_t max_new_tokens = 64;
    SamplingParams sampling;
    bool ignore_eos = false, print_ids = false;
    RuntimeOptions rt;
};

Model load_for(const std::string& dir, const RuntimeOptions& rt) {
    set_threads(rt.threads);
    const Device dev = parse_device(rt.device);
    return Model::load(dir, dev, parse_model_dtype(rt, dev));
}

void run_generate(const GenerateArgs& a) {
    validate(a.sampling);
    if (a.max_new_tokens < 0) fail("[generate] --max-new-tokens must be >= 0");
    if (a.prompt.empty() == a.prompt_ids.empty())
        fail("[generate] give either --prompt TEXT or --prompt-ids 1,2,3 (one or more)");
    const ModelConfig config = ModelConfig::from_file(a.model);
    // Text in or out needs a tokenizer: the model folder's, or --tokenizer.
    std::unique_ptr<TextCodec> codec;
    if (!a.prompt.empty() || (!a.print_ids && (!a.tokenizer.empty() || has_tokenizer(a.model))))
        codec = std::make_unique<TextCodec>(TextCodec::for_model(a.model, a.tokenizer));
    std::vector<std::vector<int32_t>> prompts;
    if (!a.prompt.empty()) {
        prompts.push_back(codec->encode(a.prompt));
        if (prompts.back().empty()) fail("[generate] --prompt encodes to no tokens");
    }
    for (const std::string& p : a.prompt_ids) prompts.push_back(parse_id_list(p, "--prompt-ids"));
    for (const auto& p : prompts)
        validate_ids(
            Tensor(const_cast<int32_t*>(p.data()), DType::i32, Device::cpu, {int64_t(p.size())}),
            config.vocab_size);
    Model model = load_for(a.model, a.rt);
    GenerateOptions opt;
    opt.max_new_tokens = a.max_new_tokens;
    opt.sampling = a.sampling;
    opt.ignore_eos = a.ignore_eos;
    const bool text = codec && !a.print_ids;
    if (prompts.size() == 1) {  // stream as tokens arrive
        bool first = true;
        std::unique_ptr<TextCodec::Stream> stream;
        if (text) stream = std::make_unique<TextCodec::Stream>(*codec);
        opt.on_token = [&](int64_t, int32_t tok) {
            if (text) {
                std::fputs(stream->feed(tok).c_str(), stdout);
            } else {
                std::printf(first ? "%d" : " %d", tok);
            }
            first = false;
            std::fflush(stdout);
            return true;
        };
        generate(model, prompts, opt);
        if (text) std::fputs(stream->finish().c_str(), stdout);
        std::printf("\n");
        return;
    }
    const auto out = generate(model, prompts, opt);
    for (const auto& seq : out) {
        if (text) {
            std::printf("%s\n", codec->decode(seq).c_str());
        } else {
            for (size_t i = 0; i < seq.size(); ++i) std::printf(i ? " %d" : "%d", seq[i]);
            std::printf("\n");
        }
    }
}

void run_inspect(const std::string& dir) {
    const ModelConfig config = ModelConfig::from_file(dir);
    SafetensorsReader r = SafetensorsReader::open(dir);
    std::printf("%s\n", config.summary().c_str());
    int64_t total = 0;
    for (const ParamSpec& s : parameter_table(config)) {
        int64_t n = 1;
        for (int64_t d : s.shape) n *= d;
        total += n;
    }
    const int64_t embed = config.vocab_size * config.hidden_size;
    std::printf("parameters: %lld (%.3f B), %lld without the input embedding\n", (long long)total,
                double(total) / 1e9, (long long)(total - embed));
    std::printf("\n%-64s %-5s %s\n", "tensor (as stored)", "dtype", "shape");
    size_t bytes = 0;
    for (const auto& e : r.entries()) {
        std::printf("%-64s %-5s %s\n", e.name.c_str(), dtype_to_safetensors(e.dtype),
                    e.view().shape_str().c_str());
        bytes += e.nbytes;
    }
    std::printf("%zu tensors, %.3f GB\n", r.entries().size(), double(bytes) / 1e9);
}

struct InitArgs {
    std::string config, output, dtype = "bf16";
    uint64_t seed = 0;
};

void run_init(const InitArgs& a) {
    const DType dt = parse_dtype(a.dtype, "--dtype");
    ModelConfig config = ModelConfig::from_file(a.config);
    std::error_code ec;
    fs::create_directories(a.output, ec);
    if (ec) fail("[init] cannot create ", a.output, ": ", ec.message());
    nlohmann::json j = config.raw;
    j["dtype"] = dt == DType::bf16 ? "bfloat16" : "float32";
    if (j.contains("torch_dtype")) j["torch_dtype"] = j["dtype"];
    write_random_checkpoint(config, (fs::path(a.output) / "model.safetensors").string(), a.seed, dt,
                            true);
    write_file_atomic((fs::path(a.output) / "config.json").string(), j.dump(2) + "\n");
}

}  // namespace

void register_model_commands(CLI::App& app) {
    {
        auto a = std::make_shared<ForwardArgs>();
        auto* cmd = app.add_subcommand(
            "forward", "Run a batch of token ids through the model and write the logits");
        cmd->add_option("--model", a->model, "Model folder (config.json + safetensors)")
            ->required();
        cmd->add_option("--input", a->input, "safetensors file with input_ids (int64 [B, T])")
            ->required();
        cmd->add_option("--output", a->output, "safetensors file to write: logits (f32 [B, T, V])")
            ->required();
        cmd->add_flag(
            "--hidden-states", a->hidden,
            "Also write hidden_states.0 .. hidden_states.L (HF output_hidden_states convention)");
        add_runtime_options(cmd, a->rt);
        cmd->callback([a] { run_forward(*a); });
    }
    {
        auto a = std::make_shared<GenerateArgs>();
        auto* cmd = app.add_subcommand("generate",
                                       "Continue a prompt, streaming the new text (or token ids)");
        cmd->add_option("--model", a->model, "Model folder (config.json + safetensors)")
            ->required();
        cmd->add_option("--prompt", a->prompt,
                        "Prompt text (needs a tokenizer: the model folder's tokenizer.json)");
        cmd->add_option("--prompt-ids", a->prompt_ids,
                        "Prompt token ids, e.g. 1,2,3; repeat the option for a batch of prompts");
        cmd->add_option("--tokenizer", a->tokenizer,
                        "tokenizer.json to use instead of the model folder's");
        cmd->add_option("--max-new-tokens", a->max_new_tokens, "Tokens to generate")
            ->capture_default_str();
        cmd->add_option("--temperature", a->sampling.temperature, "0 = greedy")
            ->capture_default_str();
        cmd->add_option("--top-k", a->sampling.top_k, "Sample among the k most likely (0 = all)")
            ->capture_default_str();
        cmd->add_option("--top-p", a->sampling.top_p, "Nucleus sampling mass (1 = off)")
            ->capture_default_str();
        cmd->add_option("--seed", a->sampling.seed, "Random seed for sampling")
            ->capture_default_str();
        cmd->add_flag("--ignore-eos", a->ignore_eos,
                      "Keep generating after the end-of-sequence token");
        cmd->add_flag("--print-ids", a->print_ids, "Print only the new token ids, space-separated");
        add_runtime_options(cmd, a->rt);
        cmd->callback([a] { run_generate(*a); });
    }
    {
        auto dir = std::make_shared<std::string>();
        auto* cmd = app.add_subcommand(
            "inspect", "Show a checkpoint's configuration, parameter count and tensors");
        cmd->add_option("--model", *dir, "Model folder (config.json + safetensors)")->required();
        cmd->callback([dir] { run_inspect(*dir); });
    }
    {
        auto a = std::make_shared<InitArgs>();
        auto* cmd = app.add_subcommand("init",
                                       "Write a randomly initialised checkpoint (loadable by HF "
                                       "transformers) for a config.json");
        cmd->add_option("--config", a->config, "config.json (olmo_hybrid or olmo3)")->required();
        cmd->add_option("--output", a->output,
                        "Folder to write config.json and model.safetensors into")
            ->required();
        cmd->add_option("--seed", a->seed, "Initialisation seed")->capture_default_str();
        cmd->add_option("--dtype", a->dtype, "bf16 or f32")->capture_default_str();
        cmd->callback([a] { run_init(*a); });
    }
}

}  // namespace olmo::cli
