// libFuzzer target: arbitrary bytes through the dolma2 tokenizer. Valid UTF-8 must encode to ids
// that decode back to the same bytes (with and without special-token matching, in one piece and
// streamed); invalid UTF-8 must be an olmo::Error; the bytes read as ids must decode (at once and
// streamed) to the same valid UTF-8. Nothing may crash.
//
// The tokenizer is the file named by OLMO_FUZZ_TOKENIZER, by default the dolma2 tokenizer of the
// reference folder.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/check.h"
#include "tokenizer/tokenizer.h"

namespace {

const olmo::Tokenizer& tokenizer() {
    static const olmo::Tokenizer tok = [] {
        const char* env = std::getenv("OLMO_FUZZ_TOKENIZER");
        const std::string path =
            env ? env : std::string(OLMO_SOURCE_DIR) + "/../shared/tokenizer/dolma2-tokenizer.json";
        return olmo::Tokenizer::from_file(path);
    }();
    return tok;
}

// UTF-8 validity written from the definition (RFC 3629), independently of the library.
bool valid_utf8(const std::string& s) {
    size_t i = 0;
    while (i < s.size()) {
        const unsigned c = static_cast<unsigned char>(s[i]);
        uint32_t cp;
        size_t n;
        if (c < 0x80)
            cp = c, n = 0;
        else if ((c & 0xE0) == 0xC0)
            cp = c & 0x1F, n = 1;
        else if ((c & 0xF0) == 0xE0)
            cp = c & 0x0F, n = 2;
        else if ((c & 0xF8) == 0xF0)
            cp = c & 0x07, n = 3;
        else
            return false;
        if (i + n >= s.size()) return false;  // truncated
        for (size_t k = 1; k <= n; ++k) {
            const unsigned d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3F);
        }
        const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += n + 1;
    }
    return true;
}

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "fuzz_tokenizer_encode: %s\n", what);
    std::abort();
}

std::string streamed(const olmo::Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
    olmo::StreamDecoder sd(tok, skip);
    std::string out;
    for (int32_t id : ids) out += sd.feed(id);
    return out + sd.finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const olmo::Tokenizer& tok = tokenizer();
    const std::string text(reinterpret_cast<const char*>(data), size);
    const bool valid = valid_utf8(text);
    for (const bool parse_special : {true, false}) {
        try {
            const std::vector<int32_t> ids = tok.encode(text, parse_special);
            if (!valid) die("invalid UTF-8 was encoded");
            if (tok.decode(ids) != text) die("decode(encode(text)) != text");
            if (streamed(tok, ids, false) != text) die("streamed decode != text");
            for (int32_t id : ids)
                if (!parse_special && tok.is_special(id))
                    die("special id with parse_special = false");
        } catch (const olmo::Error& e) {
            if (valid) die(e.what());
            if (!std::strstr(e.what(), "offset")) die("UTF-8 error without an offset");
        }
    }
    // The bytes as ids (two bytes each, within the vocabulary).
    std::vector<int32_t> ids;
    for (size_t i = 0; i + 1 < size; i += 2)
        ids.push_back(
            int32_t((uint32_t(data[i]) << 8 | data[i + 1]) * 7u % uint32_t(tok.vocab_size())));
    for (const bool skip : {false, true}) {
        const std::string text2 = tok.decode(ids, skip);
        if (!valid_utf8(text2)) die("decode gave invalid UTF-8");
        if (streamed(tok, ids, skip) != text2) die("streamed decode != decode");
    }
    return 0;
}
