// Helpers shared by the tokenizer tests: the dolma2 tokenizer (loaded once), JSON-lines goldens and
// a generator of random valid UTF-8 text.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "tokenizer/tokenizer.h"

namespace olmo::testing {

// The dolma2 tokenizer from the reference folder, loaded once per test binary.
const Tokenizer& dolma2();
std::string dolma2_path();

struct Golden {
    size_t line = 0;
    std::string text;
    std::vector<int32_t> ids;
    std::string decoded;
};
// Reads {"text", "ids", "decoded"} lines; an unreadable file or line is an olmo::Error.
std::vector<Golden> read_goldens(const std::string& path);
// The "text" of every line of a JSON-lines file.
std::vector<std::string> read_texts(const std::string& path);
// Every golden encodes to its ids and its ids decode to its text: AssertionFailure lists the first
// few that do not.
::testing::AssertionResult matches_goldens(const Tokenizer& tok,
                                           const std::vector<Golden>& goldens);

// Random valid UTF-8: words, whitespace runs, digits, multi-byte characters (CJK, emoji with ZWJ
// and skin tones, combining marks, other planes), control characters and special-token strings.
std::string random_text(std::mt19937_64& rng, size_t pieces);

// Expects `f` to throw olmo::Error whose message contains every one of `parts`.
template <class F>
::testing::AssertionResult throws_error(F&& f, std::initializer_list<std::string> parts) {
    try {
        f();
    } catch (const Error& e) {
        const std::string what = e.what();
        for (const auto& p : parts)
            if (what.find(p) == std::string::npos)
                return ::testing::AssertionFailure()
                       << "message \"" << what << "\" lacks \"" << p << "\"";
        return ::testing::AssertionSuccess() << what;
    } catch (const std::exception& e) {
        return ::testing::AssertionFailure() << "threw a non-olmo exception: " << e.what();
    }
    return ::testing::AssertionFailure() << "did not throw";
}

}  // namespace olmo::testing
