// Small helpers shared by the subcommands: option parsing and the device/thread options.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace olmo::cli {

// "1,2,3" -> {1, 2, 3}; errors name the option and the bad item.
std::vector<int32_t> parse_id_list(const std::string& text, const std::string& option);
Device parse_device(const std::string& s);
DType parse_dtype(const std::string& s, const std::string& option);
// Sets the number of OpenMP / BLAS threads (0 = all cores).
void set_threads(int threads);

struct RuntimeOptions {
    std::string device = "cpu";
    std::string dtype;  // "" = f32 on the CPU, bf16 on CUDA
    int threads = 0;
};
// The weights/activations dtype for a device: --dtype if given (f32 on the CPU only; f32 or bf16 on
// CUDA).
DType parse_model_dtype(const RuntimeOptions& o, Device device);
// True if a model folder says how to read text (tokenizer.json, or the byte-tokenizer marker).
bool has_tokenizer(const std::string& model_dir);
void add_runtime_options(CLI::App* cmd, RuntimeOptions& o);

}  // namespace olmo::cli
