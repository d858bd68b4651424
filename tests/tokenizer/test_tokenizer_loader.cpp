// tokenizer.json loading (a small hand-made byte-level BPE and every refusal), the BPE merge order
// and the regex translation.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "testing.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace olmo::testing {
namespace {

using json = nlohmann::json;

// GPT-2's byte -> character table, written out independently of the library.
std::string byte_char(unsigned b) {
    auto kept = [](unsigned x) {
        return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174;
    };
    unsigned cp = b;
    if (!kept(b)) {
        cp = 256;
        for (unsigned x = 0; x < b; ++x) cp += !kept(x);
    }
    std::string s;
    if (cp < 0x80) {
        s += char(cp);
    } else {
        s += char(0xC0 | (cp >> 6));
        s += char(0x80 | (cp & 0x3F));
    }
    return s;
}

// A small byte-level BPE: ids 0..255 are the bytes in order, then the merged tokens.
json mini_tokenizer() {
    json vocab = json::object();
    for (unsigned b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
    const char* merged[] = {"ab", "bc", "abc", "Ġa", "aa", "aaaa"};
    for (int i = 0; i < 6; ++i) vocab[merged[i]] = 256 + i;
    json merges = {"a b", "b c", "ab c", "Ġ a", "a a", "aa aa"};
    json added = json::array();
    auto add = [&](const char* content, int id, bool special, bool normalized) {
        added.push_back({{"id", id},
                         {"content", content},
                         {"single_word", false},
                         {"lstrip", false},
                         {"rstrip", false},
                         {"normalized", normalized},
                         {"special", special}});
    };
    add("<|end|>", 262, true, false);
    add("<|e", 263, false, false);
    add("[X]", 264, false, true);
    add("~", '~', false, false);  // already in the vocabulary: keeps its id
    return {
        {"version", "1.0"},
        {"truncation", nullptr},
        {"padding", nullptr},
        {"added_tokens", added},
        {"normalizer", nullptr},
        {"pre_tokenizer",
         {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"},
             {"pattern", {{"Regex", " ?\\p{L}+| ?\\p{N}|\\s+|[^\\s\\p{L}\\p{N}]+"}}},
             {"behavior", "Isolated"},
             {"invert", false}},
            {{"type", "ByteLevel"},
             {"add_prefix_space", false},
             {"trim_offsets", true},
             {"use_regex", false}}}}}},
        {"post_processor", nullptr},
        {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}}},
        {"model",
         {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", nullptr},
          {"continuing_subword_prefix", ""},
          {"end_of_word_suffix", ""},
          {"fuse_unk", false},
          {"byte_fallback", false},
          {"vocab", vocab},
          {"merges", merges}}},
    };
}

Tokenizer load(const json& j) {
    return Tokenizer::from_json(j.dump(), "mini.json");
}

std::vector<int32_t> ids(std::initializer_list<int32_t> v) {
    return v;
}

TEST(TokenizerLoader, MiniTokenizerMergesByRank) {
    const Tokenizer tok = load(mini_tokenizer());
    EXPECT_EQ(tok.vocab_size(), 265);
    EXPECT_EQ(tok.encode("abc"), ids({258}));         // a+b first (rank 0), then ab+c
    EXPECT_EQ(tok.encode("bcab"), ids({257, 256}));   // a+b (rank 0) before b+c (rank 1)
    EXPECT_EQ(tok.encode("aaa"), ids({260, 'a'}));    // leftmost of equal ranks
    EXPECT_EQ(tok.encode("aaaa"), ids({261}));        // aa+aa after both a+a
    EXPECT_EQ(tok.encode("aaaaa"), ids({261, 'a'}));  // a a a a a -> aa a a a -> aa aa a -> aaaa a
    EXPECT_EQ(tok.encode(" a"), ids({259}));          // Ġ+a
    EXPECT_EQ(tok.encode("c a"), ids({'c', 259}));
    EXPECT_EQ(tok.encode("1 2"), ids({'1', ' ', '2'}));  // " 2" is one piece, but nothing merges it
    EXPECT_EQ(tok.decode(tok.encode("abc aaaa\n")), "abc aaaa\n");
}

TEST(TokenizerLoader, MiniTokenizerAddedTokens) {
    const Tokenizer tok = load(mini_tokenizer());
    // Leftmost-longest among added tokens, special or not.
    EXPECT_EQ(tok.encode("<|end|>"), ids({262}));
    EXPECT_EQ(tok.encode("<|e"), ids({263}));
    EXPECT_EQ(tok.encode("c<|end|>c"), ids({'c', 262, 'c'}));
    EXPECT_EQ(tok.encode("<|end"), ids({263, 'n', 'd'}));
    EXPECT_EQ(tok.encode("x[X]y"), ids({'x', 264, 'y'}));
    EXPECT_EQ(tok.encode("a~~b"), ids({'a', '~', '~', 'b'}));
    EXPECT_EQ(tok.token_to_id("~"), '~');
    // parse_special = false: the special token is text, and the overlapping non-special "<|e"
    // inside it is not looked for (HF skips the whole leftmost-longest match).
    EXPECT_EQ(tok.encode("<|end|>", false), ids({'<', '|', 'e', 'n', 'd', '|', '>'}));
    EXPECT_TRUE(tok.is_special(262));
    EXPECT_FALSE(tok.is_special(263));
    EXPECT_EQ(tok.decode(ids({'x', 262, 263, 'y'}), true), "x<|ey");
    EXPECT_EQ(tok.token_to_id("<|end|>"), 262);
    EXPECT_EQ(tok.id_to_token(259), "Ġa");
}

TEST(TokenizerLoader, MergesAsPairsAndVersionLine) {
    json j = mini_tokenizer();
    json pairs = json::array();
    for (const auto& m : j["model"]["merges"]) {
        const std::string s = m.get<std::string>();
        pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
    }
    json with_version = j;
    with_version["model"]["merges"].insert(with_version["model"]["merges"].begin(),
                                           "#version: 0.2");
    j["model"]["merges"] = pairs;
    for (const json& variant : {j, with_version}) {
        const Tokenizer tok = load(variant);
        EXPECT_EQ(tok.encode("bcab"), ids({257, 256}));
        EXPECT_EQ(tok.encode("aaaaa"), ids({261, 'a'}));
    }
}

TEST(TokenizerLoader, RemovedBehaviourAndStringPattern) {
    json j = mini_tokenizer();
    auto& split = j["pre_tokenizer"]["pretokenizers"][0];
    // Removed without invert drops the matches: here the spaces.
    split["pattern"] = {{"String", " "}};
    split["behavior"] = "Removed";
    EXPECT_EQ(load(j).encode("ab ab"), ids({256, 256}));
    // With invert it keeps the matches and drops the rest.
    split["pattern"] = {{"Regex", "a+"}};
    split["invert"] = true;
    EXPECT_EQ(load(j).encode("xaax"), ids({260}));
}

TEST(TokenizerLoader, TemplateProcessingAddsItsTokens) {
    json j = mini_tokenizer();
    const json tmpl = {{"type", "TemplateProcessing"},
                       {"single",
                        {{{"SpecialToken", {{"id", "<|end|>"}, {"type_id", 0}}}},
                         {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                         {{"SpecialToken", {{"id", "[X]"}, {"type_id", 0}}}}}},
                       {"pair", json::array()},
                       {"special_tokens",
                        {{"<|end|>", {{"id", "<|end|>"}, {"ids", {262}}, {"tokens", {"<|end|>"}}}},
                         {"[X]", {{"id", "[X]"}, {"ids", {264}}, {"tokens", {"[X]"}}}}}}};
    j["post_processor"] = tmpl;
    EXPECT_EQ(load(j).encode("abc"), ids({262, 258, 264}));
    EXPECT_EQ(load(j).encode(""), ids({262, 264}));
    j["post_processor"] = {
        {"type", "Sequence"},
        {"processors", {{{"type", "ByteLevel"}, {"trim_offsets", false}}, tmpl}}};
    EXPECT_EQ(load(j).encode("abc", false), ids({262, 258, 264}));
    j["post_processor"] = {{"type", "ByteLevel"}};
    EXPECT_EQ(load(j).encode("abc"), ids({258}));
}

TEST(TokenizerLoader, FromFile) {
    const std::string path = temp_dir() + "/tok.json";
    std::ofstream(path) << mini_tokenizer().dump();
    EXPECT_EQ(Tokenizer::from_file(path).encode("abc"), ids({258}));
    EXPECT_TRUE(throws_error([&] { Tokenizer::from_file(temp_dir() + "/none.json"); },
                             {"[tokenizer]", "cannot open", "none.json"}));
}

// Each unsupported or broken file is one olmo::Error naming what is wrong.
TEST(TokenizerLoader, Refusals) {
    struct Case {
        const char* name;
        std::function<void(json&)> edit;
        std::vector<std::string> message;
    };
    const std::vector<Case> cases = {
        {"model type",
         [](json& j) { j["model"]["type"] = "Unigram"; },
         {"model.type", "Unigram", "not supported"}},
        {"no model type", [](json& j) { j["model"].erase("type"); }, {"model.type"}},
        {"normalizer",
         [](json& j) {
             j["normalizer"] = {{"type", "NFC"}};
         },
         {"normalizer", "NFC"}},
        {"dropout", [](json& j) { j["model"]["dropout"] = 0.1; }, {"model.dropout", "0.1"}},
        {"byte fallback", [](json& j) { j["model"]["byte_fallback"] = true; }, {"byte_fallback"}},
        {"subword prefix",
         [](json& j) { j["model"]["continuing_subword_prefix"] = "##"; },
         {"continuing_subword_prefix", "##"}},
        {"suffix",
         [](json& j) { j["model"]["end_of_word_suffix"] = "</w>"; },
         {"end_of_word_suffix"}},
        {"truncation",
         [](json& j) {
             j["truncation"] = {{"max_length", 5}};
         },
         {"truncation"}},
        {"padding",
         [](json& j) {
             j["padding"] = {{"strategy", "BatchLongest"}};
         },
         {"padding"}},
        {"post processor",
         [](json& j) {
             j["post_processor"] = {{"type", "RobertaProcessing"}};
         },
         {"post_processor.type", "RobertaProcessing"}},
        {"template pair",
         [](json& j) {
             j["post_processor"] = {{"type", "TemplateProcessing"},
                                    {"single", {{{"Sequence", {{"id", "B"}}}}}}};
         },
         {"post_processor.single[0]", "sequence A"}},
        {"template ids",
         [](json& j) {
             j["post_processor"] = {
                 {"type", "TemplateProcessing"},
                 {"single", {{{"SpecialToken", {{"id", "<s>"}}}}, {{"Sequence", {{"id", "A"}}}}}},
                 {"special_tokens", {{"<s>", {{"ids", {5000}}}}}}};
         },
         {"post_processor.special_tokens", "5000"}},
        {"decoder",
         [](json& j) {
             j["decoder"] = {{"type", "WordPiece"}};
         },
         {"decoder.type", "WordPiece"}},
        {"no decoder", [](json& j) { j["decoder"] = nullptr; }, {"decoder"}},
        {"pre-tokenizer kind",
         [](json& j) {
             j["pre_tokenizer"] = {{"type", "Whitespace"}};
         },
         {"pre_tokenizer.type", "Whitespace"}},
        {"no pre-tokenizer", [](json& j) { j["pre_tokenizer"] = nullptr; }, {"pre_tokenizer"}},
        {"byte level regex",
         [](json& j) { j["pre_tokenizer"]["pretokenizers"][1]["use_regex"] = true; },
         {"use_regex"}},
        {"prefix space",
         [](json& j) { j["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true; },
         {"add_prefix_space"}},
        {"split behaviour",
         [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "MergedWithPrevious"; },
         {"behavior", "MergedWithPrevious"}},
        {"split last",
         [](json& j) { j["pre_tokenizer"]["pretokenizers"].erase(1); },
         {"ByteLevel"}},
        {"bad regex",
         [](json& j) {
             j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(a"}};
         },
         {"pattern.Regex", "(a"}},
        {"word boundary",
         [](json& j) {
             j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "\\bab"}};
         },
         {"word boundary"}},
        {"lstrip",
         [](json& j) { j["added_tokens"][0]["lstrip"] = true; },
         {"added_tokens[0].lstrip"}},
        {"single word",
         [](json& j) { j["added_tokens"][1]["single_word"] = true; },
         {"single_word"}},
        {"added id",
         [](json& j) { j["added_tokens"][0]["id"] = 999; },
         {"added_tokens[0].id", "262", "999"}},
        {"vocab id", [](json& j) { j["model"]["vocab"]["abc"] = "x"; }, {"model.vocab", "integer"}},
        {"vocab gap", [](json& j) { j["model"]["vocab"]["abc"] = 4000; }, {"model.vocab", "4000"}},
        {"vocab twice",
         [](json& j) { j["model"]["vocab"]["abc"] = 0; },
         {"model.vocab", "each id once"}},
        {"missing byte",
         [](json& j) {
             j["model"]["vocab"].erase("a");
             j["model"]["vocab"]["aaaa"] = 97;
             j["model"]["merges"] = json::array();
         },
         {"every byte"}},
        {"merge unknown",
         [](json& j) {
             j["model"]["merges"][0] = "a q";
             j["model"]["vocab"].erase("aaaa");
             j["model"]["vocab"]["qq"] = 261;
         },
         {"model.merges[0]", "\"aq\""}},
        {"merge shape",
         [](json& j) { j["model"]["merges"][1] = "abc"; },
         {"model.merges[1]", "one space"}},
        {"merges type", [](json& j) { j["model"]["merges"] = 3; }, {"model.merges", "an array"}},
        {"vocab type",
         [](json& j) { j["model"]["vocab"] = json::array(); },
         {"model.vocab", "an object"}},
        {"added type", [](json& j) { j["added_tokens"] = "x"; }, {"added_tokens", "an array"}},
        {"added content",
         [](json& j) { j["added_tokens"][0]["content"] = 5; },
         {"added_tokens[0].content"}},
        {"top level", [](json& j) { j = json::array(); }, {"top level", "object"}},
    };
    for (const Case& c : cases) {
        json j = mini_tokenizer();
        c.edit(j);
        const std::string text = j.dump();
        try {
            Tokenizer::from_json(text, "mini.json");
            ADD_FAILURE() << c.name << ": loaded";
        } catch (const Error& e) {
            const std::string what = e.what();
            EXPECT_EQ(what.rfind("[tokenizer] mini.json: ", 0), 0u) << c.name << ": " << what;
            for (const auto& part : c.message)
                EXPECT_NE(what.find(part), std::string::npos)
                    << c.name << ": \"" << what << "\" lacks " << part;
        } catch (const std::exception& e) {
            ADD_FAILURE() << c.name << ": not an olmo::Error: " << e.what();
        }
    }
    for (const char* text : {"", "{", "{\"model\": }", "[1, 2", "\xff"}) {
        EXPECT_TRUE(throws_error([&] { Tokenizer::from_json(text, "bad.json"); },
                                 {"[tokenizer] bad.json", "expected valid JSON"}));
    }
}

// A plain reference: merge the lowest-rank pair, leftmost first, until none is left.
std::vector<int32_t> reference_bpe(
    std::vector<int32_t> sym, const std::map<std::pair<int32_t, int32_t>, bpe::MergeRule>& rules) {
    while (true) {
        size_t at = 0;
        bpe::MergeRule best;
        for (size_t i = 0; i + 1 < sym.size(); ++i) {
            const auto it = rules.find({sym[i], sym[i + 1]});
            if (it != rules.end() && it->second.rank < best.rank) best = it->second, at = i;
        }
        if (best.rank == bpe::kNoRank) return sym;
        sym[at] = best.id;
        sym.erase(sym.begin() + long(at) + 1);
    }
}

TEST(TokenizerBpe, ScanHeapAndReferenceAgree) {
    std::mt19937_64 rng(5);
    for (int round = 0; round < 20; ++round) {
        // Random rules over a small alphabet so that merges chain and compete.
        const int32_t alphabet = 4 + int32_t(rng() % 5);
        std::map<std::pair<int32_t, int32_t>, bpe::MergeRule> rules;
        bpe::MergeTable table;
        int32_t next = alphabet;
        for (uint32_t rank = 0; rank < 60; ++rank) {
            const int32_t a = int32_t(rng() % uint64_t(next)), b = int32_t(rng() % uint64_t(next));
            const bpe::MergeRule r{rank, next++};
            rules[{a, b}] = r;  // a later rule for the same pair replaces the earlier one
            table.insert(a, b, r);
        }
        bpe::Scratch scratch;
        for (int w = 0; w < 200; ++w) {
            std::vector<int32_t> word(1 + rng() % 120);
            for (auto& s : word) s = int32_t(rng() % uint64_t(alphabet));
            const auto expected = reference_bpe(word, rules);
            auto a = word, b = word, c = word;
            bpe::merge_scan(table, a, scratch);
            bpe::merge_heap(table, b, scratch);
            bpe::merge(table, c, scratch);
            ASSERT_EQ(a, expected);
            ASSERT_EQ(b, expected);
            ASSERT_EQ(c, expected);
        }
    }
}

TEST(TokenizerBpe, WordCache) {
    bpe::WordCache cache(100);
    std::vector<std::string> keys;
    for (int i = 0; i < 250; ++i) keys.push_back("key" + std::to_string(i));
    for (size_t i = 0; i < keys.size(); ++i) {
        const int32_t v[2] = {int32_t(i), -int32_t(i)};
        cache.insert(keys[i], bpe::hash_bytes(keys[i]), v, 2);
        EXPECT_LE(cache.size(), 100u);
    }
    // The last entries are there (the cache restarted when full), with their ids.
    for (size_t i = 240; i < 250; ++i) {
        uint32_t n = 0;
        const int32_t* v = cache.find(keys[i], bpe::hash_bytes(keys[i]), n);
        ASSERT_NE(v, nullptr);
        ASSERT_EQ(n, 2u);
        EXPECT_EQ(v[0], int32_t(i));
        EXPECT_EQ(v[1], -int32_t(i));
    }
    uint32_t n = 0;
    EXPECT_EQ(cache.find("absent", bpe::hash_bytes("absent"), n), nullptr);
    cache.clear();
    EXPECT_EQ(cache.find(keys[249], bpe::hash_bytes(keys[249]), n), nullptr);
}

TEST(TokenizerRegex, OnigurumaTranslation) {
    // \s is Unicode White_Space (PCRE2's own \s also takes U+180E); letters include Unicode 16.0.
    tok::RegexState st;
    auto full_match = [&](const std::string& onig, const std::string& text) {
        const tok::Regex re(tok::onig_to_pcre2(onig), false);
        size_t b, e;
        return re.find(text, 0, st, b, e) && b == 0 && e == text.size();
    };
    EXPECT_TRUE(full_match("\\s", "\xc2\x85"));       // U+0085
    EXPECT_FALSE(full_match("\\s", "\xe1\xa0\x8e"));  // U+180E
    EXPECT_TRUE(full_match("\\S", "\xe1\xa0\x8e"));
    EXPECT_TRUE(full_match("[^\\s]", "\xe1\xa0\x8e"));
    EXPECT_TRUE(full_match("\\p{L}+", "a\xf0\xb1\x8d\x90"));   // U+31350
    EXPECT_TRUE(full_match("[^\\p{L}]", "\xf0\x90\xa5\x80"));  // U+10940
    EXPECT_TRUE(full_match("\\P{L}", "\xf0\x90\xa5\x80"));
    EXPECT_FALSE(full_match("\\P{L}", "\xf0\xb1\x8d\x90"));
    EXPECT_TRUE(full_match("\\p{Letter}\\pN", "x7"));
    EXPECT_TRUE(full_match("\\w+", "a_\xcc\x81"));  // Oniguruma's \w takes marks
    EXPECT_TRUE(full_match("\\h+", "0fA"));         // Oniguruma's \h is a hex digit
    EXPECT_TRUE(full_match("\\Q\\s\\E", "\\s"));
    EXPECT_TRUE(full_match("(?i:'s)", "'\xc5\xbf"));  // ſ folds to s
    EXPECT_TRUE(throws_error([] { tok::onig_to_pcre2("\\bx"); }, {"word boundary"}));
    EXPECT_TRUE(throws_error([] { tok::onig_to_pcre2("[a[b]]"); }, {"nested"}));
    EXPECT_TRUE(throws_error([] { tok::onig_to_pcre2("[\\W]"); }, {"inside a character class"}));
    EXPECT_TRUE(throws_error([] { tok::onig_to_pcre2("\\p{Cn}"); }, {"Unicode 16.0"}));
}

}  // namespace
}  // namespace olmo::testing
