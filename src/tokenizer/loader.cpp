// Reading tokenizer.json (HF tokenizers' serialisation) into Tokenizer::Impl. Everything that would
// change the ids or the text and that we do not implement is refused with an error naming it.
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/check.h"
#include "tokenizer/impl.h"
#include "tokenizer/utf8.h"

namespace olmo {

namespace {

using json = nlohmann::json;

class TokenizerJsonReader;

class Loader {
  public:
    explicit Loader(std::string_view origin) : origin_(origin) {}

    [[noreturn]] void bad(std::string_view key, std::string_view expected,
                          std::string_view got) const {
        fail("[tokenizer] ", origin_, ": ", key, ": expected ", expected, ", got ", got);
    }
    [[noreturn]] void unsupported(std::string_view key, std::string_view expected,
                                  std::string_view got) const {
        fail("[tokenizer] ", origin_, ": ", key, ": expected ", expected, ", got ", got,
             " (not supported)");
    }

    static std::string describe(const json& v) {
        switch (v.type()) {
            case json::value_t::null:
                return "null";
            case json::value_t::object:
                return "an object";
            case json::value_t::array:
                return "an array";
            case json::value_t::boolean:
                return v.get<bool>() ? "true" : "false";
            case json::value_t::string: {
                std::string s = v.get<std::string>();
                if (s.size() > 60) s = s.substr(0, utf8::valid_prefix(s.substr(0, 60))) + "...";
                return "\"" + s + "\"";
            }
            case json::value_t::discarded:
                return "nothing";
            default:
                return v.dump();
        }
    }

    // obj[key] or null when absent.
    static const json& field(const json& obj, const char* key) {
        static const json null_value;
        const auto it = obj.find(key);
        return it == obj.end() ? null_value : *it;
    }
    const json& object_field(const json& obj, const char* key, const std::string& path) const {
        const json& v = field(obj, key);
        if (!v.is_object()) bad(path, "an object", describe(v));
        return v;
    }
    std::string string_field(const json& obj, const char* key, const std::string& path) const {
        const json& v = field(obj, key);
        if (!v.is_string()) bad(path, "a string", describe(v));
        return v.get<std::string>();
    }
    bool bool_field(const json& obj, const char* key, const std::string& path, bool dflt) const {
        const json& v = field(obj, key);
        if (v.is_null()) return dflt;
        if (!v.is_boolean()) bad(path, "true or false", describe(v));
        return v.get<bool>();
    }
    // A type tag: obj["type"] as a string ("" when absent).
    std::string type_of(const json& obj, const std::string& path) const {
        if (!obj.is_object()) bad(path, "an object", describe(obj));
        const json& t = field(obj, "type");
        if (t.is_null()) return "";
        if (!t.is_string()) bad(path + ".type", "a string", describe(t));
        return t.get<std::string>();
    }

    std::shared_ptr<Tokenizer::Impl> load(std::string_view text);

  private:
    void load_model(const json& model);
    void load_added_tokens(const json& list);
    void load_pre_tokenizer(const json& pt);
    void check_simple_parts(const json& root);
    void load_post_processor(const json& post);
    void load_template(const json& t, const std::string& path);
    void finish();

    std::string origin_;
    TokenizerJsonReader* reader_ = nullptr;
    std::shared_ptr<Tokenizer::Impl> impl_;
    std::array<int16_t, 512> char_bytes_{};  // byte-level code point -> byte, -1 if none
    size_t model_size_ = 0;

    struct Added {
        std::string content;
        bool special = false;
        bool normalized = true;
    };
    std::map<int32_t, Added> added_by_id_;
    std::set<std::string> special_contents_;
    bool templated_ = false;
};

// Reads tokenizer.json into a JSON tree, except model.vocab and model.merges, whose entries are
// collected as plain strings: a tree of their 200,000 small nodes would cost more than all the
// rest. The tree keeps an empty object and an empty array in their place.
class TokenizerJsonReader : public nlohmann::json_sax<json> {
  public:
    json root;
    bool has_vocab = false, has_merges = false;
    // token -> its value (an integer id if well formed)
    std::vector<std::pair<std::string, json>> vocab;
    struct Merge {
        enum Kind : uint8_t { kString, kPair, kBad };
        std::string text;    // "a b"; a pair's two tokens back to back; what a bad entry is
        uint32_t split = 0;  // a pair: where the second token starts in text
        Kind kind = kString;
    };
    std::vector<Merge> merges;
    std::string error;

    bool null() override { return value(json(nullptr)); }
    bool boolean(bool v) override { return value(json(v)); }
    bool number_integer(number_integer_t v) override { return value(json(v)); }
    bool number_unsigned(number_unsigned_t v) override { return value(json(v)); }
    bool number_float(number_float_t v, const string_t&) override { return value(json(v)); }
    bool binary(binary_t&) override { return value(json::binary({})); }
    bool string(string_t& v) override {
        if (mode_ == Mode::merges && skip_ == 0) {
            if (in_pair_) {
                pair_.push_back(std::move(v));
            } else {
                merges.push_back({std::move(v), 0, Merge::kString});
            }
            return true;
        }
        return value(json(std::move(v)));
    }
    bool key(string_t& k) override {
        if (mode_ == Mode::vocab && skip_ == 0) {
            vocab.emplace_back(std::move(k), json());
            return true;
        }
        if (mode_ == Mode::tree) key_ = std::move(k);
        return true;
    }
    bool start_object(std::size_t) override { return open(json::object(), true); }
    bool start_array(std::size_t) override { return open(json::array(), false); }
    bool end_object() override { return close(); }
    bool end_array() override { return close(); }
    bool parse_error(std::size_t, const std::string&,
                     const nlohmann::detail::exception& e) override {
        error = e.what();
        return false;
    }

  private:
    enum class Mode { tree, vocab, merges };
    Mode mode_ = Mode::tree;
    int skip_ = 0;  // depth inside a container nested in a vocab or merges entry
    bool in_pair_ = false;
    std::vector<std::string> pair_;
    std::vector<json*> stack_;       // open containers of the tree
    std::vector<std::string> keys_;  // the key each open container has in its parent
    std::string key_;

    bool value(json v) {
        if (mode_ == Mode::vocab) {
            if (skip_ == 0) vocab.back().second = std::move(v);
            return true;
        }
        if (mode_ == Mode::merges) {
            if (skip_ == 0) {
                if (in_pair_)
                    pair_.push_back({});  // not a string: makes the pair invalid
                else
                    merges.push_back({Loader::describe(v), 0, Merge::kBad});
            }
            return true;
        }
        insert(std::move(v));
        return true;
    }
    json* insert(json v) {
        if (stack_.empty()) {
            root = std::move(v);
            return &root;
        }
        json& parent = *stack_.back();
        if (parent.is_array()) {
            parent.push_back(std::move(v));
            return &parent.back();
        }
        json& slot = parent[key_];
        slot = std::move(v);
        return &slot;
    }
    bool open(json container, bool object) {
        if (mode_ != Mode::tree) {
            if (skip_ == 0 && mode_ == Mode::merges && !object && !in_pair_) {
                in_pair_ = true;
                pair_.clear();
                return true;
            }
            if (skip_ == 0) {
                if (mode_ == Mode::vocab)
                    vocab.back().second = object ? json::object() : json::array();
                else if (in_pair_)
                    pair_.push_back({});
                else
                    merges.push_back({object ? "an object" : "an array", 0, Merge::kBad});
            }
            ++skip_;
            return true;
        }
        const bool in_model = stack_.size() == 2 && keys_[1] == "model";
        const std::string key = key_;
        json* c = insert(std::move(container));
        if (in_model && object && key == "vocab") {
            mode_ = Mode::vocab;
            has_vocab = true;
        } else if (in_model && !object && key == "merges") {
            mode_ = Mode::merges;
            has_merges = true;
        }
        stack_.push_back(c);
        keys_.push_back(key);
        return true;
    }
    bool close() {
        if (mode_ != Mode::tree) {
            if (skip_ > 0) {
                --skip_;
                return true;
            }
            if (in_pair_) {
                Merge m;
                if (pair_.size() == 2 && !pair_[0].empty() && !pair_[1].empty()) {
                    m = {pair_[0] + pair_[1], uint32_t(pair_[0].size()), Merge::kPair};
                } else {
                    m = {"an array that is not two tokens", 0, Merge::kBad};
                }
                merges.push_back(std::move(m));
                in_pair_ = false;
                return true;
            }
            mode_ = Mode::tree;  // the end of model.vocab or model.merges
        }
        stack_.pop_back();
        keys_.pop_back();
        return true;
    }
};

// The byte <-> character table of GPT-2's byte-level BPE: printable bytes stand for themselves, the
// others are moved to U+0100 and up, in order.
void byte_level_table(std::array<uint32_t, 256>& byte_chars, std::array<int16_t, 512>& char_bytes) {
    auto keeps = [](unsigned b) {
        return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    char_bytes.fill(-1);
    uint32_t n = 0;
    for (unsigned b = 0; b < 256; ++b) {
        const uint32_t c = keeps(b) ? b : 256 + n++;
        byte_chars[b] = c;
        char_bytes[c] = int16_t(b);
    }
}

std::shared_ptr<Tokenizer::Impl> Loader::load(std::string_view text) {
    TokenizerJsonReader reader;
    if (!json::sax_parse(text.begin(), text.end(), &reader) || !reader.error.empty()) {
        std::string what = reader.error.empty() ? "an incomplete document" : reader.error;
        if (const size_t close = what.find("] "); what.starts_with("[json.") && close != what.npos)
            what = what.substr(close + 2);
        fail("[tokenizer] ", origin_, ": expected valid JSON, got ", what);
    }
    reader_ = &reader;
    const json& root = reader.root;
    if (!root.is_object()) bad("top level", "a JSON object", describe(root));
    impl_ = std::make_shared<Tokenizer::Impl>();
    byte_level_table(impl_->byte_chars, char_bytes_);

    check_simple_parts(root);
    const json& model = field(root, "model");
    const std::string mtype = type_of(model, "model");
    if (mtype != "BPE")
        unsupported("model.type", "BPE", mtype.empty() ? "none" : "\"" + mtype + "\"");
    load_model(model);
    const json& added = field(root, "added_tokens");
    if (!added.is_null()) {
        if (!added.is_array()) bad("added_tokens", "an array", describe(added));
        load_added_tokens(added);
    }
    load_pre_tokenizer(field(root, "pre_tokenizer"));
    finish();
    return std::move(impl_);
}

void Loader::check_simple_parts(const json& root) {
    for (const char* key : {"truncation", "padding"}) {
        const json& v = field(root, key);
        if (!v.is_null()) unsupported(key, "null", describe(v));
    }
    const json& norm = field(root, "normalizer");
    if (!norm.is_null()) {
        const std::string t = type_of(norm, "normalizer");
        const json& inner = field(norm, "normalizers");
        if (!(t == "Sequence" && inner.is_array() && inner.empty()))
            unsupported("normalizer", "null", t.empty() ? describe(norm) : "\"" + t + "\"");
    }
    load_post_processor(field(root, "post_processor"));
    const json& dec = field(root, "decoder");
    if (dec.is_null()) unsupported("decoder", "a ByteLevel decoder", "null");
    const std::string dt = type_of(dec, "decoder");
    if (dt != "ByteLevel")
        unsupported("decoder.type", "ByteLevel", dt.empty() ? "none" : "\"" + dt + "\"");
}

// Post-processing: ByteLevel only adjusts offsets; TemplateProcessing puts special tokens around
// the ids of a single text (HF adds them in encode by default). Anything else is refused.
void Loader::load_post_processor(const json& post) {
    if (post.is_null()) return;
    const std::string t = type_of(post, "post_processor");
    if (t == "ByteLevel") return;
    if (t == "TemplateProcessing") return load_template(post, "post_processor");
    if (t == "Sequence") {
        const json& list = field(post, "processors");
        if (!list.is_array()) bad("post_processor.processors", "an array", describe(list));
        for (size_t i = 0; i < list.size(); ++i) {
            const std::string path = cat("post_processor.processors[", i, "]");
            const std::string ti = type_of(list[i], path);
            if (ti == "TemplateProcessing")
                load_template(list[i], path);
            else if (ti != "ByteLevel")
                unsupported(path + ".type", "ByteLevel or TemplateProcessing", "\"" + ti + "\"");
        }
        return;
    }
    unsupported("post_processor.type", "null, ByteLevel, TemplateProcessing or Sequence",
                t.empty() ? "none" : "\"" + t + "\"");
}

void Loader::load_template(const json& t, const std::string& path) {
    if (templated_) unsupported(path, "one TemplateProcessing", "a second one");
    templated_ = true;
    const json& single = field(t, "single");
    if (!single.is_array()) bad(path + ".single", "an array", describe(single));
    const json& specials = field(t, "special_tokens");
    bool sequence = false;
    for (size_t i = 0; i < single.size(); ++i) {
        const std::string p = cat(path, ".single[", i, "]");
        const json& piece = single[i];
        if (!piece.is_object() || piece.size() != 1)
            bad(p, "{\"Sequence\": ...} or {\"SpecialToken\": ...}", describe(piece));
        if (piece.contains("Sequence")) {
            const json& id = field(piece["Sequence"], "id");
            if (sequence || id != "A") unsupported(p, "the sequence A once", describe(id));
            sequence = true;
        } else if (piece.contains("SpecialToken")) {
            const json& name = field(piece["SpecialToken"], "id");
            if (!name.is_string()) bad(p + ".SpecialToken.id", "a string", describe(name));
            const json& entry =
                specials.is_object() ? field(specials, name.get<std::string>().c_str()) : specials;
            const json& ids = entry.is_object() ? field(entry, "ids") : entry;
            if (!ids.is_array())
                bad(path + ".special_tokens", cat("ids for \"", name.get<std::string>(), "\""),
                    describe(ids));
            for (const json& id : ids) {
                if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
                    id.get<int64_t>() > INT32_MAX)
                    bad(path + ".special_tokens", "token ids", describe(id));
                (sequence ? impl_->suffix_ids : impl_->prefix_ids).push_back(id.get<int32_t>());
            }
        } else {
            bad(p, "{\"Sequence\": ...} or {\"SpecialToken\": ...}", describe(piece));
        }
    }
    if (!sequence) unsupported(path + ".single", "the sequence A", "none");
}

void Loader::load_model(const json& model) {
    Tokenizer::Impl& t = *impl_;
    const json& dropout = field(model, "dropout");
    if (!dropout.is_null() && !(dropout.is_number() && dropout.get<double>() == 0.0))
        unsupported("model.dropout", "null", describe(dropout));
    if (bool_field(model, "byte_fallback", "model.byte_fallback", false))
        unsupported("model.byte_fallback", "false", "true");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        const json& v = field(model, key);
        if (!v.is_null() && !(v.is_string() && v.get<std::string>().empty()))
            unsupported(std::string("model.") + key, "null or \"\"", describe(v));
    }
    const json& unk = field(model, "unk_token");
    if (!unk.is_null() && !unk.is_string())
        bad("model.unk_token", "null or a string", describe(unk));
    (void)bool_field(model, "fuse_unk", "model.fuse_unk", false);
    t.ignore_merges = bool_field(model, "ignore_merges", "model.ignore_merges", false);

    // Vocabulary: ids 0..n-1, each once.
    const json& vocab_tree = field(model, "vocab");
    if (!vocab_tree.is_object()) bad("model.vocab", "an object", describe(vocab_tree));
    std::vector<std::pair<std::string, json>> own_vocab;
    if (!reader_->has_vocab)
        for (auto it = vocab_tree.begin(); it != vocab_tree.end(); ++it)
            own_vocab.emplace_back(it.key(), it.value());
    auto& vocab = reader_->has_vocab ? reader_->vocab : own_vocab;
    const size_t n = vocab.size();
    model_size_ = n;
    std::vector<std::string>& tokens = t.model_tokens;
    tokens.assign(n, std::string());
    std::vector<uint8_t> seen(n, 0);
    for (auto& [token, v] : vocab) {
        if (!v.is_number_integer())
            bad("model.vocab[\"" + token + "\"]", "an integer id", describe(v));
        const int64_t id = v.get<int64_t>();
        if (id < 0 || uint64_t(id) >= n)
            bad("model.vocab[\"" + token + "\"]", cat("an id in [0, ", n, ") (ids must be 0..n-1)"),
                std::to_string(id));
        if (seen[size_t(id)])
            bad("model.vocab[\"" + token + "\"]", "each id once",
                cat("id ", id, " also for \"", tokens[size_t(id)], "\""));
        seen[size_t(id)] = 1;
        tokens[size_t(id)] = std::move(token);
    }
    if (const int32_t dup = t.model_index.build(tokens, n); dup >= 0)
        bad("model.vocab", "each token once", "\"" + tokens[size_t(dup)] + "\" more than once");
    // Every byte must have its one-character token (there is no byte fallback or unknown token).
    for (unsigned b = 0; b < 256; ++b) {
        std::string ch;
        utf8::append_code_point(ch, t.byte_chars[b]);
        const int32_t id = t.model_id(ch);
        if (id < 0)
            bad("model.vocab", "a token for every byte (byte-level BPE)",
                cat("none for byte 0x", "0123456789abcdef"[b >> 4], "0123456789abcdef"[b & 15],
                    " (\"", ch, "\")"));
        t.byte_ids[b] = id;
    }

    // Merges: "a b" strings (lines starting with #version are skipped) or [a, b] pairs.
    const json& merges_tree = field(model, "merges");
    if (!merges_tree.is_array()) bad("model.merges", "an array", describe(merges_tree));
    using Merge = TokenizerJsonReader::Merge;
    std::vector<Merge> own_merges;
    if (!reader_->has_merges) {
        for (const json& m : merges_tree) {
            if (m.is_string())
                own_merges.push_back({m.get<std::string>(), 0, Merge::kString});
            else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
                own_merges.push_back({m[0].get<std::string>() + m[1].get<std::string>(),
                                      uint32_t(m[0].get_ref<const std::string&>().size()),
                                      Merge::kPair});
            else
                own_merges.push_back({describe(m), 0, Merge::kBad});
        }
    }
    const auto& merges = reader_->has_merges ? reader_->merges : own_merges;
    t.merges.reserve(merges.size());
    uint32_t rank = 0;
    std::string joined;
    for (size_t i = 0; i < merges.size(); ++i) {
        const Merge& m = merges[i];
        if (m.kind == Merge::kBad)
            bad(cat("model.merges[", i, "]"), "\"a b\" or [\"a\", \"b\"]", m.text);
        std::string_view a = std::string_view(m.text).substr(0, m.split);
        std::string_view b = std::string_view(m.text).substr(m.split);
        if (m.kind == Merge::kString) {
            if (m.text.starts_with("#version")) continue;
            const size_t sp = m.text.find(' ');
            if (sp == std::string::npos || m.text.find(' ', sp + 1) != std::string::npos)
                bad(cat("model.merges[", i, "]"), "two tokens separated by one space",
                    describe(json(m.text)));
            a = std::string_view(m.text).substr(0, sp);
            b = std::string_view(m.text).substr(sp + 1);
        }
        joined.assign(a);
        joined.append(b);
        int32_t ids[3];
        const std::string_view parts[3] = {a, b, joined};
        for (int k = 0; k < 3; ++k) {
            ids[k] = t.model_id(parts[k]);
            if (ids[k] < 0)
                bad(cat("model.merges[", i, "]"), "tokens of model.vocab",
                    cat("\"", parts[k], "\", which is not in it"));
        }
        t.merges.insert(ids[0], ids[1], bpe::MergeRule{rank++, ids[2]});
    }
}

void Loader::load_added_tokens(const json& list) {
    Tokenizer::Impl& t = *impl_;
    // Ids are given as HF assigns them when it reads the file: an added token already in the
    // vocabulary keeps that id, the others follow the vocabulary in order.
    int64_t next_id = int64_t(model_size_);
    for (size_t i = 0; i < list.size(); ++i) {
        const json& e = list[i];
        const std::string path = cat("added_tokens[", i, "]");
        if (!e.is_object()) bad(path, "an object", describe(e));
        const std::string content = string_field(e, "content", path + ".content");
        const json& idv = field(e, "id");
        if (!idv.is_number_integer()) bad(path + ".id", "an integer", describe(idv));
        const int64_t file_id = idv.get<int64_t>();
        for (const char* key : {"single_word", "lstrip", "rstrip"})
            if (bool_field(e, key, path + "." + key, false))
                unsupported(path + "." + key, "false", "true");
        Added a{content, bool_field(e, "special", path + ".special", false),
                bool_field(e, "normalized", path + ".normalized", true)};
        if (content.empty()) continue;
        int64_t id;
        if (const auto it = t.added.find(content); it != t.added.end())
            id = it->second;
        else if (const int32_t m = t.model_id(content); m >= 0)
            id = m;
        else
            id = next_id++;
        if (id != file_id)
            bad(path + ".id", cat(id, " (the id HF gives \"", content, "\")"),
                std::to_string(file_id));
        t.added[content] = int32_t(id);
        if (a.special) special_contents_.insert(content);
        added_by_id_[int32_t(id)] = std::move(a);
    }
}

void Loader::load_pre_tokenizer(const json& pt) {
    Tokenizer::Impl& t = *impl_;
    if (pt.is_null()) unsupported("pre_tokenizer", "a Sequence of Split and ByteLevel", "null");
    std::vector<const json*> steps;
    std::vector<std::string> paths;
    if (type_of(pt, "pre_tokenizer") == "Sequence") {
        const json& list = field(pt, "pretokenizers");
        if (!list.is_array()) bad("pre_tokenizer.pretokenizers", "an array", describe(list));
        for (size_t i = 0; i < list.size(); ++i) {
            steps.push_back(&list[i]);
            paths.push_back(cat("pre_tokenizer.pretokenizers[", i, "]"));
        }
    } else {
        steps.push_back(&pt);
        paths.push_back("pre_tokenizer");
    }
    if (steps.empty())
        unsupported("pre_tokenizer.pretokenizers", "Split steps then ByteLevel", "an empty list");
    for (size_t i = 0; i < steps.size(); ++i) {
        const json& s = *steps[i];
        const std::string& path = paths[i];
        const std::string type = type_of(s, path);
        const bool last = i + 1 == steps.size();
        if (last) {
            if (type != "ByteLevel")
                unsupported(path + ".type", "ByteLevel as the last step", "\"" + type + "\"");
            // HF's defaults for both are true.
            if (bool_field(s, "add_prefix_space", path + ".add_prefix_space", true))
                unsupported(path + ".add_prefix_space", "false", "true");
            if (bool_field(s, "use_regex", path + ".use_regex", true))
                unsupported(path + ".use_regex", "false (the split comes from Split steps)",
                            "true");
            continue;
        }
        if (type != "Split")
            unsupported(path + ".type", "Split (before the final ByteLevel)", "\"" + type + "\"");
        tok::SplitRule rule;
        const json& pat = field(s, "pattern");
        if (!pat.is_object() || pat.size() != 1)
            bad(path + ".pattern", "{\"Regex\": ...} or {\"String\": ...}", describe(pat));
        const bool is_regex = pat.contains("Regex");
        if (!is_regex && !pat.contains("String"))
            bad(path + ".pattern", "{\"Regex\": ...} or {\"String\": ...}", describe(pat));
        const std::string pat_path = path + (is_regex ? ".pattern.Regex" : ".pattern.String");
        const json& r = pat[is_regex ? "Regex" : "String"];
        if (!r.is_string()) bad(pat_path, "a string", describe(r));
        const std::string text = r.get<std::string>();
        try {
            if (!is_regex) {
                rule.regex = std::make_unique<tok::Regex>(text, true);
            } else {
                // The exact translation, and when it differs a faster one for text where both
                // agree.
                uint32_t first_delta = UINT32_MAX;
                rule.regex = std::make_unique<tok::Regex>(
                    tok::onig_to_pcre2(text, true, &first_delta), false);
                if (first_delta != UINT32_MAX) {
                    rule.fast =
                        std::make_unique<tok::Regex>(tok::onig_to_pcre2(text, false), false);
                    std::string lead;
                    utf8::append_code_point(lead, first_delta);
                    rule.fast_below = static_cast<unsigned char>(lead[0]);
                }
            }
        } catch (const Error& e) {
            std::string what = e.what();
            const std::string prefix = "[tokenizer] regex: ";
            if (what.starts_with(prefix)) what = what.substr(prefix.size());
            fail("[tokenizer] ", origin_, ": ", pat_path, ": ", what);
        }
        const std::string behavior = string_field(s, "behavior", path + ".behavior");
        if (behavior == "Isolated")
            rule.isolated = true;
        else if (behavior != "Removed")
            unsupported(path + ".behavior", "Removed or Isolated", "\"" + behavior + "\"");
        rule.invert = bool_field(s, "invert", path + ".invert", false);
        t.splits.push_back(std::move(rule));
    }
}

void Loader::finish() {
    Tokenizer::Impl& t = *impl_;
    size_t n = model_size_;
    if (!added_by_id_.empty()) n = std::max(n, size_t(added_by_id_.rbegin()->first) + 1);
    t.flags.assign(n, 0);
    for (size_t id = 0; id < model_size_; ++id) t.flags[id] = Tokenizer::Impl::kPresent;
    for (const auto& [id, a] : added_by_id_) {
        t.added_text[id] = a.content;
        t.flags[size_t(id)] = Tokenizer::Impl::kPresent | Tokenizer::Impl::kAdded;
        (a.normalized ? t.added_normalized : t.added_raw).add(a.content, id, a.special);
    }
    for (const std::vector<int32_t>* v : {&t.prefix_ids, &t.suffix_ids})
        for (int32_t id : *v)
            if (size_t(id) >= n || !(t.flags[size_t(id)] & Tokenizer::Impl::kPresent))
                bad("post_processor.special_tokens", cat("ids in [0, ", n, ")"),
                    std::to_string(id));
    // Special for decoding means: the token's string is the content of a special added token.
    for (size_t id = 0; id < n; ++id)
        if ((t.flags[id] & Tokenizer::Impl::kPresent) &&
            special_contents_.count(t.token(int32_t(id))))
            t.flags[id] |= Tokenizer::Impl::kSpecial;
    // Bytes of each token as the ByteLevel decoder gives them: every character mapped back to its
    // byte, or the token's own UTF-8 bytes when a character is not one of the 256.
    t.offsets.assign(n + 1, 0);
    t.blob.clear();
    std::string bytes;
    for (size_t id = 0; id < n; ++id) {
        const std::string& tok = t.token(int32_t(id));
        bytes.clear();
        bool mapped = true;
        for (size_t i = 0; i < tok.size();) {
            const uint32_t cp = utf8::next_code_point(tok, i);
            if (cp >= char_bytes_.size() || char_bytes_[cp] < 0) {
                mapped = false;
                break;
            }
            bytes.push_back(char(char_bytes_[cp]));
        }
        t.blob += mapped ? bytes : tok;
        t.offsets[id + 1] = uint32_t(t.blob.size());
    }
}

}  // namespace

std::shared_ptr<Tokenizer::Impl> load_tokenizer_json(std::string_view json_text,
                                                     std::string_view origin) {
    return Loader(origin).load(json_text);
}

}  // namespace olmo
