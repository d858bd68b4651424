// `olmo-hybrid tokenize` and `olmo-hybrid detokenize`: text <-> token ids with a tokenizer.json.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "apps/commands.h"
#include "core/check.h"
#include "core/progress.h"
#include "io/atomic_file.h"
#include "tokenizer/tokenizer.h"

namespace olmo::cli {

namespace {

using json = nlohmann::json;

constexpr size_t kChunkBytes = size_t(4) << 20;     // JSON lines handled together
constexpr double kProgressBytes = double(8 << 20);  // inputs at least this large show progress

struct TokenizeArgs {
    std::string tokenizer, text, file, jsonl, output;
    bool text_given = false, json_out = false, no_special = false, skip_special = false;
    std::string ids;
    int threads = 0;
};

std::string read_file(const std::string& path, const char* what) {
    std::ifstream f;
    std::istream* in = &std::cin;
    if (path != "-") {
        f.open(path, std::ios::binary);
        if (!f) fail("[", what, "] cannot open ", path, ": ", std::strerror(errno));
        in = &f;
    }
    std::ostringstream s;
    s << in->rdbuf();
    if (in->bad()) fail("[", what, "] cannot read ", path);
    return s.str();
}

// Where the output goes: stdout, or a file written under a temporary name and renamed when
// complete.
class Output {
  public:
    explicit Output(const std::string& path) {
        if (!path.empty() && path != "-") file_ = std::make_unique<AtomicFile>(path);
    }
    void write(std::string_view s) {
        if (file_) {
            file_->write(s.data(), s.size());
        } else if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) {
            fail("[tokenize] cannot write to standard output: ", std::strerror(errno));
        }
    }
    void commit() {
        if (file_)
            file_->commit();
        else
            std::fflush(stdout);
    }

  private:
    std::unique_ptr<AtomicFile> file_;
};

void append_ids_json(std::string& out, const std::vector<int32_t>& ids) {
    out += "{\"ids\":[";
    char buf[16];
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i) out += ',';
        const auto r = std::to_chars(buf, buf + sizeof buf, ids[i]);
        out.append(buf, r.ptr);
    }
    out += "]}";
}

// Runs fn(i) for i in [0, n) on up to `threads` threads (0 = all cores); the error of the lowest i
// wins.
template <class F>
void parallel_for(size_t n, int threads, F&& fn) {
    size_t workers =
        threads > 0 ? size_t(threads) : std::max(1u, std::thread::hardware_concurrency());
    workers = std::min(workers, n);
    std::atomic<size_t> next{0};
    std::atomic<bool> stop{false};
    std::mutex m;
    std::exception_ptr error;
    size_t error_at = 0;
    auto work = [&] {
        while (!stop) {
            const size_t i = next++;
            if (i >= n) return;
            try {
                fn(i);
            } catch (...) {
                std::lock_guard<std::mutex> lock(m);
                if (!error || i < error_at) error = std::current_exception(), error_at = i;
                stop = true;
            }
        }
    };
    std::vector<std::thread> pool;
    for (size_t t = 1; t < workers; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
}

// Reads a JSON-lines file in chunks of whole lines and hands each chunk to `handle` with the number
// of its first line; shows progress for large inputs.
template <class F>
void for_each_chunk(const std::string& path, const char* label, F&& handle) {
    std::ifstream f;
    std::istream* in = &std::cin;
    double total = 0;
    if (path != "-") {
        f.open(path, std::ios::binary);
        if (!f) fail("[", label, "] cannot open ", path, ": ", std::strerror(errno));
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0) total = double(st.st_size);
        in = &f;
    }
    Progress progress(label, total, "B", total >= kProgressBytes);
    std::vector<std::string> lines;  // reused from chunk to chunk, with their capacity
    size_t n = 0, first_line = 1, bytes = 0;
    double done = 0;
    auto flush = [&] {
        if (n == 0) return;
        handle(std::span<const std::string>(lines.data(), n), first_line);
        first_line += n;
        done += double(bytes);
        progress.set(done);
        n = 0;
        bytes = 0;
    };
    while (true) {
        if (n == lines.size()) lines.emplace_back();
        if (!std::getline(*in, lines[n])) break;
        bytes += lines[n].size() + 1;
        ++n;
        if (bytes >= kChunkBytes) flush();
    }
    if (in->bad()) fail("[", label, "] cannot read ", path);
    // A file ending in a newline has no extra empty line.
    flush();
    progress.finish();
}

// Runs make(line, i, out) for every line of a chunk in parallel and writes the outputs in order.
template <class F>
void map_lines(std::span<const std::string> lines, int threads, Output& out,
               std::vector<std::string>& results, F&& make) {
    if (results.size() < lines.size()) results.resize(lines.size());
    parallel_for(lines.size(), threads, [&](size_t i) {
        results[i].clear();
        make(lines[i], i, results[i]);
    });
    size_t total = 0;
    for (size_t i = 0; i < lines.size(); ++i) total += results[i].size();
    std::string all;
    all.reserve(total);
    for (size_t i = 0; i < lines.size(); ++i) all += results[i];
    out.write(all);
}

[[noreturn]] void bad_line(const char* cmd, const std::string& path, size_t line,
                           std::string what) {
    // "... got [json.exception.parse_error.101] parse error at ..." -> "... got parse error at ..."
    if (const size_t b = what.find("[json.exception."); b != std::string::npos)
        if (const size_t e = what.find("] ", b); e != std::string::npos) what.erase(b, e + 2 - b);
    fail("[", cmd, "] ", path, " line ", line, ": ", what);
}

void run_tokenize(const TokenizeArgs& a) {
    const Tokenizer tok = Tokenizer::from_file(a.tokenizer);
    const bool parse_special = !a.no_special;
    Output out(a.output);
    if (!a.jsonl.empty()) {
        std::vector<std::string> results;
        for_each_chunk(a.jsonl, "tokenize", [&](std::span<const std::string> lines, size_t first) {
            map_lines(lines, a.threads, out, results,
                      [&](const std::string& line, size_t i, std::string& result) {
                          json j;
                          try {
                              j = json::parse(line);
                          } catch (const json::exception& e) {
                              bad_line("tokenize", a.jsonl, first + i,
                                       std::string("expected a JSON object, got ") + e.what());
                          }
                          const auto it = j.is_object() ? j.find("text") : j.end();
                          if (!j.is_object() || it == j.end() || !it->is_string())
                              bad_line("tokenize", a.jsonl, first + i,
                                       "expected an object with a \"text\" string");
                          append_ids_json(
                              result, tok.encode(it->get_ref<const std::string&>(), parse_special));
                          result += '\n';
                      });
        });
        out.commit();
        return;
    }
    const std::string text = a.text_given ? a.text : read_file(a.file, "tokenize");
    const std::vector<int32_t> ids = tok.encode(text, parse_special);
    std::string s;
    if (a.json_out) {
        append_ids_json(s, ids);
    } else {
        for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
    }
    s += '\n';
    out.write(s);
    out.commit();
}

// Ids separated by commas and/or whitespace, optionally in [brackets].
std::vector<int32_t> parse_ids(std::string_view s, const std::string& where) {
    std::vector<int32_t> ids;
    size_t i = 0;
    auto sep = [](char c) { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    while (i < s.size() && sep(s[i])) ++i;
    const bool bracket = i < s.size() && s[i] == '[';
    if (bracket) ++i;
    while (true) {
        while (i < s.size() && sep(s[i])) ++i;
        if (i >= s.size() || (bracket && s[i] == ']')) break;
        int32_t v = 0;
        const auto r = std::from_chars(s.data() + i, s.data() + s.size(), v);
        if (r.ec != std::errc() || v < 0 ||
            (r.ptr < s.data() + s.size() && !sep(*r.ptr) && *r.ptr != ']')) {
            size_t end = i;
            while (end < s.size() && !sep(s[end]) && s[end] != ']') ++end;
            fail("[detokenize] ", where,
                 ": expected token ids (non-negative integers) separated by commas or "
                 "spaces, got \"",
                 s.substr(i, std::min<size_t>(end - i, 40)), "\" at character ", i);
        }
        ids.push_back(v);
        i = size_t(r.ptr - s.data());
    }
    if (bracket) {
        if (i >= s.size()) fail("[detokenize] ", where, ": expected a closing ], got the end");
        ++i;
        while (i < s.size() && sep(s[i])) ++i;
        if (i < s.size())
            fail("[detokenize] ", where, ": expected nothing after ], got \"", s.substr(i, 20),
                 "\"");
    }
    return ids;
}

void run_detokenize(const TokenizeArgs& a) {
    const Tokenizer tok = Tokenizer::from_file(a.tokenizer);
    Output out(a.output);
    if (!a.jsonl.empty()) {
        std::vector<std::string> results;
        for_each_chunk(
            a.jsonl, "detokenize", [&](std::span<const std::string> lines, size_t first) {
                map_lines(
                    lines, a.threads, out, results,
                    [&](const std::string& line, size_t i, std::string& result) {
                        std::vector<int32_t> ids;
                        try {
                            const json j = json::parse(line);
                            const auto it = j.is_object() ? j.find("ids") : j.end();
                            if (it == j.end() || !it->is_array())
                                bad_line("detokenize", a.jsonl, first + i,
                                         "expected an object with an \"ids\" array");
                            ids.reserve(it->size());
                            for (const json& v : *it) {
                                if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
                                    v.get<int64_t>() > INT32_MAX)
                                    bad_line("detokenize", a.jsonl, first + i,
                                             "expected token ids (non-negative integers), got " +
                                                 v.dump());
                                ids.push_back(v.get<int32_t>());
                            }
                        } catch (const json::exception& e) {
                            bad_line("detokenize", a.jsonl, first + i,
                                     std::string("expected {\"ids\": [...]}, got ") + e.what());
                        }
                        try {
                            result =
                                "{\"text\":" + json(tok.decode(ids, a.skip_special)).dump() + "}\n";
                        } catch (const Error& e) {
                            bad_line("detokenize", a.jsonl, first + i, e.what());
                        }
                    });
            });
        out.commit();
        return;
    }
    const std::vector<int32_t> ids = a.ids.empty() && a.file.empty() ? std::vector<int32_t>{}
                                     : !a.file.empty()
                                         ? parse_ids(read_file(a.file, "detokenize"), a.file)
                                         : parse_ids(a.ids, "--ids");
    const std::string text = tok.decode(ids, a.skip_special);
    out.write(a.json_out ? "{\"text\":" + json(text).dump() + "}\n" : text);
    out.commit();
}

}  // namespace

void register_tokenize(CLI::App& app) {
    auto a = std::make_shared<TokenizeArgs>();
    {
        auto* cmd =
            app.add_subcommand("tokenize", "Turn text into token ids with a tokenizer.json");
        cmd->footer(
            "Special tokens written in the text (<|endoftext|>, <|im_start|>, ...) become their\n"
            "ids, as HF tokenizers does by default; --no-special encodes them as plain text.\n"
            "Examples:\n"
            "  olmo-hybrid tokenize --tokenizer tokenizer.json --text 'Hello world'\n"
            "  olmo-hybrid tokenize --tokenizer tokenizer.json --jsonl docs.jsonl -o ids.jsonl");
        cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json of the model (dolma2 family)")
            ->required();
        auto* in = cmd->add_option_group("input", "what to tokenize (one of)");
        in->add_option("--text", a->text, "the text itself")->each([a](const std::string&) {
            a->text_given = true;
        });
        in->add_option("--file", a->file, "a file holding the text, as is (- = standard input)");
        in->add_option("--jsonl", a->jsonl,
                       "JSON lines with a \"text\" field (- = standard input): writes one line\n"
                       "{\"ids\":[...]} per input line, in order, using all cores");
        in->require_option(1);
        cmd->add_flag("--json", a->json_out,
                      "print {\"ids\":[...]} instead of ids separated by spaces");
        cmd->add_flag("--no-special", a->no_special, "encode special-token strings as plain text");
        cmd->add_option("-o,--output", a->output,
                        "write to this file (complete or not at all) instead of stdout");
        cmd->add_option("--threads", a->threads, "threads for --jsonl (default: all cores)")
            ->check(CLI::NonNegativeNumber);
        cmd->callback([a] { run_tokenize(*a); });
    }
    {
        auto* cmd =
            app.add_subcommand("detokenize", "Turn token ids back into text with a tokenizer.json");
        cmd->footer(
            "Bytes that do not form valid UTF-8 become U+FFFD, as in HF tokenizers' decode.\n"
            "Examples:\n"
            "  olmo-hybrid detokenize --tokenizer tokenizer.json --ids 9906,1917\n"
            "  olmo-hybrid detokenize --tokenizer tokenizer.json --jsonl ids.jsonl -o texts.jsonl");
        cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json of the model (dolma2 family)")
            ->required();
        auto* in = cmd->add_option_group("input", "what to detokenize (one of)");
        in->add_option("--ids", a->ids,
                       "ids separated by commas or spaces, e.g. \"9906,1917\" or \"[9906, 1917]\"");
        in->add_option("--file", a->file,
                       "a file of ids separated by commas, spaces or newlines (- = stdin)");
        in->add_option(
            "--jsonl", a->jsonl,
            "JSON lines {\"ids\": [...]} (- = standard input): writes one line {\"text\": ...}\n"
            "per input line, in order, using all cores");
        in->require_option(1);
        cmd->add_flag("--json", a->json_out,
                      "print {\"text\": ...} (one JSON line) instead of the raw text");
        cmd->add_flag("--skip-special", a->skip_special,
                      "leave special tokens (<|endoftext|>, ...) out");
        cmd->add_option("-o,--output", a->output,
                        "write to this file (complete or not at all) instead of stdout");
        cmd->add_option("--threads", a->threads, "threads for --jsonl (default: all cores)")
            ->check(CLI::NonNegativeNumber);
        cmd->callback([a] { run_detokenize(*a); });
    }
}

}  // namespace olmo::cli
