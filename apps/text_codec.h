// Text <-> token ids for the commands that read or print text: the dolma2 BPE tokenizer from a
// tokenizer.json, or plain bytes (id = byte value, EOS = 256), which small models trained from
// scratch on the CPU use (a 100k-token vocabulary would be most of a 4M-parameter model).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace olmo::cli {

class TextCodec {
  public:
    // "bytes", or the path of a tokenizer.json.
    static TextCodec open(const std::string& spec);
    // For a model folder: its tokenizer.json if present, else `fallback` ("" = none: error when
    // needed).
    static TextCodec for_model(const std::string& model_dir, const std::string& override_spec);

    std::vector<int32_t> encode(std::string_view text) const;
    std::string decode(std::span<const int32_t> ids) const;
    int32_t vocab_size() const;
    int32_t eos_id() const;  // -1 if the tokenizer has none
    bool is_bytes() const { return !tok_; }
    std::string name() const { return tok_ ? "tokenizer.json" : "bytes"; }
    const Tokenizer* tokenizer() const { return tok_.get(); }

    // Streams text for generated ids: returns the complete characters this id finishes.
    class Stream {
      public:
        explicit Stream(const TextCodec& codec);
        std::string feed(int32_t id);
        std::string finish();

      private:
        const TextCodec& codec_;
        std::unique_ptr<StreamDecoder> dec_;
        std::string pending_;
    };

  private:
    std::shared_ptr<Tokenizer> tok_;
};

// Byte tokenizer vocabulary: 256 byte values and EOS.
constexpr int32_t kByteEos = 256;
constexpr int32_t kByteVocab = 257;

}  // namespace olmo::cli
