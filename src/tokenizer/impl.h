// The state of a loaded Tokenizer (shared by tokenizer.cpp and loader.cpp; not part of the public
// API).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace olmo {

struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return size_t(bpe::hash_bytes(s)); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// token string -> id over the strings of a vector indexed by id (open addressing, ids only).
class TokenIndex {
  public:
    // Indexes strings[0, count); returns the first id whose string came before, or -1.
    int32_t build(const std::vector<std::string>& strings, size_t count);
    int32_t find(const std::vector<std::string>& strings, std::string_view s) const {
        if (slots_.empty()) return -1;
        const uint64_t h = bpe::hash_bytes(s);
        const uint32_t tag = uint32_t(h >> 32);
        for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
            const Slot& slot = slots_[i];
            if (slot.id < 0) return -1;
            if (slot.tag == tag && strings[size_t(slot.id)] == s) return slot.id;
        }
    }

  private:
    struct Slot {
        uint32_t tag;
        int32_t id;  // -1 = empty
    };
    std::vector<Slot> slots_;
    uint64_t mask_ = 0;
};

// What one thread needs to encode: the pre-token cache and reusable buffers.
struct Workspace {
    bpe::WordCache cache;
    bpe::Scratch scratch;
    tok::RegexState regex;
    std::vector<int32_t> symbols;
    std::string text;  // byte-level form of a word (ignore_merges)
};

struct Tokenizer::Impl {
    // Per id: its bytes for decoding (blob[offsets[id], offsets[id + 1])) and flags.
    std::string blob;
    std::vector<uint32_t> offsets;
    enum : uint8_t { kPresent = 1, kSpecial = 2, kAdded = 4 };
    std::vector<uint8_t> flags;

    std::vector<std::string> model_tokens;  // the model's vocabulary by id
    TokenIndex model_index;                 // model token -> id
    int32_t model_id(std::string_view token) const { return model_index.find(model_tokens, token); }
    StringIdMap added;                                    // added token content -> id
    std::unordered_map<int32_t, std::string> added_text;  // id -> added token content

    // The token string of a valid id: an added token's content, else the byte-level vocabulary
    // form.
    const std::string& token(int32_t id) const {
        return (flags[size_t(id)] & kAdded) ? added_text.at(id) : model_tokens[size_t(id)];
    }

    std::array<int32_t, 256> byte_ids{};     // id of the one-byte token of each byte
    std::array<uint32_t, 256> byte_chars{};  // the byte-level code point of each byte
    bpe::MergeTable merges;
    bool ignore_merges = false;

    std::vector<int32_t> prefix_ids, suffix_ids;  // around every text (TemplateProcessing)

    tok::AddedMatcher added_raw;         // added tokens with normalized = false
    tok::AddedMatcher added_normalized;  // the others (there is no normalizer: same text)
    std::vector<tok::SplitRule> splits;

    mutable std::mutex pool_mutex;
    mutable std::vector<std::unique_ptr<Workspace>> pool;

    int32_t size() const { return int32_t(flags.size()); }
    bool valid(int32_t id) const {
        return id >= 0 && id < size() && (flags[size_t(id)] & kPresent);
    }
    std::string_view bytes(int32_t id) const {
        return std::string_view(blob).substr(offsets[size_t(id)],
                                             offsets[size_t(id) + 1] - offsets[size_t(id)]);
    }

    // Encoding steps; the text is valid UTF-8. encode adds the template's tokens around
    // encode_text.
    void encode(std::string_view text, std::vector<int32_t>& out, bool parse_special,
                Workspace& ws) const;
    void encode_text(std::string_view text, std::vector<int32_t>& out, bool parse_special,
                     Workspace& ws) const;
    void encode_normalized(std::string_view piece, std::vector<int32_t>& out, bool parse_special,
                           Workspace& ws) const;
    void encode_split(std::string_view piece, size_t level, std::vector<int32_t>& out,
                      Workspace& ws) const;
    void encode_word(std::string_view word, std::vector<int32_t>& out, Workspace& ws) const;

    std::unique_ptr<Workspace> acquire() const;
    void release(std::unique_ptr<Workspace> ws) const;
};

// Builds the state from tokenizer.json text (loader.cpp).
std::shared_ptr<Tokenizer::Impl> load_tokenizer_json(std::string_view json_text,
                                                     std::string_view origin);

}  // namespace olmo
