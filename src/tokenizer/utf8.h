// UTF-8 helpers of the tokenizer: strict validation (the rules of Rust's str: no overlong forms, no
// surrogates, nothing above U+10FFFF) and the lossy conversion of Rust's String::from_utf8_lossy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace olmo::utf8 {

// Length of the longest valid UTF-8 prefix of `s` (s.size() when all of it is valid).
size_t valid_prefix(std::string_view s);

// Appends `bytes` to `out` as valid UTF-8, replacing every maximal invalid subsequence by U+FFFD
// (the "substitution of maximal subparts" of Unicode, which Rust's from_utf8_lossy follows). With
// final = false, a trailing incomplete sequence that more bytes could still complete is not
// consumed. Returns the number of bytes consumed.
size_t append_lossy(std::string& out, std::string_view bytes, bool final);

// Appends the UTF-8 encoding of code point `cp` (< 0x110000, not a surrogate).
void append_code_point(std::string& out, uint32_t cp);

// Decodes the code point starting at s[i] of a valid UTF-8 string and advances i past it.
uint32_t next_code_point(std::string_view s, size_t& i);

}  // namespace olmo::utf8
