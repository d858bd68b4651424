#include "apps/text_codec.h"

#include <filesystem>

#include "core/check.h"

namespace olmo::cli {

namespace fs = std::filesystem;

TextCodec TextCodec::open(const std::string& spec) {
    TextCodec c;
    if (spec == "bytes") return c;
    c.tok_ = std::make_shared<Tokenizer>(Tokenizer::from_file(spec));
    return c;
}

TextCodec TextCodec::for_model(const std::string& model_dir, const std::string& override_spec) {
    if (!override_spec.empty()) return open(override_spec);
    const fs::path p = fs::path(model_dir) / "tokenizer.json";
    if (fs::exists(p)) return open(p.string());
    const fs::path marker =
        fs::path(model_dir) / "tokenizer.txt";  // written by `train` for byte models
    if (fs::exists(marker)) return open("bytes");
    fail("[cli] ", model_dir,
         " has no tokenizer.json: pass --tokenizer FILE (or --tokenizer bytes)");
}

std::vector<int32_t> TextCodec::encode(std::string_view text) const {
    if (tok_) return tok_->encode(text);
    return std::vector<int32_t>(reinterpret_cast<const unsigned char*>(text.data()),
                                reinterpret_cast<const unsigned char*>(text.data()) + text.size());
}

std::string TextCodec::decode(std::span<const int32_t> ids) const {
    if (tok_) return tok_->decode(ids);
    std::string s;
    for (int32_t id : ids)
        if (id >= 0 && id < 256) s.push_back(char(id));
    return s;
}

int32_t TextCodec::vocab_size() const {
    return tok_ ? tok_->vocab_size() : kByteVocab;
}

int32_t TextCodec::eos_id() const {
    if (!tok_) return kByteEos;
    const auto id = tok_->token_to_id("<|endoftext|>");
    return id ? *id : -1;
}

TextCodec::Stream::Stream(const TextCodec& codec) : codec_(codec) {
    if (codec.tok_) dec_ = std::make_unique<StreamDecoder>(*codec.tok_);
}

std::string TextCodec::Stream::feed(int32_t id) {
    if (dec_) return dec_->feed(id);
    if (id < 0 || id >= 256) return "";
    pending_.push_back(char(id));
    // Emit the longest prefix that does not end inside a UTF-8 sequence.
    size_t cut = pending_.size();
    for (size_t back = 1; back <= 3 && back <= pending_.size(); ++back) {
        const unsigned char c = static_cast<unsigned char>(pending_[pending_.size() - back]);
        if ((c & 0xC0) == 0x80) continue;  // continuation byte
        const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (need > back) cut = pending_.size() - back;
        break;
    }
    std::string out = pending_.substr(0, cut);
    pending_.erase(0, cut);
    return out;
}

std::string TextCodec::Stream::finish() {
    if (dec_) return dec_->finish();
    std::string out;
    out.swap(pending_);
    return out;
}

}  // namespace olmo::cli
