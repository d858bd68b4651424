// Subcommands for training: grad (loss and gradients of a batch), tokenize-corpus, train.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "apps/cli_util.h"
#include "apps/commands.h"
#include "apps/text_codec.h"
#include "infer/generate.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "ops/ops.h"
#include "train/trainer.h"

namespace olmo::cli {

namespace fs = std::filesystem;

namespace {

// The model `train` builds when given no --config: a ~4M-parameter Olmo Hybrid (three Gated
// DeltaNet layers and one attention layer) over the byte vocabulary, sized to learn visibly in
// minutes on a CPU.
const char* kDefaultConfig = R"({
  "model_type": "olmo_hybrid",
  "architectures": ["OlmoHybridForCausalLM"],
  "vocab_size": 320,
  "hidden_size": 256,
  "intermediate_size": 688,
  "num_hidden_layers": 4,
  "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
  "num_attention_heads": 4,
  "num_key_value_heads": 4,
  "linear_num_key_heads": 4,
  "linear_num_value_heads": 4,
  "linear_key_head_dim": 48,
  "linear_value_head_dim": 96,
  "linear_conv_kernel_dim": 4,
  "linear_allow_neg_eigval": true,
  "rope_parameters": {"rope_type": "default", "rope_theta": null},
  "max_position_embeddings": 4096,
  "rms_norm_eps": 1e-06,
  "tie_word_embeddings": false,
  "hidden_act": "silu",
  "initializer_range": 0.02,
  "eos_token_id": 256,
  "pad_token_id": 256,
  "bos_token_id": null
})";

const char* kDefaultCorpus = "/usr/share/doc/python3.11/html/_sources";

struct GradArgs {
    std::string model, input, output;
    float z_loss = 0;
    RuntimeOptions rt;
};

void run_grad(const GradArgs& a) {
    set_threads(a.rt.threads);
    const Device dev = parse_device(a.rt.device);
    SafetensorsReader in = SafetensorsReader::open(a.input);
    const SafetensorsEntry* ids = in.find("input_ids");
    if (!ids) fail("[grad] ", a.input, ": no tensor named \"input_ids\"");
    if (ids->shape.size() != 2 || ids->shape[1] < 2)
        fail("[grad] input_ids must be [B, T] with T >= 2, got ", ids->view().shape_str());
    const ModelConfig config = ModelConfig::from_file(a.model);
    validate_ids(ids->view(), config.vocab_size);
    Model model = Model::load(a.model, dev, DType::f32);
    ModelWeights grads(config, dev, DType::f32);
    ops::fill(grads.flat(), 0.0f);
    OwnedTensor targets = next_token_targets(ids->view());
    LossOptions opt;
    opt.z_loss = a.z_loss;
    Arena arena(dev);
    const LossResult r = forward_backward(model, ids->view(), targets, grads, 1.0f, opt, arena);
    SafetensorsWriter w;
    OwnedTensor loss(DType::f32, {1});
    loss.f32()[0] = float(r.loss);
    w.add("loss", loss);
    for (size_t i = 0; i < grads.table().size(); ++i)
        w.add("grad." + grads.table()[i].name, grads.params()[i]);
    w.write(a.output);
}

struct CorpusArgs {
    std::vector<std::string> inputs;
    std::string output, tokenizer = "bytes", field = "text";
    double shard_mtokens = 100;
    RuntimeOptions rt;
};

std::vector<ShardInfo> run_tokenize_corpus(const CorpusArgs& a) {
    set_threads(a.rt.threads);
    const TextCodec codec = TextCodec::open(a.tokenizer);
    CorpusOptions o;
    o.inputs = a.inputs;
    o.output_dir = a.output;
    o.text_field = a.field;
    if (!(a.shard_mtokens > 0)) fail("[tokenize-corpus] --shard-mtokens must be positive");
    o.shard_tokens = uint64_t(a.shard_mtokens * 1e6);
    o.eos_id = codec.eos_id() >= 0 ? uint32_t(codec.eos_id()) : kNoEos;
    o.vocab_size = uint32_t(codec.vocab_size());
    const auto shards = tokenize_corpus(o, [&](std::string_view t) { return codec.encode(t); });
    uint64_t tokens = 0, docs = 0;
    for (const auto& s : shards) tokens += s.num_tokens, docs += s.num_documents;
    std::fprintf(stderr, "tokenize-corpus: %llu documents, %llu tokens in %zu shard(s) under %s\n",
                 (unsigned long long)docs, (unsigned long long)tokens, shards.size(),
                 a.output.c_str());
    return shards;
}

struct TrainArgs {
    std::string config, init_from, output = "runs/train", tokenizer = "bytes", resume;
    std::vector<std::string> data, text;
    uint64_t init_seed = 0;
    int64_t sample_tokens = 300;
    bool document_mask = false;
    TrainOptions opt;
    RuntimeOptions rt;
};

void print_sample(const Model& model, const TextCodec& codec, const TokenStream& stream,
                  int64_t n) {
    if (n <= 0) return;
    // Prompt: the start of a line near the beginning of the held-out text.
    const uint64_t at =
        stream.size() - std::min<uint64_t>(stream.size(), uint64_t(stream.size() / 20));
    std::vector<int32_t> window(std::min<uint64_t>(400, stream.size() - at));
    stream.read(at, window.size(), window.data());
    size_t begin = 0;
    const std::vector<int32_t> nl = codec.encode("\n");
    for (size_t i = 0; i + 1 < window.size(); ++i)
        if (nl.size() == 1 && window[i] == nl[0]) {
            begin = i + 1;
            break;
        }
    std::vector<int32_t> prompt(window.begin() + begin,
                                window.begin() + std::min(window.size(), begin + 48));
    if (prompt.empty()) prompt.push_back(window.empty() ? 0 : window[0]);
    GenerateOptions g;
    g.max_new_tokens = n;
    g.sampling.temperature = 0.8f;
    g.sampling.top_k = 40;
    g.sampling.seed = 1;
    TextCodec::Stream out(codec);
    std::printf("\n--- sample (prompt from held-out text, temperature 0.8, top-k 40) ---\n%s",
                codec.decode(prompt).c_str());
    g.on_token = [&](int64_t, int32_t tok) {
        std::fputs(out.feed(tok).c_str(), stdout);
        std::fflush(stdout);
        return true;
    };
    generate(model, {prompt}, g);
    std::printf("%s\n--- end of sample ---\n", out.finish().c_str());
}

void run_train(TrainArgs a) {
    set_threads(a.rt.threads);
    const Device dev = parse_device(a.rt.device);
    fs::create_directories(a.output);
    // Data: token shards, or text tokenised now, or the built-in corpus.
    const TextCodec codec = TextCodec::open(a.tokenizer);
    std::vector<std::string> shards = a.data;
    if (shards.empty()) {
        std::vector<std::string> text = a.text;
        if (text.empty()) {
            if (!fs::exists(kDefaultCorpus))
                fail("[train] no --data or --text given and the built-in corpus (", kDefaultCorpus,
                     ", Debian package python3.11-doc) is not installed: run scripts/setup");
            std::fprintf(stderr,
                         "train: no --data given; using the Python documentation sources in %s\n",
                         kDefaultCorpus);
            text.push_back(kDefaultCorpus);
        }
        const std::string data_dir = (fs::path(a.output) / "data").string();
        if (!fs::exists(fs::path(data_dir) / "shard-00000.tok") || a.resume.empty()) {
            CorpusArgs c;
            c.inputs = text;
            c.output = data_dir;
            c.tokenizer = a.tokenizer;
            run_tokenize_corpus(c);
        }
        shards = {data_dir};
    }
    const TokenStream stream = TokenStream::open(shards);
    // Model: a checkpoint, a config (random init), or the built-in config.
    ModelConfig config;
    if (!a.init_from.empty()) {
        config = ModelConfig::from_file(a.init_from);
    } else if (!a.config.empty()) {
        config = ModelConfig::from_file(a.config);
    } else {
        config = ModelConfig::from_json(nlohmann::json::parse(kDefaultConfig), "built-in config");
    }
    if (int64_t(stream.vocab_size()) > config.vocab_size)
        fail("[train] the data was tokenised with ", stream.vocab_size(),
             " ids but the model has a vocabulary of ", config.vocab_size);
    ModelWeights weights(config, dev, DType::f32);
    if (!a.init_from.empty())
        weights.load(a.init_from);
    else
        weights.init_random(a.init_seed);
    Model model(config, std::move(weights));
    int64_t n = model.weights().num_params();
    std::fprintf(stderr, "train: %s, %.2f M parameters, %llu tokens of data, device %s\n",
                 config.summary().substr(0, config.summary().find('\n')).c_str(), double(n) / 1e6,
                 (unsigned long long)stream.size(), a.rt.device.c_str());
    if (a.document_mask) {
        if (stream.eos_id() == kNoEos)
            fail("[train] --document-mask needs shards with an end-of-document token");
        a.opt.loss.document_separator = int64_t(stream.eos_id());
    }
    a.opt.output_dir = a.output;
    Trainer trainer(model, stream, a.opt);
    if (!a.resume.empty()) {
        trainer.resume(a.resume == "latest" ? a.output : a.resume);
        std::fprintf(stderr, "train: resumed at step %lld\n", (long long)trainer.step());
    }
    trainer.run();
    // Byte models carry a marker so that generate/chat know how to read and print text.
    const std::string model_dir = (fs::path(a.output) / "model").string();
    if (codec.is_bytes())
        write_file_atomic((fs::path(model_dir) / "tokenizer.txt").string(), "bytes\n");
    else
        fs::copy_file(a.tokenizer, fs::path(model_dir) / "tokenizer.json",
                      fs::copy_options::overwrite_existing);
    std::fprintf(stderr,
                 "train: final model in %s, metrics in %s/metrics.csv, plot in %s/loss.png\n",
                 model_dir.c_str(), a.output.c_str(), a.output.c_str());
    print_sample(model, codec, stream, a.sample_tokens);
}

}  // namespace

void register_train_commands(CLI::App& app) {
    {
        auto a = std::make_shared<GradArgs>();
        auto* cmd = app.add_subcommand(
            "grad", "Loss and the gradient of every parameter for a batch of token ids");
        cmd->add_option("--model", a->model, "Model folder (config.json + safetensors)")
            ->required();
        cmd->add_option("--input", a->input, "safetensors file with input_ids (int64 [B, T])")
            ->required();
        cmd->add_option("--output", a->output,
                        "safetensors file to write: loss (f32 [1], mean next-token cross-entropy) "
                        "and grad.<name>")
            ->required();
        cmd->add_option("--z-loss", a->z_loss, "z-loss coefficient (adds z·logsumexp² per token)")
            ->capture_default_str();
        add_runtime_options(cmd, a->rt);
        cmd->callback([a] { run_grad(*a); });
    }
    {
        auto a = std::make_shared<CorpusArgs>();
        auto* cmd = app.add_subcommand(
            "tokenize-corpus",
            "Turn text files or JSONL into token shards for training (all cores)");
        cmd->add_option("inputs", a->inputs,
                        "Text files (one document each), .jsonl files, or folders")
            ->required();
        cmd->add_option("--output", a->output, "Folder for shard-NNNNN.tok files")->required();
        cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json, or \"bytes\"")
            ->capture_default_str();
        cmd->add_option("--field", a->field, "JSONL field holding the text")->capture_default_str();
        cmd->add_option("--shard-mtokens", a->shard_mtokens, "Millions of tokens per shard")
            ->capture_default_str();
        add_runtime_options(cmd, a->rt);
        cmd->callback([a] { run_tokenize_corpus(*a); });
    }
    {
        auto a = std::make_shared<TrainArgs>();
        auto* cmd = app.add_subcommand(
            "train",
            "Train a model from scratch or from a checkpoint. With no options: a ~4M-parameter "
            "Olmo Hybrid on the\n"
            "Python documentation, byte tokens, for 2 minutes on the CPU, then a sample.");
        cmd->add_option("--output", a->output, "Run folder (metrics, checkpoints, final model)")
            ->capture_default_str();
        cmd->add_option("--config", a->config, "config.json of the model to build (random init)");
        cmd->add_option("--init-from", a->init_from, "Start from the weights of this model folder");
        cmd->add_option("--init-seed", a->init_seed, "Seed of the random initialisation")
            ->capture_default_str();
        cmd->add_option("--data", a->data,
                        "Token shards or folders of them (from tokenize-corpus)");
        cmd->add_option("--text", a->text,
                        "Text/JSONL files or folders to tokenise into the run folder");
        cmd->add_option("--tokenizer", a->tokenizer, "For --text: tokenizer.json, or \"bytes\"")
            ->capture_default_str();
        cmd->add_option("--resume", a->resume,
                        "Continue from a checkpoint folder, or \"latest\" in --output");
        auto& o = a->opt;
        // Defaults for the built-in demo: a cosine over 250 steps that a 2-minute budget mostly covers on a
        // 2-core machine (~0.7 s per step of 2,048 tokens).
        o.steps = 250;
        o.max_minutes = 2;
        o.batch_size = 16;
        o.seq_len = 128;
        o.schedule.lr = 3e-3;
        o.schedule.warmup = 30;
        o.eval_every = 50;
        o.checkpoint_every = 100;
        o.adamw.weight_decay = 0.1;
        cmd->add_option("--steps", o.steps, "Optimiser steps (the schedule spans them)")
            ->capture_default_str();
        cmd->add_option("--max-minutes", o.max_minutes, "Stop after this much time (0 = no limit)")
            ->capture_default_str();
        cmd->add_option("--batch-size", o.batch_size, "Sequences per micro-batch")
            ->capture_default_str();
        cmd->add_option("--seq-len", o.seq_len, "Tokens per sequence")->capture_default_str();
        cmd->add_option("--grad-accum", o.grad_accum, "Micro-batches per step")
            ->capture_default_str();
        cmd->add_option("--lr", o.schedule.lr, "Peak learning rate")->capture_default_str();
        cmd->add_option("--schedule", o.schedule.kind, "cosine, wsd, linear or constant")
            ->capture_default_str();
        cmd->add_option("--warmup", o.schedule.warmup, "Warm-up steps")->capture_default_str();
        cmd->add_option("--alpha-f", o.schedule.alpha_f,
                        "Final lr as a fraction of the peak (cosine, linear)")
            ->capture_default_str();
        cmd->add_option("--decay-fraction", o.schedule.decay_fraction,
                        "WSD: fraction of steps spent decaying")
            ->capture_default_str();
        cmd->add_option("--weight-decay", o.adamw.weight_decay,
                        "AdamW weight decay (not on embeddings)")
            ->capture_default_str();
        cmd->add_option("--beta1", o.adamw.beta1, "AdamW beta1")->capture_default_str();
        cmd->add_option("--beta2", o.adamw.beta2, "AdamW beta2")->capture_default_str();
        cmd->add_option("--eps", o.adamw.eps, "AdamW epsilon")->capture_default_str();
        cmd->add_option("--clip", o.adamw.clip_norm, "Global gradient-norm clip (0 = off)")
            ->capture_default_str();
        cmd->add_option("--z-loss", o.loss.z_loss, "z-loss coefficient (OLMo uses 1e-5)")
            ->capture_default_str();
        cmd->add_option("--eval-every", o.eval_every, "Held-out loss every N steps")
            ->capture_default_str();
        cmd->add_option("--eval-batches", o.eval_batches, "Held-out batches per evaluation")
            ->capture_default_str();
        cmd->add_option("--heldout", o.heldout_fraction, "Fraction of the data held out")
            ->capture_default_str();
        cmd->add_option("--checkpoint-every", o.checkpoint_every, "Checkpoint every N steps")
            ->capture_default_str();
        cmd->add_option("--keep-checkpoints", o.keep_checkpoints, "Checkpoints kept")
            ->capture_default_str();
        cmd->add_option("--data-seed", o.data_seed, "Seed of the data order")
            ->capture_default_str();
        cmd->add_flag("!--no-skip-steps", o.skip_steps,
                      "Never skip updates on loss or gradient-norm spikes");
        cmd->add_flag("--document-mask", a->document_mask,
                      "Documents in a row do not see each other: attention, conv and GDN state "
                      "restart after\n"
                      "each end-of-document token (default: they flow across, as in Olmo Hybrid's "
                      "pretraining)");
        cmd->add_option("--sample-tokens", a->sample_tokens,
                        "Tokens of the sample printed at the end")
            ->capture_default_str();
        add_runtime_options(cmd, a->rt);
        cmd->callback([a] { run_train(*a); });
    }
}

}  // namespace olmo::cli
