#include "tokenizer_test_util.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "testing.h"

namespace olmo::testing {

std::string dolma2_path() {
    return shared_dir() + "/tokenizer/dolma2-tokenizer.json";
}

const Tokenizer& dolma2() {
    static const Tokenizer tok = Tokenizer::from_file(dolma2_path());
    return tok;
}

std::vector<Golden> read_goldens(const std::string& path) {
    std::ifstream f(path);
    if (!f) fail("[test] cannot open ", path);
    std::vector<Golden> out;
    std::string line;
    for (size_t n = 1; std::getline(f, line); ++n) {
        if (line.empty()) continue;
        try {
            const auto j = nlohmann::json::parse(line);
            out.push_back({n, j.at("text").get<std::string>(),
                           j.at("ids").get<std::vector<int32_t>>(),
                           j.at("decoded").get<std::string>()});
        } catch (const nlohmann::json::exception& e) {
            fail("[test] ", path, " line ", n, ": ", e.what());
        }
    }
    return out;
}

std::vector<std::string> read_texts(const std::string& path) {
    std::ifstream f(path);
    if (!f) fail("[test] cannot open ", path);
    std::vector<std::string> out;
    std::string line;
    for (size_t n = 1; std::getline(f, line); ++n) {
        if (line.empty()) continue;
        try {
            out.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
        } catch (const nlohmann::json::exception& e) {
            fail("[test] ", path, " line ", n, ": ", e.what());
        }
    }
    return out;
}

namespace {
std::string ids_str(const std::vector<int32_t>& ids) {
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
    return s + "]";
}
}  // namespace

::testing::AssertionResult matches_goldens(const Tokenizer& tok,
                                           const std::vector<Golden>& goldens) {
    size_t bad = 0;
    std::string report;
    for (const Golden& g : goldens) {
        std::string why;
        try {
            const std::vector<int32_t> ids = tok.encode(g.text);
            if (ids != g.ids) why = "encode gives " + ids_str(ids) + ", expected " + ids_str(g.ids);
            const std::string text = tok.decode(g.ids);
            if (text != g.decoded)
                why += (why.empty() ? "" : "; ") + std::string("decode gives ") +
                       nlohmann::json(text).dump() + ", expected " +
                       nlohmann::json(g.decoded).dump();
        } catch (const Error& e) {
            why = std::string("error: ") + e.what();
        }
        if (!why.empty() && ++bad <= 5)
            report += "\n  line " + std::to_string(g.line) + " " + nlohmann::json(g.text).dump() +
                      ": " + why;
    }
    if (bad == 0) return ::testing::AssertionSuccess() << goldens.size() << " goldens match";
    return ::testing::AssertionFailure()
           << bad << " of " << goldens.size() << " goldens differ:" << report;
}

std::string random_text(std::mt19937_64& rng, size_t pieces) {
    static const char* const kWords[] = {"the",
                                         "The",
                                         "THE",
                                         "don't",
                                         "DON'T",
                                         "it's",
                                         "IT'S",
                                         "we've",
                                         "I'm",
                                         "you'll",
                                         "she'd",
                                         "they're",
                                         "'s",
                                         "'S",
                                         "'ll",
                                         "'ſ",
                                         "hello",
                                         "naïve",
                                         "Straße",
                                         "日本語",
                                         "中文",
                                         "한국어",
                                         "Русский",
                                         "العربية",
                                         "עברית",
                                         "हिन्दी",
                                         "ไทย",
                                         "Ελληνικά",
                                         "ǅ",
                                         "ﬁ",
                                         "Ⅻ",
                                         "²",
                                         "½",
                                         "٣٤٥",
                                         "１２３",
                                         "🙂",
                                         "👍🏽",
                                         "👨‍👩‍👧",
                                         "🏳️‍🌈",
                                         "e\u0301",
                                         "a\u0308\u0308",
                                         "\u0301",
                                         "x=1+2",
                                         "foo_bar",
                                         "3.14",
                                         "$$$",
                                         "...",
                                         "—",
                                         "«»",
                                         "¿",
                                         "(",
                                         ")",
                                         "{",
                                         "}",
                                         "<",
                                         ">",
                                         "/",
                                         "\\",
                                         "#",
                                         "@",
                                         "&",
                                         "*",
                                         "|",
                                         "'",
                                         "\"",
                                         ";",
                                         ":",
                                         ",",
                                         ".",
                                         "!",
                                         "?",
                                         "\x01",
                                         "\x1b",
                                         "\x7f",
                                         "\u0085",
                                         "\u180e",
                                         "\u2028",
                                         "\u3000",
                                         "\u00a0",
                                         "\u200b",
                                         "\ufeff",
                                         "\U0010ffff",
                                         "\U00031350",
                                         "\U00010D50"};
    static const char* const kSpecial[] = {"<|endoftext|>",
                                           "<|im_start|>",
                                           "<|im_end|>",
                                           "<|pad|>",
                                           "<|extra_id_0|>",
                                           "|||PHONE_NUMBER|||",
                                           "<|",
                                           "|>",
                                           "<|endoftext",
                                           "<|im_start|><|im_start|>"};
    static const char* const kSpace[] = {" ",  "  ",   "\t",   "\n",    "\r\n",
                                         "\r", "\n\n", "    ", "\u00a0"};
    std::string s;
    auto pick = [&](size_t n) { return size_t(rng() % n); };
    for (size_t p = 0; p < pieces; ++p) {
        switch (pick(8)) {
            case 0:
            case 1:
                s += kWords[pick(std::size(kWords))];
                break;
            case 2: {
                const char* w = kSpace[pick(std::size(kSpace))];
                for (size_t k = 1 + pick(pick(4) == 0 ? 40 : 3); k > 0; --k) s += w;
                break;
            }
            case 3:
                s += kSpecial[pick(std::size(kSpecial))];
                break;
            case 4:
                for (size_t k = 1 + pick(12); k > 0; --k) s += char('0' + pick(10));
                break;
            case 5:
                for (size_t k = 1 + pick(8); k > 0; --k) s += char('a' + pick(26));
                break;
            default: {
                // Any code point of a random plane, no surrogates.
                for (size_t k = 1 + pick(4); k > 0; --k) {
                    const uint32_t limits[] = {0x80, 0x800, 0x10000, 0x110000};
                    uint32_t cp = uint32_t(rng() % limits[pick(4)]);
                    if (cp >= 0xD800 && cp < 0xE000) cp -= 0x800;
                    std::string c;
                    if (cp < 0x80) {
                        c += char(cp);
                    } else if (cp < 0x800) {
                        c += char(0xC0 | (cp >> 6));
                        c += char(0x80 | (cp & 0x3F));
                    } else if (cp < 0x10000) {
                        c += char(0xE0 | (cp >> 12));
                        c += char(0x80 | ((cp >> 6) & 0x3F));
                        c += char(0x80 | (cp & 0x3F));
                    } else {
                        c += char(0xF0 | (cp >> 18));
                        c += char(0x80 | ((cp >> 12) & 0x3F));
                        c += char(0x80 | ((cp >> 6) & 0x3F));
                        c += char(0x80 | (cp & 0x3F));
                    }
                    s += c;
                }
            }
        }
    }
    return s;
}

}  // namespace olmo::testing
