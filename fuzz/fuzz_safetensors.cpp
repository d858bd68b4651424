// libFuzzer target: the safetensors header parser on arbitrary bytes. Any input must give a reader
// whose every entry lies inside the buffer, or an olmo::Error; never a crash or an out-of-bounds
// read.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        olmo::SafetensorsReader r = olmo::SafetensorsReader::from_memory(data, size, "fuzz");
        const auto* end = data + size;
        for (const auto& e : r.entries()) {
            const auto* p = static_cast<const uint8_t*>(e.data);
            if (p < data || p + e.nbytes > end) __builtin_trap();
            if (e.nbytes != size_t(e.numel()) * olmo::dtype_size(e.dtype)) __builtin_trap();
            volatile uint8_t sink = 0;
            for (size_t i = 0; i < e.nbytes; i += 64) sink = sink ^ p[i];  // touch the data
        }
    } catch (const olmo::Error&) {
    }
    return 0;
}
