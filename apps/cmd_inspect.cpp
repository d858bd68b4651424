// `olmo-hybrid inspect`: what a checkpoint holds.
#include <cstdio>

#include "apps/commands.h"
#include "io/safetensors.h"

namespace olmo::cli {

void register_inspect(CLI::App& app) {
    auto* cmd = app.add_subcommand("inspect", "Show a checkpoint's configuration, parameter count and tensors");
    auto model = std::make_shared<std::string>();
    cmd->add_option("--model", *model, "Model folder (config.json + safetensors)")->required();
    cmd->callback([model] {
        SafetensorsReader r = SafetensorsReader::open(*model);
        for (const auto& e : r.entries())
            std::printf("%-60s %-5s %s\n", e.name.c_str(), dtype_to_safetensors(e.dtype),
                        e.view().shape_str().c_str());
    });
}

}  // namespace olmo::cli
