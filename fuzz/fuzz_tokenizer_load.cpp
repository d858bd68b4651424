// libFuzzer target: the tokenizer.json loader. Loading either works or throws olmo::Error (never
// another exception, never a crash); a tokenizer that loads must encode and decode without
// crashing, and decode must give what the streaming decoder gives.
//
// Inputs that start with byte 0x01 go deeper: they are "\x01 flags pattern \0 text", and the
// pattern is put as the Split regex into a small valid byte-level tokenizer, which then encodes the
// text. With the Isolated behaviour nothing is dropped, so the text must come back whole.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/check.h"
#include "tokenizer/tokenizer.h"

namespace {

using json = nlohmann::json;

// A byte-level BPE with every byte, a few merges, one special and one normalized added token.
json mini_tokenizer() {
    auto kept = [](unsigned x) {
        return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174;
    };
    json vocab = json::object();
    unsigned extra = 0;
    for (unsigned b = 0; b < 256; ++b) {
        const unsigned cp = kept(b) ? b : 256 + extra++;
        std::string s;
        if (cp < 0x80) {
            s += char(cp);
        } else {
            s += char(0xC0 | (cp >> 6));
            s += char(0x80 | (cp & 0x3F));
        }
        vocab[s] = b;
    }
    const char* merged[] = {"th", "the", "\xc4\xa0t", "12", "aa"};
    for (unsigned i = 0; i < 5; ++i) vocab[merged[i]] = 256 + i;
    return {{"added_tokens",
             {{{"id", 261}, {"content", "<|endoftext|>"}, {"special", true}, {"normalized", false}},
              {{"id", 262}, {"content", "[X]"}, {"special", false}, {"normalized", true}}}},
            {"pre_tokenizer",
             {{"type", "Sequence"},
              {"pretokenizers",
               {{{"type", "Split"}, {"pattern", {{"Regex", ""}}}, {"behavior", "Isolated"}},
                {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
            {"decoder", {{"type", "ByteLevel"}}},
            {"model",
             {{"type", "BPE"},
              {"vocab", vocab},
              {"merges", {"t h", "th e", "\xc4\xa0 t", "1 2", "a a"}}}}};
}

void exercise(const olmo::Tokenizer& tok, const std::string& text, bool must_round_trip) {
    std::vector<int32_t> ids;
    try {
        ids = tok.encode(text);
    } catch (const olmo::Error&) {
        return;  // invalid UTF-8, or a regex whose matching fails
    }
    for (int32_t id : ids)
        if (id < 0 || id >= tok.vocab_size()) std::abort();
    const std::string back = tok.decode(ids);
    if (must_round_trip && back != text) {
        std::fprintf(stderr, "fuzz_tokenizer_load: round trip lost text\n");
        std::abort();
    }
    olmo::StreamDecoder sd(tok);
    std::string streamed;
    for (int32_t id : ids) streamed += sd.feed(id);
    if (streamed + sd.finish() != back) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string input(reinterpret_cast<const char*>(data), size);
    if (size >= 2 && data[0] == 0x01) {
        static const json base = mini_tokenizer();
        const size_t zero = input.find('\0', 2);
        const std::string pattern =
            input.substr(2, zero == std::string::npos ? std::string::npos : zero - 2);
        const std::string text =
            zero == std::string::npos ? "a the 123 <|endoftext|>" : input.substr(zero + 1);
        json j = base;
        auto& split = j["pre_tokenizer"]["pretokenizers"][0];
        split["pattern"] = {{(data[1] & 1) ? "String" : "Regex", pattern}};
        const bool isolated = !(data[1] & 2);
        split["behavior"] = isolated ? "Isolated" : "Removed";
        split["invert"] = bool(data[1] & 4);
        std::string text_json;
        try {
            text_json = j.dump();
        } catch (const json::exception&) {
            return 0;  // the pattern is not valid UTF-8: not a JSON string
        }
        std::optional<olmo::Tokenizer> tok;
        try {
            tok.emplace(olmo::Tokenizer::from_json(text_json, "fuzz.json"));
        } catch (const olmo::Error&) {
            return 0;
        }
        exercise(*tok, text, isolated);
        return 0;
    }
    std::optional<olmo::Tokenizer> tok;
    try {
        tok.emplace(olmo::Tokenizer::from_json(input, "fuzz.json"));
    } catch (const olmo::Error&) {
        return 0;
    }
    for (const char* text :
         {"Hello world", "  a<|endoftext|>b\n\n", "\xc3\xa9t\xc3\xa9 123456 !!", ""})
        exercise(*tok, text, false);
    for (int32_t id = 0; id < tok->vocab_size() && id < 512; ++id) {
        (void)tok->id_to_token(id);
        (void)tok->token_to_id(tok->id_to_token(id));
    }
    return 0;
}
