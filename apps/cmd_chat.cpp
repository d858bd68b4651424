// `olmo-hybrid chat`: an interactive conversation with an instruct checkpoint, kept in the model
// state.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "apps/cli_util.h"
#include "apps/commands.h"
#include "apps/text_codec.h"
#include "infer/chat.h"

namespace olmo::cli {

namespace {

struct ChatArgs {
    std::string model, tokenizer;
    ChatOptions chat;
    RuntimeOptions rt;
};

void run_chat(ChatArgs a) {
    set_threads(a.rt.threads);
    const Device dev = parse_device(a.rt.device);
    const TextCodec codec = TextCodec::for_model(a.model, a.tokenizer);
    std::vector<int32_t> stop;
    if (const Tokenizer* t = codec.tokenizer())
        if (auto id = t->token_to_id("<|im_end|>")) stop.push_back(*id);
    if (codec.eos_id() >= 0) stop.push_back(codec.eos_id());
    Model model = Model::load(a.model, dev, parse_model_dtype(a.rt, dev));
    if (codec.vocab_size() > model.config().vocab_size)
        fail("[chat] the tokenizer has ", codec.vocab_size(), " ids but the model only ",
             model.config().vocab_size);
    ChatSession chat(
        model, [&](const std::string& s) { return codec.encode(s); }, stop, a.chat);
    const bool tty = ::isatty(0) && ::isatty(1);
    if (tty)
        std::printf("chat with %s — /reset starts over, /quit (or Ctrl-D) ends\n", a.model.c_str());
    std::string line;
    while (true) {
        if (tty) {
            std::printf("\nyou> ");
            std::fflush(stdout);
        }
        if (!std::getline(std::cin, line)) break;
        if (line == "/quit" || line == "/exit") break;
        if (line == "/reset") {
            chat.reset();
            if (tty) std::printf("(conversation cleared)\n");
            continue;
        }
        if (line.empty()) continue;
        if (tty) std::printf("\nassistant> ");
        TextCodec::Stream out(codec);
        try {
            chat.turn(line, [&](int32_t tok) {
                std::fputs(out.feed(tok).c_str(), stdout);
                std::fflush(stdout);
            });
        } catch (const Error& e) {
            std::fprintf(stderr, "\nolmo-hybrid: %s\n", e.what());
            if (!tty) throw;
            continue;
        }
        std::printf("%s\n", out.finish().c_str());
        std::fflush(stdout);
    }
}

}  // namespace

void register_chat(CLI::App& app) {
    auto a = std::make_shared<ChatArgs>();
    a->chat.sampling.temperature = 0.7f;
    a->chat.sampling.top_p = 0.9f;
    auto* cmd = app.add_subcommand("chat",
                                   "Talk to an instruct checkpoint (ChatML turns, <|im_start|>role "
                                   "... <|im_end|>); the conversation\n"
                                   "stays in the model state, so each turn only processes the new "
                                   "text. Reads one message per line.");
    cmd->add_option("--model", a->model,
                    "Model folder (config.json + safetensors + tokenizer.json)")
        ->required();
    cmd->add_option("--tokenizer", a->tokenizer,
                    "tokenizer.json to use instead of the model folder's");
    cmd->add_option("--system", a->chat.system, "System message sent before the first turn");
    cmd->add_option("--max-new-tokens", a->chat.max_new_tokens, "Longest reply, in tokens")
        ->capture_default_str();
    cmd->add_option("--max-context", a->chat.max_context, "Tokens the conversation may hold")
        ->capture_default_str();
    cmd->add_option("--temperature", a->chat.sampling.temperature, "0 = greedy")
        ->capture_default_str();
    cmd->add_option("--top-k", a->chat.sampling.top_k, "Sample among the k most likely (0 = all)")
        ->capture_default_str();
    cmd->add_option("--top-p", a->chat.sampling.top_p, "Nucleus sampling mass (1 = off)")
        ->capture_default_str();
    cmd->add_option("--seed", a->chat.sampling.seed, "Random seed")->capture_default_str();
    add_runtime_options(cmd, a->rt);
    cmd->callback([a] { run_chat(*a); });
}

}  // namespace olmo::cli
