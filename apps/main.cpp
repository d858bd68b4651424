// olmo-hybrid: the command line. Errors from any subcommand become one line on stderr and exit
// code 1.
#include <cstdio>
#include <exception>

#include "apps/commands.h"
#include "core/check.h"

int main(int argc, char** argv) {
    CLI::App app{
        "olmo-hybrid: run, train and study Olmo Hybrid (Gated DeltaNet + attention) and Olmo 3 "
        "models.\n"
        "Reads Hugging Face checkpoints (config.json + safetensors) directly."};
    app.require_subcommand(1);
    app.set_version_flag("--version", "olmo-hybrid 0.1.0");
    olmo::cli::register_model_commands(app);
    olmo::cli::register_train_commands(app);
    olmo::cli::register_tokenize(app);
    olmo::cli::register_chat(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const olmo::Error& e) {
        std::fprintf(stderr, "olmo-hybrid: error: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "olmo-hybrid: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
