// The dolma2 tokenizer: byte-level BPE read from a Hugging Face tokenizer.json, giving the same ids
// and text as HF `tokenizers` (Tokenizer.encode(text).ids and decode(ids, skip_special_tokens)).
//
// Encoding of a text:
//   1. the text must be valid UTF-8 (else olmo::Error naming the byte offset);
//   2. added tokens (special or not) are matched first, leftmost-longest, as HF does by default;
//   3. each remaining piece is pre-split by the Split regex(es) of the file: PCRE2 with JIT, UTF
//      and Unicode properties, the pattern translated to mean what it means to HF's Oniguruma
//      (Unicode 16.0 categories, \s as White_Space);
//   4. each pre-token's bytes are merged by BPE rank. Pre-tokens are cached per thread;
//   5. a TemplateProcessing post-processor's tokens go around the result (dolma2 has none).
// Decoding maps every id to its bytes (ByteLevel decoder) and turns the concatenation into UTF-8,
// replacing each maximal invalid subsequence by U+FFFD exactly as HF (Rust's from_utf8_lossy) does.
//
// A Tokenizer is immutable after loading, cheap to copy (shared state) and safe to use from many
// threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace olmo {

class Tokenizer {
  public:
    // Reads a tokenizer.json. Anything the file asks for that is not supported (another model type,
    // a normalizer, BPE dropout, byte fallback, another pre-tokenizer, ...) is an olmo::Error
    // naming it.
    static Tokenizer from_file(const std::string& tokenizer_json_path);
    // The same from the JSON text itself; `origin` names it in error messages.
    static Tokenizer from_json(std::string_view json_text,
                               std::string_view origin = "tokenizer.json");

    // Token ids of `text`. With parse_special = false, special tokens written in the text are
    // encoded as plain text (HF's encode_special_tokens = True); non-special added tokens are still
    // matched.
    std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const;
    // Appends the ids of `text` to `out`.
    void encode_into(std::string_view text, std::vector<int32_t>& out,
                     bool parse_special = true) const;
    // Encodes many texts on `threads` threads (0 = all cores); results are in input order. An error
    // in one text is rethrown naming its index.
    std::vector<std::vector<int32_t>> encode_batch(std::span<const std::string> texts,
                                                   int threads = 0,
                                                   bool parse_special = true) const;
    std::vector<std::vector<int32_t>> encode_batch(std::span<const std::string_view> texts,
                                                   int threads = 0,
                                                   bool parse_special = true) const;

    // Text of `ids`; special tokens are left out with skip_special. Unknown ids are an olmo::Error.
    std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
    // The raw bytes an id stands for, before any UTF-8 repair; olmo::Error if unknown.
    std::string_view token_bytes(int32_t id) const;

    // One past the largest id (100278 for dolma2).
    int32_t vocab_size() const;
    // Id of a token as written in the vocabulary (byte-level form, e.g. "Ġthe") or of an added
    // token.
    std::optional<int32_t> token_to_id(std::string_view token) const;
    // The token string of an id (byte-level form, or the added token's content); olmo::Error if
    // unknown.
    std::string id_to_token(int32_t id) const;
    // True for the ids of added tokens marked special (e.g. <|endoftext|>), which decode skips on
    // request; false for other ids, known or not.
    bool is_special(int32_t id) const;
    // Number of pre-tokens in the per-thread caches, and a way to empty them (for cold benchmarks).
    size_t cache_entries() const;
    void clear_cache() const;

    struct Impl;

  private:
    explicit Tokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<Impl> impl_;
    friend class StreamDecoder;
};

// Streaming detokenisation: feed ids one at a time and get back only complete UTF-8 text. Bytes of
// a multi-byte character split across tokens are held until the character is complete; finish()
// flushes what is left (an incomplete character becomes U+FFFD). The concatenation of everything
// returned equals Tokenizer::decode of all the ids fed.
class StreamDecoder {
  public:
    explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false);
    // Text completed by this id (often empty or one word).
    std::string feed(int32_t id);
    // Everything still held, then the decoder is empty again.
    std::string finish();
    // Bytes held back waiting for the rest of a character.
    size_t pending_bytes() const { return pending_.size(); }

  private:
    Tokenizer tokenizer_;
    bool skip_special_;
    std::string pending_;
};

// One chat turn.
struct ChatMessage {
    std::string role;     // "system", "user", "assistant", ...
    std::string content;  // free text
};

// The ChatML turns the dolma2 special tokens exist for:
//   <|im_start|>role\ncontent<|im_end|>\n   for every message, then with add_generation_prompt
//   <|im_start|>assistant\n
// A role must be non-empty and hold no newline and no "<|" (olmo::Error otherwise). The content is
// copied as is: encode the result with parse_special = true so that the markers become their
// special ids. Marker strings inside a content then become markers too; a caller that must prevent
// that encodes each content with parse_special = false and the markers around it separately.
std::string format_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt);

}  // namespace olmo
