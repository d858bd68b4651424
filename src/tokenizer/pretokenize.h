// Pre-tokenisation pieces of the tokenizer: the added-token matcher (leftmost-longest, as HF's
// Aho-Corasick) and the Split rule (a PCRE2 regex with JIT, UTF and Unicode properties).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct pcre2_real_code_8;
struct pcre2_real_match_data_8;
struct pcre2_real_match_context_8;
struct pcre2_real_jit_stack_8;

namespace olmo::tok {

// Rewrites a pattern written for Oniguruma (the engine HF tokenizers compiles Split patterns with)
// into PCRE2 syntax of the same meaning: \s and \S become the Unicode White_Space property (PCRE2's
// own \s also holds U+180E), \w and \h get Oniguruma's meaning. Constructs whose meaning differs
// and that have no simple translation (\b, \B, nested classes, \W or \H inside a class) are an
// olmo::Error. General categories (\p{L}, \d, ...) get the code points Unicode 16.0 added since
// PCRE2's Unicode 14.0 unless with_delta is false; first_delta receives the lowest such code point
// (UINT32_MAX if none): on text without code points from there up, both translations match alike.
std::string onig_to_pcre2(std::string_view pattern, bool with_delta = true,
                          uint32_t* first_delta = nullptr);

// Per-thread matching state of PCRE2.
class RegexState {
  public:
    RegexState();
    ~RegexState();
    RegexState(const RegexState&) = delete;
    RegexState& operator=(const RegexState&) = delete;
    pcre2_real_match_data_8* match_data() const { return md_; }
    pcre2_real_match_context_8* context() const { return ctx_; }

  private:
    pcre2_real_match_data_8* md_ = nullptr;
    pcre2_real_match_context_8* ctx_ = nullptr;
    pcre2_real_jit_stack_8* stack_ = nullptr;
};

class Regex {
  public:
    // A PCRE2 pattern (already translated), or a literal string with literal = true.
    Regex(std::string_view pattern, bool literal);
    ~Regex();
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;

    // The first match in subject at or after `start`: true and [begin, end), or false. The subject
    // must be valid UTF-8 (it is not checked again).
    bool find(std::string_view subject, size_t start, RegexState& state, size_t& begin,
              size_t& end) const;
    const std::string& pattern() const { return pattern_; }

  private:
    pcre2_real_code_8* code_ = nullptr;
    bool jit_ = false;
    std::string pattern_;
};

// HF's Split pre-tokenizer with behaviour Removed or Isolated.
struct SplitRule {
    std::unique_ptr<Regex> regex;  // exact for all text
    // The same pattern with PCRE2's own Unicode tables (faster), exact for text without bytes from
    // fast_below up (UTF-8 lead bytes grow with the code point).
    std::unique_ptr<Regex> fast;
    unsigned fast_below = 0;
    bool invert = false;
    bool isolated = false;  // keep every piece (Isolated); else drop the delimiters (Removed)

    // Calls emit(piece) for each non-empty piece kept, in order.
    template <class Emit>
    void split(std::string_view text, RegexState& state, Emit&& emit) const {
        const Regex& re = fast && !has_byte_from(text, fast_below) ? *fast : *regex;
        // Matches are found as HF's Oniguruma iterator does: an empty match right at the end of the
        // previous match is skipped by moving on one character.
        size_t last_end = 0, prev = 0;
        size_t last_match_end = std::string_view::npos;
        while (last_end <= text.size()) {
            size_t b, e;
            if (!re.find(text, last_end, state, b, e)) break;
            if (b == e && last_match_end == e) {
                last_end += last_end < text.size() ? char_len(text[last_end]) : 1;
                continue;
            }
            last_end = e;
            last_match_end = e;
            if (prev != b) keep(text, prev, b, false, emit);
            keep(text, b, e, true, emit);
            prev = e;
        }
        if (prev != text.size()) keep(text, prev, text.size(), false, emit);
    }

  private:
    static bool has_byte_from(std::string_view text, unsigned threshold) {
        for (const char c : text)
            if (static_cast<unsigned char>(c) >= threshold) return true;
        return false;
    }
    static size_t char_len(char lead) {
        const auto c = static_cast<unsigned char>(lead);
        return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    }
    template <class Emit>
    void keep(std::string_view text, size_t b, size_t e, bool is_match, Emit& emit) const {
        if (e == b) return;
        // Removed drops the delimiters: the matches, or with invert the text between them.
        const bool kept = isolated || (invert ? is_match : !is_match);
        if (kept) emit(text.substr(b, e - b));
    }
};

// The added tokens of a tokenizer, matched leftmost-longest over the bytes of a text.
class AddedMatcher {
  public:
    AddedMatcher();
    void add(std::string_view content, int32_t id, bool special);
    bool empty() const { return count_ == 0; }

    struct Match {
        size_t begin, end;
        int32_t id;
        bool special;
    };
    // The leftmost-longest match in text at or after `from`, or false.
    bool find(std::string_view text, size_t from, Match& m) const;

  private:
    struct Node {
        int32_t id = -1;  // token ending here
        bool special = false;
        std::vector<std::pair<unsigned char, int32_t>> children;
    };
    int32_t child(int32_t node, unsigned char c) const;
    std::vector<Node> nodes_;
    std::array<bool, 256> first_{};
    size_t count_ = 0;
};

}  // namespace olmo::tok
