#include "tokenizer/utf8.h"

#include <cstring>

namespace olmo::utf8 {

namespace {

enum class Seq { valid, invalid, incomplete };

// Classifies the sequence that starts with the non-ASCII byte p[0] (n >= 1 bytes available). `len`
// receives the length of the character when valid, of the maximal invalid subpart when invalid, and
// the number of bytes present when incomplete (all of them could still start a valid character).
inline Seq classify(const unsigned char* p, size_t n, size_t& len) {
    const unsigned b0 = p[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        if (b0 == 0xE0)
            lo = 0xA0;  // no overlong 3-byte forms
        else if (b0 == 0xED)
            hi = 0x9F;  // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        if (b0 == 0xF0)
            lo = 0x90;  // no overlong 4-byte forms
        else if (b0 == 0xF4)
            hi = 0x8F;  // nothing above U+10FFFF
    } else {
        len = 1;  // continuation byte, C0/C1 or F5..FF
        return Seq::invalid;
    }
    for (size_t k = 1; k <= need; ++k) {
        if (k >= n) {
            len = k;
            return Seq::incomplete;
        }
        const unsigned b = p[k];
        if (b < lo || b > hi) {
            len = k;
            return Seq::invalid;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    len = need + 1;
    return Seq::valid;
}

// Index of the first non-ASCII byte at or after i.
inline size_t skip_ascii(const unsigned char* p, size_t n, size_t i) {
    while (i + 8 <= n) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
    }
    while (i < n && p[i] < 0x80) ++i;
    return i;
}

}  // namespace

size_t valid_prefix(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    size_t i = 0;
    while (true) {
        i = skip_ascii(p, n, i);
        if (i >= n) return n;
        size_t len;
        if (classify(p + i, n - i, len) != Seq::valid) return i;
        i += len;
    }
}

size_t append_lossy(std::string& out, std::string_view bytes, bool final) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const size_t n = bytes.size();
    size_t run = 0, i = 0;  // [run, i) is valid text not yet appended
    while (true) {
        i = skip_ascii(p, n, i);
        if (i >= n) break;
        size_t len;
        const Seq s = classify(p + i, n - i, len);
        if (s == Seq::valid) {
            i += len;
            continue;
        }
        out.append(bytes.data() + run, i - run);
        if (s == Seq::incomplete && !final) return i;
        out.append("\xEF\xBF\xBD");  // U+FFFD
        i += len;
        run = i;
    }
    out.append(bytes.data() + run, n - run);
    return n;
}

void append_code_point(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(char(cp));
    } else if (cp < 0x800) {
        out.push_back(char(0xC0 | (cp >> 6)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(char(0xE0 | (cp >> 12)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(char(0xF0 | (cp >> 18)));
        out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    }
}

uint32_t next_code_point(std::string_view s, size_t& i) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const uint32_t b0 = p[i];
    if (b0 < 0x80) {
        i += 1;
        return b0;
    }
    if (b0 < 0xE0) {
        const uint32_t cp = ((b0 & 0x1F) << 6) | (p[i + 1] & 0x3F);
        i += 2;
        return cp;
    }
    if (b0 < 0xF0) {
        const uint32_t cp = ((b0 & 0x0F) << 12) | ((p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
        i += 3;
        return cp;
    }
    const uint32_t cp = ((b0 & 0x07) << 18) | ((p[i + 1] & 0x3F) << 12) | ((p[i + 2] & 0x3F) << 6) |
                        (p[i + 3] & 0x3F);
    i += 4;
    return cp;
}

}  // namespace olmo::utf8
