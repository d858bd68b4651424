#include "tokenizer/tokenizer.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <thread>

#include "core/check.h"
#include "tokenizer/impl.h"
#include "tokenizer/utf8.h"

namespace olmo {

namespace {

// Throws the encode error for invalid UTF-8, naming the offset and the bytes there.
[[noreturn]] void invalid_utf8(std::string_view text, size_t at) {
    std::string hex;
    for (size_t i = at; i < text.size() && i < at + 4; ++i) {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned char>(text[i]));
        if (!hex.empty()) hex += ' ';
        hex += buf;
    }
    const char* more = at + 4 < text.size() ? " ..." : "";
    fail("[tokenizer] encode: expected valid UTF-8 text, got an invalid byte sequence at byte ",
         "offset ", at, " (", hex, more, ")");
}

void check_utf8(std::string_view text) {
    const size_t ok = utf8::valid_prefix(text);
    if (ok != text.size()) invalid_utf8(text, ok);
}

// A workspace borrowed from the tokenizer's pool for the length of one call.
class Lease {
  public:
    explicit Lease(const Tokenizer::Impl& impl) : impl_(impl), ws_(impl.acquire()) {}
    ~Lease() { impl_.release(std::move(ws_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Workspace& operator*() { return *ws_; }

  private:
    const Tokenizer::Impl& impl_;
    std::unique_ptr<Workspace> ws_;
};

}  // namespace

// Impl: encoding

std::unique_ptr<Workspace> Tokenizer::Impl::acquire() const {
    {
        std::lock_guard<std::mutex> lock(pool_mutex);
        if (!pool.empty()) {
            std::unique_ptr<Workspace> ws = std::move(pool.back());
            pool.pop_back();
            return ws;
        }
    }
    return std::make_unique<Workspace>();
}

void Tokenizer::Impl::release(std::unique_ptr<Workspace> ws) const {
    std::lock_guard<std::mutex> lock(pool_mutex);
    pool.push_back(std::move(ws));
}

void Tokenizer::Impl::encode(std::string_view text, std::vector<int32_t>& out, bool parse_special,
                             Workspace& ws) const {
    out.insert(out.end(), prefix_ids.begin(), prefix_ids.end());
    encode_text(text, out, parse_special, ws);
    out.insert(out.end(), suffix_ids.begin(), suffix_ids.end());
}

void Tokenizer::Impl::encode_text(std::string_view text, std::vector<int32_t>& out,
                                  bool parse_special, Workspace& ws) const {
    // Added tokens that match the raw text first, then (no normalizer) those marked normalized.
    size_t piece = 0, from = 0;
    tok::AddedMatcher::Match m;
    while (added_raw.find(text, from, m)) {
        from = m.end;
        if (m.special && !parse_special) continue;  // stays part of the surrounding text
        encode_normalized(text.substr(piece, m.begin - piece), out, parse_special, ws);
        out.push_back(m.id);
        piece = m.end;
    }
    encode_normalized(text.substr(piece), out, parse_special, ws);
}

void Tokenizer::Impl::encode_normalized(std::string_view text, std::vector<int32_t>& out,
                                        bool parse_special, Workspace& ws) const {
    if (text.empty()) return;
    size_t piece = 0, from = 0;
    tok::AddedMatcher::Match m;
    while (added_normalized.find(text, from, m)) {
        from = m.end;
        if (m.special && !parse_special) continue;
        encode_split(text.substr(piece, m.begin - piece), 0, out, ws);
        out.push_back(m.id);
        piece = m.end;
    }
    encode_split(text.substr(piece), 0, out, ws);
}

void Tokenizer::Impl::encode_split(std::string_view piece, size_t level, std::vector<int32_t>& out,
                                   Workspace& ws) const {
    if (piece.empty()) return;
    if (level == splits.size()) {
        encode_word(piece, out, ws);
        return;
    }
    if (level + 1 == splits.size()) {
        splits[level].split(piece, ws.regex, [&](std::string_view w) { encode_word(w, out, ws); });
        return;
    }
    splits[level].split(piece, ws.regex,
                        [&](std::string_view w) { encode_split(w, level + 1, out, ws); });
}

void Tokenizer::Impl::encode_word(std::string_view word, std::vector<int32_t>& out,
                                  Workspace& ws) const {
    if (word.size() == 1) {
        out.push_back(byte_ids[static_cast<unsigned char>(word[0])]);
        return;
    }
    const bool cacheable = word.size() <= bpe::WordCache::kMaxKey;
    uint64_t hash = 0;
    if (cacheable) {
        hash = bpe::hash_bytes(word);
        uint32_t n = 0;
        if (const int32_t* ids = ws.cache.find(word, hash, n)) {
            out.insert(out.end(), ids, ids + n);
            return;
        }
    }
    std::vector<int32_t>& sym = ws.symbols;
    sym.clear();
    bool whole = false;
    if (ignore_merges) {
        // A word that is a token is that token, whatever the merges say.
        ws.text.clear();
        for (const char c : word)
            utf8::append_code_point(ws.text, byte_chars[static_cast<unsigned char>(c)]);
        if (const int32_t id = model_id(ws.text); id >= 0) {
            sym.push_back(id);
            whole = true;
        }
    }
    if (!whole) {
        sym.resize(word.size());
        for (size_t i = 0; i < word.size(); ++i)
            sym[i] = byte_ids[static_cast<unsigned char>(word[i])];
        bpe::merge(merges, sym, ws.scratch);
    }
    out.insert(out.end(), sym.begin(), sym.end());
    if (cacheable) ws.cache.insert(word, hash, sym.data(), uint32_t(sym.size()));
}

int32_t TokenIndex::build(const std::vector<std::string>& strings, size_t count) {
    size_t cap = 16;
    while (cap < count * 2) cap *= 2;
    slots_.assign(cap, Slot{0, -1});
    mask_ = cap - 1;
    int32_t duplicate = -1;
    for (size_t id = 0; id < count; ++id) {
        const uint64_t h = bpe::hash_bytes(strings[id]);
        const uint32_t tag = uint32_t(h >> 32);
        uint64_t i = h & mask_;
        for (; slots_[i].id >= 0; i = (i + 1) & mask_)
            if (duplicate < 0 && slots_[i].tag == tag &&
                strings[size_t(slots_[i].id)] == strings[id])
                duplicate = int32_t(id);
        slots_[i] = Slot{tag, int32_t(id)};
    }
    return duplicate;
}

// Tokenizer

Tokenizer Tokenizer::from_file(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail("[tokenizer] cannot open ", path, ": ", std::strerror(errno));
    std::string text;
    if (std::fseek(f, 0, SEEK_END) == 0) {
        const long size = std::ftell(f);
        if (size > 0) text.reserve(size_t(size));
        std::rewind(f);
    }
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    const bool failed = std::ferror(f);
    std::fclose(f);
    if (failed) fail("[tokenizer] cannot read ", path);
    return from_json(text, path);
}

Tokenizer Tokenizer::from_json(std::string_view json_text, std::string_view origin) {
    return Tokenizer(load_tokenizer_json(json_text, origin));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
    std::vector<int32_t> out;
    out.reserve(text.size() / 4 + 8);
    encode_into(text, out, parse_special);
    return out;
}

void Tokenizer::encode_into(std::string_view text, std::vector<int32_t>& out,
                            bool parse_special) const {
    check_utf8(text);
    Lease ws(*impl_);
    impl_->encode(text, out, parse_special, *ws);
}

namespace {

template <class Text>
std::vector<std::vector<int32_t>> encode_many(const Tokenizer::Impl& impl,
                                              std::span<const Text> texts, int threads,
                                              bool parse_special) {
    std::vector<std::vector<int32_t>> out(texts.size());
    size_t workers =
        threads > 0 ? size_t(threads) : std::max(1u, std::thread::hardware_concurrency());
    workers = std::min(workers, texts.size());
    std::atomic<size_t> next{0};
    std::atomic<bool> stop{false};
    std::mutex error_mutex;
    std::exception_ptr error;
    size_t error_index = 0;
    auto work = [&] {
        Lease ws(impl);
        std::vector<int32_t> ids;  // filled here, moved into place once (no false sharing on out)
        while (!stop.load(std::memory_order_relaxed)) {
            const size_t i = next.fetch_add(1, std::memory_order_relaxed);
            if (i >= texts.size()) break;
            try {
                const std::string_view text = texts[i];
                check_utf8(text);
                ids.clear();
                ids.reserve(text.size() / 4 + 8);
                impl.encode(text, ids, parse_special, *ws);
                out[i] = std::move(ids);
                ids = std::vector<int32_t>();
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error || i < error_index) {
                    error = std::current_exception();
                    error_index = i;
                }
                stop = true;
            }
        }
    };
    if (workers <= 1) {
        work();
    } else {
        std::vector<std::thread> pool;
        pool.reserve(workers - 1);
        for (size_t t = 0; t + 1 < workers; ++t) pool.emplace_back(work);
        work();
        for (auto& t : pool) t.join();
    }
    if (error) {
        try {
            std::rethrow_exception(error);
        } catch (const Error& e) {
            fail("[tokenizer] encode_batch: text ", error_index, ": ", e.what());
        }
    }
    return out;
}

}  // namespace

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(std::span<const std::string> texts,
                                                          int threads, bool parse_special) const {
    return encode_many(*impl_, texts, threads, parse_special);
}

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(std::span<const std::string_view> texts,
                                                          int threads, bool parse_special) const {
    return encode_many(*impl_, texts, threads, parse_special);
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
    if (!impl_->valid(id))
        fail("[tokenizer] token_bytes: expected an id in [0, ", impl_->size(), "), got ", id);
    return impl_->bytes(id);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
    const Impl& t = *impl_;
    std::string bytes;
    bytes.reserve(ids.size() * 6);
    for (size_t i = 0; i < ids.size(); ++i) {
        const int32_t id = ids[i];
        if (!t.valid(id))
            fail("[tokenizer] decode: expected ids in [0, ", t.size(), "), got ", id,
                 " at position ", i);
        if (skip_special && (t.flags[size_t(id)] & Impl::kSpecial)) continue;
        bytes.append(t.bytes(id));
    }
    const size_t ok = utf8::valid_prefix(bytes);
    if (ok == bytes.size()) return bytes;
    std::string out = bytes.substr(0, ok);
    utf8::append_lossy(out, std::string_view(bytes).substr(ok), true);
    return out;
}

int32_t Tokenizer::vocab_size() const {
    return impl_->size();
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
    if (const auto it = impl_->added.find(token); it != impl_->added.end()) return it->second;
    if (const int32_t id = impl_->model_id(token); id >= 0) return id;
    return std::nullopt;
}

std::string Tokenizer::id_to_token(int32_t id) const {
    if (!impl_->valid(id))
        fail("[tokenizer] id_to_token: expected an id in [0, ", impl_->size(), "), got ", id);
    return impl_->token(id);
}

bool Tokenizer::is_special(int32_t id) const {
    return impl_->valid(id) && (impl_->flags[size_t(id)] & Impl::kSpecial);
}

size_t Tokenizer::cache_entries() const {
    std::lock_guard<std::mutex> lock(impl_->pool_mutex);
    size_t n = 0;
    for (const auto& ws : impl_->pool) n += ws->cache.size();
    return n;
}

void Tokenizer::clear_cache() const {
    std::lock_guard<std::mutex> lock(impl_->pool_mutex);
    impl_->pool.clear();
}

// StreamDecoder

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::feed(int32_t id) {
    const Tokenizer::Impl& t = *tokenizer_.impl_;
    if (!t.valid(id))
        fail("[tokenizer] stream decode: expected an id in [0, ", t.size(), "), got ", id);
    std::string out;
    if (skip_special_ && (t.flags[size_t(id)] & Tokenizer::Impl::kSpecial)) return out;
    pending_.append(t.bytes(id));
    const size_t used = utf8::append_lossy(out, pending_, false);
    pending_.erase(0, used);
    return out;
}

std::string StreamDecoder::finish() {
    std::string out;
    utf8::append_lossy(out, pending_, true);
    pending_.clear();
    return out;
}

}  // namespace olmo
