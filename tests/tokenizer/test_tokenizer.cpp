// The dolma2 tokenizer against HF tokenizers' goldens, and its properties: round trips, streaming,
// errors, batches, the chat format.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace olmo::testing {
namespace {

// Ids of the one-byte tokens, found through the tokenizer itself.
std::map<unsigned, int32_t> byte_token_ids(const Tokenizer& tok) {
    std::map<unsigned, int32_t> ids;
    for (int32_t id = 0; id < tok.vocab_size() && ids.size() < 256; ++id) {
        const std::string_view b = tok.token_bytes(id);
        if (b.size() == 1 && !ids.count(static_cast<unsigned char>(b[0])))
            ids[static_cast<unsigned char>(b[0])] = id;
    }
    return ids;
}

std::vector<int32_t> bytes_to_ids(const Tokenizer& tok, std::initializer_list<unsigned> bytes) {
    static const std::map<unsigned, int32_t> table = byte_token_ids(tok);
    std::vector<int32_t> ids;
    for (unsigned b : bytes) ids.push_back(table.at(b));
    return ids;
}

std::string stream_decode(const Tokenizer& tok, const std::vector<int32_t>& ids,
                          bool skip_special) {
    StreamDecoder sd(tok, skip_special);
    std::string out;
    for (int32_t id : ids) out += sd.feed(id);
    out += sd.finish();
    EXPECT_EQ(sd.pending_bytes(), 0u);
    return out;
}

TEST(Tokenizer, Goldens) {
    const auto goldens = read_goldens(shared_dir() + "/tokenizer/goldens.jsonl");
    ASSERT_GT(goldens.size(), 50u);
    EXPECT_TRUE(matches_goldens(dolma2(), goldens));
}

// Goldens of hard texts made by scripts/make_tokenizer_goldens.py with HF tokenizers.
TEST(Tokenizer, ExtraGoldens) {
    const std::string path = test_data_dir() + "/tokenizer/extra_goldens.jsonl";
    ASSERT_TRUE(std::filesystem::exists(path))
        << path
        << " is missing: run scripts/make_tokenizer_goldens.py on a machine with HF tokenizers "
        << "(pip install tokenizers) to make it from tests/data/tokenizer/extra_texts.jsonl";
    const auto goldens = read_goldens(path);
    const auto texts = read_texts(test_data_dir() + "/tokenizer/extra_texts.jsonl");
    ASSERT_GE(texts.size(), 100u);
    std::vector<std::string> golden_texts;
    for (const auto& g : goldens) golden_texts.push_back(g.text);
    EXPECT_TRUE(golden_texts == texts)
        << "extra_goldens.jsonl does not hold the texts of extra_texts.jsonl: remake it";
    EXPECT_TRUE(matches_goldens(dolma2(), goldens));
}

TEST(Tokenizer, VocabularyAndSpecialTokens) {
    const Tokenizer& tok = dolma2();
    EXPECT_EQ(tok.vocab_size(), 100278);
    // eos and pad as model-spec §6 gives them.
    EXPECT_EQ(tok.token_to_id("<|endoftext|>"), 100257);
    EXPECT_EQ(tok.token_to_id("<|pad|>"), 100277);
    EXPECT_TRUE(tok.is_special(100257));
    EXPECT_TRUE(tok.is_special(*tok.token_to_id("<|im_start|>")));
    EXPECT_FALSE(tok.is_special(*tok.token_to_id("<|extra_id_0|>")));  // added, not special
    EXPECT_FALSE(tok.is_special(*tok.token_to_id("Ġthe")));
    EXPECT_FALSE(tok.is_special(-1));
    EXPECT_FALSE(tok.is_special(tok.vocab_size()));
    EXPECT_EQ(tok.id_to_token(100257), "<|endoftext|>");
    EXPECT_EQ(tok.token_to_id(tok.id_to_token(1917)), 1917);
    EXPECT_EQ(tok.token_to_id("not a token at all"), std::nullopt);
    EXPECT_TRUE(
        throws_error([&] { tok.id_to_token(tok.vocab_size()); }, {"id_to_token", "100278"}));
    // Every id maps to a token string that maps back to it.
    for (int32_t id = 0; id < tok.vocab_size(); id += 97)
        EXPECT_EQ(tok.token_to_id(tok.id_to_token(id)), id);
}

TEST(Tokenizer, SpecialTokensInText) {
    const Tokenizer& tok = dolma2();
    const int32_t eot = *tok.token_to_id("<|endoftext|>");
    const int32_t im_start = *tok.token_to_id("<|im_start|>");
    const auto a = tok.encode("a"), b = tok.encode("b");
    EXPECT_EQ(tok.encode("a<|endoftext|>b"), (std::vector<int32_t>{a[0], eot, b[0]}));
    EXPECT_EQ(tok.encode("<|im_start|><|im_start|>"), (std::vector<int32_t>{im_start, im_start}));
    // parse_special = false: special tokens are text; non-special added tokens still match.
    const auto plain = tok.encode("a<|endoftext|>b", false);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), eot), 0);
    EXPECT_EQ(tok.decode(plain), "a<|endoftext|>b");
    const int32_t extra = *tok.token_to_id("<|extra_id_0|>");
    EXPECT_EQ(tok.encode("<|extra_id_0|>", false), std::vector<int32_t>{extra});
    // skip_special drops special tokens only.
    const auto ids = tok.encode("x<|endoftext|>y<|extra_id_0|>z");
    EXPECT_EQ(tok.decode(ids), "x<|endoftext|>y<|extra_id_0|>z");
    EXPECT_EQ(tok.decode(ids, true), "xy<|extra_id_0|>z");
}

TEST(Tokenizer, RoundTripRandomText) {
    const Tokenizer& tok = dolma2();
    std::mt19937_64 rng(20260301);
    for (int i = 0; i < 1500; ++i) {
        const std::string text = random_text(rng, 1 + rng() % 40);
        const auto ids = tok.encode(text);
        ASSERT_EQ(tok.decode(ids), text) << "case " << i;
        ASSERT_EQ(stream_decode(tok, ids, false), text) << "case " << i;
        ASSERT_EQ(stream_decode(tok, ids, true), tok.decode(ids, true)) << "case " << i;
        const auto plain = tok.encode(text, false);
        ASSERT_EQ(tok.decode(plain), text) << "case " << i;
        for (int32_t id : plain) ASSERT_FALSE(tok.is_special(id)) << "case " << i;
    }
}

TEST(Tokenizer, CachedAndFreshEncodingsAgree) {
    const Tokenizer& tok = dolma2();
    std::mt19937_64 rng(7);
    std::vector<std::string> texts;
    for (int i = 0; i < 200; ++i) texts.push_back(random_text(rng, 30));
    std::vector<std::vector<int32_t>> first;
    for (const auto& t : texts) first.push_back(tok.encode(t));
    EXPECT_GT(tok.cache_entries(), 0u);
    for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(tok.encode(texts[i]), first[i]);
    tok.clear_cache();
    EXPECT_EQ(tok.cache_entries(), 0u);
    for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(tok.encode(texts[i]), first[i]);
}

TEST(Tokenizer, EncodeBatchMatchesEncode) {
    const Tokenizer& tok = dolma2();
    std::mt19937_64 rng(11);
    std::vector<std::string> texts;
    for (int i = 0; i < 300; ++i) texts.push_back(random_text(rng, 1 + rng() % 60));
    texts.push_back("");
    for (int threads : {1, 2, 3, 0}) {
        const auto batch = tok.encode_batch(texts, threads);
        ASSERT_EQ(batch.size(), texts.size());
        for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(batch[i], tok.encode(texts[i])) << i;
    }
    std::vector<std::string_view> views(texts.begin(), texts.end());
    EXPECT_EQ(tok.encode_batch(views, 2), tok.encode_batch(texts, 1));
    EXPECT_TRUE(tok.encode_batch(std::vector<std::string>{}, 2).empty());
    texts[7] = "ok \xff bad";
    EXPECT_TRUE(throws_error([&] { tok.encode_batch(texts, 2); }, {"text 7", "offset 3"}));
}

TEST(Tokenizer, InvalidUtf8IsAnErrorWithOffset) {
    const Tokenizer& tok = dolma2();
    struct Case {
        std::string text;
        size_t offset;
    };
    const Case cases[] = {
        {"abc\xff", 3},                   // never valid
        {"h\xc3\xa9llo\x80", 6},          // lone continuation after é
        {"\xc0\xaf", 0},                  // overlong '/'
        {"ok\xe0\x80\x80", 2},            // overlong 3-byte
        {"x\xed\xa0\x80", 1},             // surrogate U+D800
        {"\xf4\x90\x80\x80", 0},          // above U+10FFFF
        {"ab\xe2\x82", 2},                // truncated at the end
        {"\xf5\x80\x80\x80", 0},          // F5 never starts a character
        {"\xe2\x82\xac\xe2\x28\xa1", 3},  // € then a broken sequence
    };
    for (const Case& c : cases) {
        EXPECT_TRUE(
            throws_error([&] { tok.encode(c.text); },
                         {"[tokenizer] encode", "UTF-8", "offset " + std::to_string(c.offset)}));
    }
    EXPECT_NO_THROW(tok.encode("\xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf"));
}

TEST(Tokenizer, DecodeRepairsInvalidUtf8LikeHf) {
    // Each maximal invalid subsequence becomes one U+FFFD (Rust's from_utf8_lossy).
    const Tokenizer& tok = dolma2();
    const std::string r = "\xef\xbf\xbd";
    struct Case {
        std::initializer_list<unsigned> bytes;
        std::string text;
    };
    const Case cases[] = {
        {{0xF0, 0x9F, 0x98, 0x80}, "\xf0\x9f\x98\x80"},
        {{0xE2, 0x82}, r},                // incomplete at the end: one
        {{0xE2, 0x82, 0x41}, r + "A"},    // cut short by 'A'
        {{0xED, 0xA0, 0x80}, r + r + r},  // surrogate: ED, then two stray continuations
        {{0x80, 0x80}, r + r},            // stray continuations: one each
        {{0xF0, 0x9F, 0x41, 0xC3}, r + "A" + r},
        {{0xC0, 0xAF}, r + r},  // C0 never starts a character
        {{0xF4, 0x90, 0x80, 0x80}, r + r + r + r},
    };
    for (const Case& c : cases) {
        const auto ids = bytes_to_ids(tok, c.bytes);
        EXPECT_EQ(tok.decode(ids), c.text);
        EXPECT_EQ(stream_decode(tok, ids, false), c.text);
    }
    EXPECT_TRUE(throws_error(
        [&] {
            tok.decode(std::vector<int32_t>{5, -1});
        },
        {"decode", "-1", "position 1"}));
    EXPECT_TRUE(
        throws_error([&] { tok.decode(std::vector<int32_t>{tok.vocab_size()}); }, {"decode"}));
}

TEST(Tokenizer, StreamDecoderHoldsIncompleteCharacters) {
    const Tokenizer& tok = dolma2();
    const auto ids = bytes_to_ids(tok, {0xF0, 0x9F, 0x98, 0x80, 0x41});
    StreamDecoder sd(tok);
    EXPECT_EQ(sd.feed(ids[0]), "");
    EXPECT_EQ(sd.feed(ids[1]), "");
    EXPECT_EQ(sd.feed(ids[2]), "");
    EXPECT_EQ(sd.pending_bytes(), 3u);
    EXPECT_EQ(sd.feed(ids[3]), "\xf0\x9f\x98\x80");
    EXPECT_EQ(sd.feed(ids[4]), "A");
    EXPECT_EQ(sd.feed(ids[0]), "");
    EXPECT_EQ(sd.finish(), "\xef\xbf\xbd");  // flushed incomplete character
    EXPECT_EQ(sd.finish(), "");
    // Random id sequences, valid UTF-8 or not: the stream gives what decode gives.
    std::mt19937_64 rng(3);
    for (int i = 0; i < 500; ++i) {
        std::vector<int32_t> seq;
        for (int k = int(rng() % 30); k > 0; --k) {
            const int which = int(rng() % 3);
            seq.push_back(which == 0   ? int32_t(rng() % uint64_t(tok.vocab_size()))
                          : which == 1 ? int32_t(rng() % 300)
                                       : int32_t(100250 + rng() % 28));
        }
        EXPECT_EQ(stream_decode(tok, seq, false), tok.decode(seq));
        EXPECT_EQ(stream_decode(tok, seq, true), tok.decode(seq, true));
    }
    EXPECT_TRUE(throws_error([&] { sd.feed(-3); }, {"stream decode", "-3"}));
}

TEST(Tokenizer, LongRunsAndLongWords) {
    const Tokenizer& tok = dolma2();
    const std::string runs[] = {
        std::string(1 << 18, ' '),
        std::string(1 << 17, '\n'),
        std::string(200000, 'a'),
        std::string(100000, '7'),
        std::string(50000, '!'),
        std::string(30000, '\t') + "x",
        [] {
            std::string s;
            for (int i = 0; i < 20000; ++i) s += "\xe4\xb8\xad";  // 中
            return s;
        }(),
    };
    for (const std::string& text : runs) {
        const auto ids = tok.encode(text);
        EXPECT_FALSE(ids.empty());
        EXPECT_LT(ids.size(), text.size());
        EXPECT_EQ(tok.decode(ids), text);
    }
    // Digits are pre-split in threes.
    EXPECT_EQ(tok.encode(std::string(9, '7')).size(), 3u);
}

TEST(Tokenizer, Unicode16Categories) {
    // HF's regex engine knows Unicode 16.0: letters added since 14.0 (CJK Ext. H U+31350, Garay
    // U+10D50) are letters, so "'s" after them is the contraction token; an unassigned code point
    // is not.
    const Tokenizer& tok = dolma2();
    const int32_t apos_s = tok.encode("'s").at(0);
    auto ends_with_contraction = [&](const std::string& s) {
        const auto ids = tok.encode(s + "'s");
        return !ids.empty() && ids.back() == apos_s;
    };
    EXPECT_TRUE(ends_with_contraction("A"));
    EXPECT_TRUE(ends_with_contraction("\xf0\xb1\x8d\x90"));  // U+31350
    EXPECT_TRUE(ends_with_contraction("\xf0\x90\xb5\x90"));  // U+10D50
    EXPECT_FALSE(ends_with_contraction("!"));
    EXPECT_FALSE(ends_with_contraction("\xcd\xb8"));  // U+0378, unassigned
    EXPECT_FALSE(
        ends_with_contraction("\xf0\x90\xa5\x80"));  // U+10940, a letter only from Unicode 17
}

TEST(Tokenizer, FormatChat) {
    const std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi\nthere"}};
    EXPECT_EQ(format_chat(msgs, false),
              "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi\nthere<|im_end|>\n");
    EXPECT_EQ(format_chat(msgs, true),
              "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi\nthere<|im_end|>\n"
              "<|im_start|>assistant\n");
    EXPECT_EQ(format_chat({}, true), "<|im_start|>assistant\n");
    const Tokenizer& tok = dolma2();
    const auto ids = tok.encode(format_chat({{"user", "Hi"}}, true));
    const int32_t start = *tok.token_to_id("<|im_start|>"), end = *tok.token_to_id("<|im_end|>");
    ASSERT_GE(ids.size(), 6u);
    EXPECT_EQ(ids.front(), start);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), start), 2);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), end), 1);
    EXPECT_EQ(tok.decode(ids), format_chat({{"user", "Hi"}}, true));
    EXPECT_TRUE(throws_error(
        [] {
            format_chat({{"", "x"}}, false);
        },
        {"format_chat", "message 0"}));
    EXPECT_TRUE(throws_error(
        [] {
            format_chat({{"user", "a"}, {"us\ner", "b"}}, false);
        },
        {"format_chat", "message 1"}));
    EXPECT_TRUE(throws_error([] { format_chat({{"<|im_end|>", "x"}}, true); }, {"format_chat"}));
}

}  // namespace
}  // namespace olmo::testing
