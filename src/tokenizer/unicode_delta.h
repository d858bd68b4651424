// Unicode general categories as HF tokenizers' regex engine (Oniguruma, Unicode 16.0) sees them,
// given as what to add to PCRE2's own properties (PCRE2 10.42 knows Unicode 14.0). See
// unicode_delta.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

namespace olmo::tok {

struct CategoryDelta {
    const char* short_name;  // "L", "Lu", ...
    const char* long_name;   // "Letter", "Uppercase_Letter", ...
    const uint32_t* ranges;  // inclusive [first, last] pairs of code points
    size_t count;            // number of pairs
    bool complete;           // \p{short_name} plus the ranges is exactly the Unicode 16.0 category
};

extern const CategoryDelta kCategoryDeltas[];
extern const size_t kCategoryDeltaCount;

}  // namespace olmo::tok
