// Subcommands of the `olmo-hybrid` command. Each cmd_*.cpp registers one or more subcommands on the
// top-level CLI11 app; main.cpp calls every register function and turns errors into one-line
// messages.
#pragma once

#include <CLI/CLI.hpp>

namespace olmo::cli {

void register_model_commands(CLI::App& app);  // forward, generate, inspect, init
void register_train_commands(CLI::App& app);  // grad, tokenize-corpus, train
void register_tokenize(CLI::App& app);        // tokenize, detokenize
void register_chat(CLI::App& app);            // chat

}  // namespace olmo::cli
