#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "core/check.h"
#include "tokenizer/unicode_delta.h"

namespace olmo::tok {

namespace {

[[noreturn]] void unsupported_regex(std::string_view pattern, size_t at, std::string_view what) {
    fail("[tokenizer] regex: expected a pattern PCRE2 can match like Oniguruma, got ", what,
         " at offset ", at, " of \"", pattern, "\" (not supported)");
}

std::string pcre2_message(int code) {
    PCRE2_UCHAR buf[256];
    const int n = pcre2_get_error_message(code, buf, sizeof buf);
    return n < 0 ? cat("PCRE2 error ", code) : std::string(reinterpret_cast<const char*>(buf));
}

}  // namespace

namespace {

// "Uppercase_Letter", "uppercase letter", "Lu" -> "uppercaseletter", "lu".
std::string property_key(std::string_view name) {
    std::string k;
    for (const char c : name)
        if (c != '_' && c != ' ' && c != '-') k += char(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    return k;
}

const CategoryDelta* find_category(std::string_view name) {
    const std::string key = property_key(name);
    for (size_t i = 0; i < kCategoryDeltaCount; ++i)
        if (key == property_key(kCategoryDeltas[i].short_name) ||
            key == property_key(kCategoryDeltas[i].long_name))
            return &kCategoryDeltas[i];
    return nullptr;
}

// PCRE2 class members for a category as Oniguruma (Unicode 16.0) has it: \p{Lu}\x{...}-\x{...}...
// (only \p{Lu} without the delta).
std::string category_members(const CategoryDelta& c, bool with_delta) {
    std::string s = cat("\\p{", c.short_name, "}");
    if (!with_delta) return s;
    char buf[40];
    for (size_t i = 0; i < c.count; ++i) {
        const uint32_t a = c.ranges[2 * i], b = c.ranges[2 * i + 1];
        if (a == b)
            std::snprintf(buf, sizeof buf, "\\x{%X}", a);
        else
            std::snprintf(buf, sizeof buf, "\\x{%X}-\\x{%X}", a, b);
        s += buf;
    }
    return s;
}

}  // namespace

std::string onig_to_pcre2(std::string_view p, bool with_delta, uint32_t* first_delta) {
    if (first_delta) *first_delta = UINT32_MAX;
    std::string out;
    out.reserve(p.size() + 256);
    bool in_class = false;
    size_t body = 0;  // where the current class's members start (a ']' there is a member)

    // Members of a union of categories, placed as a class (or inside the current one).
    auto put_categories = [&](std::initializer_list<const char*> names, bool negated, size_t at,
                              std::string_view what) {
        std::string members;
        bool has_delta = false;
        for (const char* n : names) {
            const CategoryDelta* c = find_category(n);
            OLMO_CHECK(c != nullptr, "no category ", n);
            if (!c->complete)
                unsupported_regex(
                    p, at,
                    cat(what, " (Unicode 16.0 took code points out of \\p{", c->short_name, "})"));
            has_delta |= c->count > 0;
            if (c->count > 0 && first_delta) *first_delta = std::min(*first_delta, c->ranges[0]);
            members += category_members(*c, with_delta);
        }
        if (!in_class) {
            out += negated ? "[^" : "[";
            out += members;
            out += ']';
        } else if (!negated) {
            out += members;
        } else if ((!has_delta || !with_delta) && names.size() == 1) {
            out += cat("\\P{", *names.begin(), "}");
        } else {
            unsupported_regex(p, at, cat(what, " inside a character class"));
        }
    };

    for (size_t i = 0; i < p.size(); ++i) {
        const char c = p[i];
        if (c == '\\' && i + 1 < p.size()) {
            const size_t at = i;
            const char d = p[++i];
            switch (d) {
                case 's':
                    out += "\\p{White_Space}";
                    break;
                case 'S':
                    out += "\\P{White_Space}";
                    break;
                case 'd':
                    put_categories({"Nd"}, false, at, "\\d");
                    break;
                case 'D':
                    put_categories({"Nd"}, true, at, "\\D");
                    break;
                case 'w':
                    put_categories({"L", "M", "N", "Pc"}, false, at, "\\w");
                    break;
                case 'W':
                    put_categories({"L", "M", "N", "Pc"}, true, at, "\\W");
                    break;
                case 'h':
                    out += in_class ? "0-9a-fA-F" : "[0-9a-fA-F]";
                    break;
                case 'H':
                    if (in_class) unsupported_regex(p, at, "\\H inside a character class");
                    out += "[^0-9a-fA-F]";
                    break;
                case 'b':
                case 'B':
                    if (!in_class) unsupported_regex(p, at, cat("the word boundary \\", d));
                    out += '\\';
                    out += d;
                    break;
                case 'p':
                case 'P': {
                    // \pL, \p{L}, \p{^L}, \P{L}: general categories get their Unicode 16.0 members;
                    // other properties (scripts, ...) are left to PCRE2.
                    std::string_view name;
                    size_t stop;
                    if (i + 1 < p.size() && p[i + 1] == '{') {
                        const size_t close = p.find('}', i + 2);
                        if (close == std::string_view::npos)
                            unsupported_regex(p, at, "an unterminated \\p{");
                        name = p.substr(i + 2, close - i - 2);
                        stop = close;
                    } else if (i + 1 < p.size()) {
                        name = p.substr(i + 1, 1);
                        stop = i + 1;
                    } else {
                        unsupported_regex(p, at, "a \\p without a name");
                    }
                    bool negated = d == 'P';
                    if (!name.empty() && name[0] == '^') {
                        negated = !negated;
                        name.remove_prefix(1);
                    }
                    if (const CategoryDelta* cd = find_category(name)) {
                        put_categories({cd->short_name}, negated, at, cat("\\", d, "{", name, "}"));
                    } else {
                        out.append(p.substr(at, stop + 1 - at));
                    }
                    i = stop;
                    break;
                }
                case 'Q': {  // quoted text up to \E, copied as is
                    const size_t end = p.find("\\E", i + 1);
                    const size_t stop = end == std::string_view::npos ? p.size() : end + 2;
                    out += '\\';
                    out.append(p.substr(i, stop - i));
                    i = stop - 1;
                    break;
                }
                default:
                    out += '\\';
                    out += d;
            }
            continue;
        }
        if (in_class) {
            if (c == ']' && i > body) {
                in_class = false;
            } else if (c == '[') {
                if (i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:alpha:]
                    const size_t end = p.find(":]", i + 2);
                    if (end == std::string_view::npos)
                        unsupported_regex(p, i, "an unterminated [:");
                    out.append(p.substr(i, end + 2 - i));
                    i = end + 1;
                    continue;
                }
                unsupported_regex(p, i, "a nested character class");
            } else if (c == '&' && i + 1 < p.size() && p[i + 1] == '&') {
                unsupported_regex(p, i, "a class intersection &&");
            }
            out += c;
            continue;
        }
        if (c == '[') {
            in_class = true;
            body = i + 1;
            if (body < p.size() && p[body] == '^') ++body;
        }
        out += c;
    }
    return out;
}

RegexState::RegexState() {
    md_ = pcre2_match_data_create(1, nullptr);
    ctx_ = pcre2_match_context_create(nullptr);
    stack_ = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr);
    OLMO_CHECK(md_ && ctx_ && stack_, "out of memory for PCRE2 match state");
    pcre2_jit_stack_assign(ctx_, nullptr, stack_);
    // Long runs (a megabyte of spaces is one match) must not hit PCRE2's default limits.
    pcre2_set_match_limit(ctx_, UINT32_MAX);
    pcre2_set_depth_limit(ctx_, UINT32_MAX);
}

RegexState::~RegexState() {
    pcre2_jit_stack_free(stack_);
    pcre2_match_context_free(ctx_);
    pcre2_match_data_free(md_);
}

Regex::Regex(std::string_view pattern, bool literal) : pattern_(pattern) {
    int err = 0;
    PCRE2_SIZE offset = 0;
    // PCRE2_LITERAL allows no UCP (which a literal does not need).
    const uint32_t options = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                          &err, &offset, nullptr);
    if (!code_)
        fail("[tokenizer] regex: expected a pattern PCRE2 accepts, got \"", pattern,
             "\": ", pcre2_message(err), " at offset ", offset);
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() {
    pcre2_code_free(code_);
}

bool Regex::find(std::string_view subject, size_t start, RegexState& state, size_t& begin,
                 size_t& end) const {
    const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
    int rc = PCRE2_ERROR_JIT_STACKLIMIT;
    if (jit_)
        rc = pcre2_jit_match(code_, s, subject.size(), start, 0, state.match_data(),
                             state.context());
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // no JIT, or its stack is too small: the interpreter
        rc = pcre2_match(code_, s, subject.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                         state.match_data(), state.context());
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0)
        fail("[tokenizer] regex: expected a match or none, got ", pcre2_message(rc), " at byte ",
             start, " of a ", subject.size(), "-byte piece");
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(state.match_data());
    begin = ov[0];
    end = ov[1];
    if (end < begin || end > subject.size())
        fail("[tokenizer] regex: expected a forward match, got [", begin, ", ", end,
             ") (\\K is not supported)");
    return true;
}

AddedMatcher::AddedMatcher() {
    nodes_.emplace_back();
}

int32_t AddedMatcher::child(int32_t node, unsigned char c) const {
    for (const auto& [k, v] : nodes_[size_t(node)].children)
        if (k == c) return v;
    return -1;
}

void AddedMatcher::add(std::string_view content, int32_t id, bool special) {
    if (content.empty()) return;
    int32_t node = 0;
    for (const char ch : content) {
        const auto c = static_cast<unsigned char>(ch);
        int32_t next = child(node, c);
        if (next < 0) {
            next = int32_t(nodes_.size());
            nodes_[size_t(node)].children.emplace_back(c, next);
            nodes_.emplace_back();
        }
        node = next;
    }
    if (nodes_[size_t(node)].id < 0) ++count_;
    nodes_[size_t(node)].id = id;
    nodes_[size_t(node)].special = special;
    first_[static_cast<unsigned char>(content[0])] = true;
}

bool AddedMatcher::find(std::string_view text, size_t from, Match& m) const {
    if (count_ == 0) return false;
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    for (size_t i = from; i < n; ++i) {
        if (!first_[p[i]]) continue;
        int32_t node = 0;
        size_t best = 0;
        for (size_t j = i; j < n; ++j) {
            node = child(node, p[j]);
            if (node < 0) break;
            if (nodes_[size_t(node)].id >= 0) best = j + 1;
        }
        if (best) {
            // Walk again to the longest terminal to read its id.
            int32_t t = 0;
            for (size_t j = i; j < best; ++j) t = child(t, p[j]);
            m = {i, best, nodes_[size_t(t)].id, nodes_[size_t(t)].special};
            return true;
        }
    }
    return false;
}

}  // namespace olmo::tok
