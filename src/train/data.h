// Training data: token shards on disk and a loader that packs fixed-length rows from them.
//
// Shard format (little endian), documented in docs/DATA.md:
//   bytes 0..7   magic "OLMOTOK1"
//   8..11        u32 format version (1)
//   12..15       u32 bytes per token (4)
//   16..23       u64 number of tokens
//   24..31       u64 number of documents
//   32..35       u32 EOS id appended after every document (0xffffffff: none)
//   36..39       u32 vocabulary size of the tokenizer that wrote it
//   40..63       reserved, zero
//   64..         tokens, u32 each
// The loader treats all shards as one token stream, cut into rows of seq_len + 1 tokens every
// seq_len tokens (inputs = row[:-1], targets = row[1:]). The last `heldout_fraction` of the stream
// is held out; training rows are shuffled per epoch by a seeded permutation, and the position
// (epoch, index) can be saved and restored exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace olmo {

constexpr uint32_t kNoEos = 0xffffffffu;

struct ShardInfo {
    std::string path;
    uint64_t num_tokens = 0, num_documents = 0;
    uint32_t eos_id = kNoEos, vocab_size = 0;
};

// Writes one shard atomically: documents are appended, each followed by EOS.
class TokenShardWriter {
  public:
    TokenShardWriter(const std::string& path, uint32_t eos_id, uint32_t vocab_size);
    ~TokenShardWriter();
    void add_document(const std::vector<int32_t>& tokens);
    uint64_t num_tokens() const { return tokens_; }
    void finish();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    uint64_t tokens_ = 0, documents_ = 0;
    uint32_t eos_, vocab_;
};

ShardInfo read_shard_info(const std::string& path);

// Tokenises documents into shards of at most `shard_tokens` tokens under `output_dir`
// (shard-00000.tok, ...), using all cores, with a progress line. Inputs: text files (one document
// each) or .jsonl files (one document per line, from `text_field`). Returns the shards written.
struct CorpusOptions {
    std::vector<std::string> inputs;
    std::string output_dir;
    std::string text_field = "text";
    uint64_t shard_tokens = 100'000'000;
    uint32_t eos_id = kNoEos;
    uint32_t vocab_size = 0;
    bool progress = true;
};
using EncodeFn = std::function<std::vector<int32_t>(std::string_view)>;
std::vector<ShardInfo> tokenize_corpus(const CorpusOptions& options, const EncodeFn& encode);

// All tokens of a list of shards (or folders of *.tok), memory-mapped, as one stream.
class TokenStream {
  public:
    static TokenStream open(const std::vector<std::string>& paths);
    uint64_t size() const { return total_; }
    uint32_t vocab_size() const { return vocab_; }
    uint32_t eos_id() const { return eos_; }
    // Copies tokens [start, start + n) into out.
    void read(uint64_t start, uint64_t n, int32_t* out) const;
    const std::vector<ShardInfo>& shards() const { return shards_; }

  private:
    struct Mapped {
        std::shared_ptr<void> map;
        const uint32_t* tokens;
        uint64_t start, count;
    };
    std::vector<Mapped> maps_;
    std::vector<ShardInfo> shards_;
    uint64_t total_ = 0;
    uint32_t vocab_ = 0, eos_ = kNoEos;
};

struct LoaderPosition {
    int64_t epoch = 0;
    int64_t index = 0;  // next row within the epoch's permutation
};

class DataLoader {
  public:
    DataLoader(const TokenStream& stream, int64_t seq_len, int64_t batch_size, uint64_t seed,
               double heldout_fraction);

    int64_t train_rows() const { return train_rows_; }
    int64_t heldout_rows() const { return heldout_rows_; }
    int64_t seq_len() const { return seq_len_; }
    int64_t batch_size() const { return batch_; }

    // Next training batch: ids and targets [batch, seq_len] i32 (host).
    void next(int32_t* ids, int32_t* targets);
    // Held-out rows [first, first + n) (wrapping around).
    void heldout(int64_t first, int64_t n, int32_t* ids, int32_t* targets) const;

    LoaderPosition position() const { return pos_; }
    void set_position(LoaderPosition p);

  private:
    void row(uint64_t token_start, int32_t* ids, int32_t* targets) const;
    void make_permutation();
    const TokenStream& stream_;
    int64_t seq_len_, batch_;
    uint64_t seed_;
    int64_t train_rows_ = 0, heldout_rows_ = 0;
    uint64_t heldout_start_ = 0;
    std::vector<int64_t> perm_;
    LoaderPosition pos_;
};

}  // namespace olmo
