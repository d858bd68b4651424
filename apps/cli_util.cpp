#include "apps/cli_util.h"

#include <omp.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "core/check.h"

namespace olmo::cli {

std::vector<int32_t> parse_id_list(const std::string& text, const std::string& option) {
    std::vector<int32_t> ids;
    size_t i = 0;
    while (i <= text.size()) {
        size_t j = text.find_first_of(", ", i);
        if (j == std::string::npos) j = text.size();
        const std::string item = text.substr(i, j - i);
        if (!item.empty()) {
            char* end = nullptr;
            errno = 0;
            const long long v = std::strtoll(item.c_str(), &end, 10);
            if (*end != '\0' || errno != 0 || v < 0 || v > INT32_MAX)
                fail("[cli] ", option, ": \"", item,
                     "\" is not a token id (a non-negative integer)");
            ids.push_back(int32_t(v));
        }
        i = j + 1;
    }
    if (ids.empty()) fail("[cli] ", option, ": no token ids given");
    return ids;
}

Device parse_device(const std::string& s) {
    if (s == "cpu") return Device::cpu;
    if (s == "cuda") {
#ifdef OLMO_HAVE_CUDA
        return Device::cuda;
#else
        fail("[cli] --device cuda: this build has no CUDA backend (configure with --preset cuda)");
#endif
    }
    fail("[cli] --device must be cpu or cuda, got \"", s, "\"");
}

DType parse_dtype(const std::string& s, const std::string& option) {
    if (s == "f32" || s == "float32") return DType::f32;
    if (s == "bf16" || s == "bfloat16") return DType::bf16;
    fail("[cli] ", option, " must be bf16 or f32, got \"", s, "\"");
}

void set_threads(int threads) {
    if (threads < 0) fail("[cli] --threads must be >= 0");
    if (threads > 0) omp_set_num_threads(threads);
}

DType parse_model_dtype(const RuntimeOptions& o, Device device) {
    if (o.dtype.empty()) return device == Device::cpu ? DType::f32 : DType::bf16;
    const DType d = parse_dtype(o.dtype, "--dtype");
    if (device == Device::cpu && d != DType::f32)
        fail("[cli] --dtype bf16 needs --device cuda (the CPU runs in f32)");
    return d;
}

bool has_tokenizer(const std::string& dir) {
    namespace fs = std::filesystem;
    return fs::exists(fs::path(dir) / "tokenizer.json") ||
           fs::exists(fs::path(dir) / "tokenizer.txt");
}

void add_runtime_options(CLI::App* cmd, RuntimeOptions& o) {
    cmd->add_option("--device", o.device, "cpu (f32 reference) or cuda (bf16)")
        ->capture_default_str();
    cmd->add_option("--dtype", o.dtype,
                    "Weights and activations: f32 or bf16 (default: f32 on cpu, bf16 on cuda)");
    cmd->add_option("--threads", o.threads, "CPU threads (0 = all cores)")->capture_default_str();
}

}  // namespace olmo::cli
