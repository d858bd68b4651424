// libFuzzer target: config.json parsing on arbitrary bytes. Any input must give a config whose
// derived sizes are consistent, or an olmo::Error (or a JSON parse error); never a crash.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "model/weights.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    nlohmann::json j =
        nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return 0;
    try {
        const olmo::ModelConfig c = olmo::ModelConfig::from_json(j, "fuzz");
        if (int64_t(c.layer_types.size()) != c.num_hidden_layers) __builtin_trap();
        if (c.num_attention_heads % c.num_key_value_heads != 0) __builtin_trap();
        // The weights table must be buildable for small configs (skip huge ones: it is only
        // metadata, but shapes multiply).
        if (c.hidden_size < 4096 && c.vocab_size < 1000000 && c.num_hidden_layers < 256) {
            for (const auto& p : olmo::parameter_table(c))
                for (int64_t d : p.shape)
                    if (d <= 0) __builtin_trap();
        }
        for (int64_t i = 0; i < c.num_hidden_layers && i < 64; ++i)
            (void)c.rope_for(i).inv_freq(c.head_dim % 512);
    } catch (const olmo::Error&) {
    }
    return 0;
}
