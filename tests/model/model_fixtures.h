// The HF-made checkpoints the model is tested against: the two in the shared reference folder, and
// the ones committed under tests/data/hf (other layer patterns, RoPE/YaRN, GQA/GVA, bf16 on disk).
#pragma once

#include <cctype>
#include <filesystem>
#include <string>
#include <vector>

#include "model/weights.h"
#include "ops/ops.h"
#include "testing.h"

namespace olmo::testing {

inline std::vector<std::string> hf_fixture_dirs() {
    namespace fs = std::filesystem;
    std::vector<std::string> dirs = {shared_dir() + "/fixtures/olmo-hybrid-tiny",
                                     shared_dir() + "/fixtures/olmo3-tiny"};
    const fs::path extra = fs::path(test_data_dir()) / "hf";
    std::vector<std::string> more;
    if (fs::is_directory(extra))
        for (const auto& e : fs::directory_iterator(extra))
            if (fs::exists(e.path() / "reference.safetensors")) more.push_back(e.path().string());
    std::sort(more.begin(), more.end());
    dirs.insert(dirs.end(), more.begin(), more.end());
    return dirs;
}

inline std::string fixture_name(const std::string& dir) {
    return std::filesystem::path(dir).filename().string();
}

// Test-name suffix for a fixture folder (GoogleTest allows only letters, digits and '_').
struct FixtureTestName {
    template <class Info>
    std::string operator()(const Info& info) const {
        std::string n = fixture_name(info.param);
        for (char& c : n)
            if (!isalnum(static_cast<unsigned char>(c))) c = '_';
        return n;
    }
};

}  // namespace olmo::testing

namespace olmo {
inline void ops_fill_zero(const ModelWeights& w) {
    ops::fill(w.flat(), 0.0f);
}
}  // namespace olmo
