#include "train/data.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/progress.h"
#include "core/rng.h"
#include "io/atomic_file.h"

namespace olmo {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'O', 'L', 'M', 'O', 'T', 'O', 'K', '1'};
constexpr size_t kHeaderBytes = 64;
static_assert(std::endian::native == std::endian::little,
              "token shards are read in place as little-endian");

void put_u32(unsigned char* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = (unsigned char)(v >> (8 * i));
}
void put_u64(unsigned char* p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = (unsigned char)(v >> (8 * i));
}
uint32_t get_u32(const unsigned char* p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}
uint64_t get_u64(const unsigned char* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

ShardInfo parse_header(const unsigned char* h, size_t file_size, const std::string& path) {
    if (file_size < kHeaderBytes) fail("[data] ", path, ": too short for a token shard header");
    if (std::memcmp(h, kMagic, 8) != 0) fail("[data] ", path, ": not a token shard (bad magic)");
    if (get_u32(h + 8) != 1) fail("[data] ", path, ": unsupported shard version ", get_u32(h + 8));
    if (get_u32(h + 12) != 4) fail("[data] ", path, ": unsupported token width ", get_u32(h + 12));
    ShardInfo s;
    s.path = path;
    s.num_tokens = get_u64(h + 16);
    s.num_documents = get_u64(h + 24);
    s.eos_id = get_u32(h + 32);
    s.vocab_size = get_u32(h + 36);
    if (s.num_tokens > (file_size - kHeaderBytes) / 4 ||
        kHeaderBytes + s.num_tokens * 4 != file_size)
        fail("[data] ", path, ": header says ", s.num_tokens, " tokens but the file holds ",
             (file_size - kHeaderBytes) / 4);
    return s;
}

}  // namespace

struct TokenShardWriter::Impl {
    AtomicFile file;
    explicit Impl(const std::string& p) : file(p) {}
};

TokenShardWriter::TokenShardWriter(const std::string& path, uint32_t eos_id, uint32_t vocab_size)
    : impl_(std::make_unique<Impl>(path)), eos_(eos_id), vocab_(vocab_size) {
    unsigned char zero[kHeaderBytes] = {};
    impl_->file.write(zero, kHeaderBytes);
}

TokenShardWriter::~TokenShardWriter() = default;

void TokenShardWriter::add_document(const std::vector<int32_t>& tokens) {
    std::vector<unsigned char> buf((tokens.size() + 1) * 4);
    size_t n = 0;
    for (int32_t t : tokens) {
        if (t < 0 || (vocab_ && uint32_t(t) >= vocab_))
            fail("[data] token ", t, " outside the vocabulary of ", vocab_);
        put_u32(buf.data() + 4 * n++, uint32_t(t));
    }
    if (eos_ != kNoEos) put_u32(buf.data() + 4 * n++, eos_);
    impl_->file.write(buf.data(), 4 * n);
    tokens_ += n;
    ++documents_;
}

void TokenShardWriter::finish() {
    unsigned char h[kHeaderBytes] = {};
    std::memcpy(h, kMagic, 8);
    put_u32(h + 8, 1);
    put_u32(h + 12, 4);
    put_u64(h + 16, tokens_);
    put_u64(h + 24, documents_);
    put_u32(h + 32, eos_);
    put_u32(h + 36, vocab_);
    impl_->file.write_at(0, h, kHeaderBytes);
    impl_->file.commit();
}

ShardInfo read_shard_info(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail("[data] cannot read ", path);
    unsigned char h[kHeaderBytes] = {};
    f.read(reinterpret_cast<char*>(h), kHeaderBytes);
    std::error_code ec;
    return parse_header(h, size_t(fs::file_size(path, ec)), path);
}

namespace {

// One document per text file, or per line of a .jsonl file.
std::vector<std::string> read_documents(const std::string& path, const std::string& field) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("[data] cannot read ", path);
    std::vector<std::string> docs;
    const bool jsonl = path.size() > 6 && path.substr(path.size() - 6) == ".jsonl";
    if (!jsonl) {
        docs.emplace_back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        return docs;
    }
    std::string line;
    int64_t lineno = 0;
    while (std::getline(in, line)) {
        ++lineno;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception& e) {
            fail("[data] ", path, ":", lineno, ": invalid JSON: ", e.what());
        }
        if (!j.is_object() || !j.contains(field) || !j[field].is_string())
            fail("[data] ", path, ":", lineno, ": no string field \"", field, "\"");
        docs.push_back(j[field].get<std::string>());
    }
    return docs;
}

}  // namespace

std::vector<ShardInfo> tokenize_corpus(const CorpusOptions& o, const EncodeFn& encode) {
    if (o.inputs.empty()) fail("[data] no input files");
    std::vector<std::string> files;
    for (const std::string& in : o.inputs) {
        std::error_code ec;
        if (fs::is_directory(in, ec)) {
            std::vector<std::string> found;
            for (const auto& e : fs::recursive_directory_iterator(in))
                if (e.is_regular_file()) found.push_back(e.path().string());
            std::sort(found.begin(), found.end());
            files.insert(files.end(), found.begin(), found.end());
        } else if (fs::is_regular_file(in, ec)) {
            files.push_back(in);
        } else {
            fail("[data] ", in, ": no such file or folder");
        }
    }
    if (files.empty()) fail("[data] no files found in the inputs");
    std::error_code ec;
    fs::create_directories(o.output_dir, ec);
    if (ec) fail("[data] cannot create ", o.output_dir, ": ", ec.message());
    uint64_t total_bytes = 0;
    for (const auto& f : files) total_bytes += fs::file_size(f, ec);
    Progress progress("tokenize", double(total_bytes), "B", o.progress);

    std::vector<ShardInfo> shards;
    std::unique_ptr<TokenShardWriter> writer;
    auto open_shard = [&] {
        char name[32];
        std::snprintf(name, sizeof name, "shard-%05zu.tok", shards.size());
        ShardInfo s;
        s.path = (fs::path(o.output_dir) / name).string();
        shards.push_back(s);
        writer = std::make_unique<TokenShardWriter>(s.path, o.eos_id, o.vocab_size);
    };
    auto close_shard = [&] {
        if (!writer) return;
        writer->finish();
        shards.back() = read_shard_info(shards.back().path);
        writer.reset();
    };
    // Files are read and encoded in parallel batches, then written in input order (deterministic).
    const size_t batch = 64;
    for (size_t f0 = 0; f0 < files.size(); f0 += batch) {
        const size_t f1 = std::min(files.size(), f0 + batch);
        std::vector<std::vector<std::string>> docs(f1 - f0);
        for (size_t i = f0; i < f1; ++i) docs[i - f0] = read_documents(files[i], o.text_field);
        std::vector<std::pair<size_t, size_t>> items;
        for (size_t i = 0; i < docs.size(); ++i)
            for (size_t j = 0; j < docs[i].size(); ++j) items.emplace_back(i, j);
        std::vector<std::vector<int32_t>> encoded(items.size());
        std::string error;
        std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t k = 0; k < int64_t(items.size()); ++k) {
            if (failed) continue;
            try {
                encoded[k] = encode(docs[items[k].first][items[k].second]);
            } catch (const std::exception& e) {
#pragma omp critical
                if (!failed.exchange(true)) error = cat(files[f0 + items[k].first], ": ", e.what());
            }
        }
        if (failed) fail("[data] ", error);
        for (size_t k = 0; k < items.size(); ++k) {
            if (!writer || writer->num_tokens() >= o.shard_tokens) {
                close_shard();
                open_shard();
            }
            writer->add_document(encoded[k]);
        }
        for (size_t i = f0; i < f1; ++i) progress.add(double(fs::file_size(files[i], ec)));
    }
    close_shard();
    progress.finish();
    return shards;
}

TokenStream TokenStream::open(const std::vector<std::string>& paths) {
    TokenStream s;
    std::vector<std::string> files;
    for (const std::string& p : paths) {
        std::error_code ec;
        if (fs::is_directory(p, ec)) {
            std::vector<std::string> found;
            for (const auto& e : fs::directory_iterator(p))
                if (e.path().extension() == ".tok") found.push_back(e.path().string());
            std::sort(found.begin(), found.end());
            if (found.empty()) fail("[data] ", p, ": no .tok shards in this folder");
            files.insert(files.end(), found.begin(), found.end());
        } else {
            files.push_back(p);
        }
    }
    if (files.empty()) fail("[data] no token shards given");
    for (const std::string& f : files) {
        const int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail("[data] cannot open ", f, ": ", std::strerror(errno));
        struct stat st {};
        ::fstat(fd, &st);
        const size_t size = size_t(st.st_size);
        if (size < kHeaderBytes) {
            ::close(fd);
            fail("[data] ", f, ": too short for a token shard header");
        }
        void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        ::close(fd);
        if (p == MAP_FAILED) fail("[data] cannot map ", f, ": ", std::strerror(errno));
        std::shared_ptr<void> map(p, [size](void* q) { ::munmap(q, size); });
        ShardInfo info = parse_header(static_cast<const unsigned char*>(p), size, f);
        if (!s.shards_.empty() && (info.vocab_size != s.vocab_ || info.eos_id != s.eos_))
            fail("[data] ", f, ": written by a different tokenizer than ", s.shards_[0].path);
        s.vocab_ = info.vocab_size;
        s.eos_ = info.eos_id;
        s.maps_.push_back(
            {map, reinterpret_cast<const uint32_t*>(static_cast<const char*>(p) + kHeaderBytes),
             s.total_, info.num_tokens});
        s.total_ += info.num_tokens;
        s.shards_.push_back(info);
    }
    return s;
}

void TokenStream::read(uint64_t start, uint64_t n, int32_t* out) const {
    OLMO_CHECK(start + n <= total_, "token range past the end of the stream");
    size_t m = 0;
    while (m < maps_.size() && maps_[m].start + maps_[m].count <= start) ++m;
    while (n > 0) {
        const Mapped& mp = maps_[m];
        const uint64_t off = start - mp.start, take = std::min(n, mp.count - off);
        for (uint64_t i = 0; i < take; ++i) {
            const uint32_t t = mp.tokens[off + i];
            out[i] = int32_t(t);
        }
        out += take;
        start += take;
        n -= take;
        ++m;
    }
}

DataLoader::DataLoader(const TokenStream& stream, int64_t seq_len, int64_t batch_size,
                       uint64_t seed, double heldout_fraction)
    : stream_(stream), seq_len_(seq_len), batch_(batch_size), seed_(seed) {
    if (seq_len < 1 || batch_size < 1)
        fail("[data] sequence length and batch size must be positive");
    if (!(heldout_fraction >= 0 && heldout_fraction < 1))
        fail("[data] held-out fraction must be in [0, 1)");
    const uint64_t total = stream.size();
    uint64_t held = uint64_t(double(total) * heldout_fraction);
    if (heldout_fraction > 0 && held < uint64_t(seq_len) + 1) held = uint64_t(seq_len) + 1;
    if (held >= total) fail("[data] ", total, " tokens are too few to hold out ", held);
    heldout_start_ = total - held;
    train_rows_ =
        heldout_start_ > uint64_t(seq_len) ? int64_t((heldout_start_ - 1) / uint64_t(seq_len)) : 0;
    heldout_rows_ = held > 0 ? int64_t((held - 1) / uint64_t(seq_len)) : 0;
    if (train_rows_ < 1)
        fail("[data] ", heldout_start_, " training tokens make no row of ", seq_len + 1, " tokens");
    make_permutation();
}

void DataLoader::make_permutation() {
    // Fisher-Yates with counter-based random numbers: the permutation depends only on (seed,
    // epoch).
    perm_.resize(train_rows_);
    for (int64_t i = 0; i < train_rows_; ++i) perm_[i] = i;
    const Rng rng(seed_, 0xda7a0000ull + uint64_t(pos_.epoch));
    for (int64_t i = train_rows_ - 1; i > 0; --i) {
        const int64_t j = int64_t(rng.uniform(uint64_t(i)) * double(i + 1)) % (i + 1);
        std::swap(perm_[i], perm_[j]);
    }
}

void DataLoader::row(uint64_t start, int32_t* ids, int32_t* targets) const {
    std::vector<int32_t> buf(seq_len_ + 1);
    stream_.read(start, uint64_t(seq_len_) + 1, buf.data());
    std::copy(buf.begin(), buf.end() - 1, ids);
    std::copy(buf.begin() + 1, buf.end(), targets);
}

void DataLoader::next(int32_t* ids, int32_t* targets) {
    for (int64_t b = 0; b < batch_; ++b) {
        if (pos_.index >= train_rows_) {
            ++pos_.epoch;
            pos_.index = 0;
            make_permutation();
        }
        const int64_t r = perm_[pos_.index++];
        row(uint64_t(r) * uint64_t(seq_len_), ids + b * seq_len_, targets + b * seq_len_);
    }
}

void DataLoader::heldout(int64_t first, int64_t n, int32_t* ids, int32_t* targets) const {
    OLMO_CHECK(heldout_rows_ > 0, "no held-out data");
    for (int64_t i = 0; i < n; ++i) {
        const int64_t r = (first + i) % heldout_rows_;
        row(heldout_start_ + uint64_t(r) * uint64_t(seq_len_), ids + i * seq_len_,
            targets + i * seq_len_);
    }
}

void DataLoader::set_position(LoaderPosition p) {
    if (p.epoch < 0 || p.index < 0 || p.index > train_rows_) fail("[data] invalid loader position");
    const bool new_epoch = p.epoch != pos_.epoch;
    pos_ = p;
    if (new_epoch) make_permutation();
}

}  // namespace olmo
