// Tokenizer throughput on a folder of plain-text books: encode on one thread and on all threads
// (cold = empty pre-token caches, warm = best of the repeats after that), and decode.
//
//   bench_tokenizer [BOOKS_DIR] [--tokenizer FILE] [--threads N] [--repeat R]
//
// BOOKS_DIR defaults to ../shared/data/books and the tokenizer to
// ../shared/tokenizer/dolma2-tokenizer.json, both relative to the project root.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/check.h"
#include "tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string read_all(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) olmo::fail("[bench] cannot open ", p.string());
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

std::string cpu_model() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "unknown CPU";
}

// Pieces of about `target` bytes cut at paragraph breaks, so that threads have work to share.
std::vector<std::string> chunks_of(const std::vector<std::string>& books, size_t target) {
    std::vector<std::string> out;
    for (const std::string& b : books) {
        size_t start = 0;
        while (start < b.size()) {
            size_t end = std::min(b.size(), start + target);
            if (end < b.size()) {
                const size_t brk = b.find("\n\n", end);
                end = brk == std::string::npos ? b.size() : brk + 2;
            }
            out.push_back(b.substr(start, end - start));
            start = end;
        }
    }
    return out;
}

int run(int argc, char** argv) {
    const fs::path root(OLMO_SOURCE_DIR);
    std::string books_dir = (root / ".." / "shared" / "data" / "books").lexically_normal().string();
    std::string tok_path = (root / ".." / "shared" / "tokenizer" / "dolma2-tokenizer.json")
                               .lexically_normal()
                               .string();
    int threads = int(std::max(1u, std::thread::hardware_concurrency()));
    int repeat = 7;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) olmo::fail("[bench] ", a, " needs a value");
            return argv[++i];
        };
        if (a == "--tokenizer")
            tok_path = value();
        else if (a == "--threads")
            threads = std::max(1, std::atoi(value().c_str()));
        else if (a == "--repeat")
            repeat = std::max(1, std::atoi(value().c_str()));
        else if (a == "-h" || a == "--help") {
            std::printf(
                "usage: bench_tokenizer [BOOKS_DIR] [--tokenizer FILE] [--threads N] [--repeat "
                "R]\n");
            return 0;
        } else if (!a.empty() && a[0] != '-')
            books_dir = a;
        else
            olmo::fail("[bench] unknown option ", a);
    }

    auto t0 = Clock::now();
    const olmo::Tokenizer tok = olmo::Tokenizer::from_file(tok_path);
    const double load_s = seconds_since(t0);

    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(books_dir))
        if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) olmo::fail("[bench] no files in ", books_dir);
    std::vector<std::string> books;
    double bytes = 0;
    for (const auto& f : files) {
        books.push_back(read_all(f));
        bytes += double(books.back().size());
    }

    std::printf("machine   : %s, %u hardware threads\n", cpu_model().c_str(),
                std::thread::hardware_concurrency());
    std::printf("tokenizer : %s (%d ids), loaded in %.3f s\n",
                fs::path(tok_path).filename().c_str(), tok.vocab_size(), load_s);

    // Each case runs `repeat` times; the table gives the best and the median run (this machine is
    // shared, so the best is the steadiest figure).
    auto timed = [&](auto&& before, auto&& work) {
        std::vector<double> t;
        for (int r = 0; r < repeat; ++r) {
            before();
            const auto t0 = Clock::now();
            work();
            t.push_back(seconds_since(t0));
        }
        std::sort(t.begin(), t.end());
        return std::pair<double, double>{t.front(), t[t.size() / 2]};
    };
    auto nothing = [] {};
    auto cold = [&] { tok.clear_cache(); };

    // One thread: every book as one text.
    std::vector<std::vector<int32_t>> ids(books.size());
    auto encode_books = [&] {
        for (size_t b = 0; b < books.size(); ++b) ids[b] = tok.encode(books[b]);
    };
    const auto one_cold = timed(cold, encode_books);
    const auto one_warm = timed(nothing, encode_books);
    double tokens = 0;
    for (const auto& v : ids) tokens += double(v.size());
    bool round_trip = true;
    for (size_t b = 0; b < books.size(); ++b) round_trip &= tok.decode(ids[b]) == books[b];

    // All threads: the books cut into ~64 KB pieces at paragraph breaks, encoded by encode_batch.
    const std::vector<std::string> pieces = chunks_of(books, 64 << 10);
    double batch_tokens = 0;
    auto encode_pieces = [&] {
        const auto out = tok.encode_batch(pieces, threads);
        batch_tokens = 0;
        for (const auto& v : out) batch_tokens += double(v.size());
    };
    const auto all_cold = timed(cold, encode_pieces);
    const auto all_warm = timed(nothing, encode_pieces);

    size_t decoded = 0;
    const auto dec = timed(nothing, [&] {
        for (const auto& v : ids) decoded += tok.decode(v).size();
    });

    std::printf(
        "books     : %zu files in %s, %.2f MB, %.0f tokens (%.2f bytes/token), round trip %s\n",
        books.size(), books_dir.c_str(), bytes / 1e6, tokens, bytes / tokens,
        round_trip ? "exact" : "DIFFERENT");
    std::printf("runs      : %d per case; cold = pre-token caches emptied before each run\n\n",
                repeat);
    std::printf("%-34s %10s %12s %12s\n", "case", "best MB/s", "median MB/s", "Mtokens/s");
    auto row = [&](const std::string& name, double n_tokens, std::pair<double, double> t) {
        std::printf("%-34s %10.1f %12.1f %12.2f\n", name.c_str(), bytes / t.first / 1e6,
                    bytes / t.second / 1e6, n_tokens / t.first / 1e6);
    };
    row("encode, 1 thread, cold cache", tokens, one_cold);
    row("encode, 1 thread, warm cache", tokens, one_warm);
    row("encode, " + std::to_string(threads) + " threads, cold cache", batch_tokens, all_cold);
    row("encode, " + std::to_string(threads) + " threads, warm cache", batch_tokens, all_warm);
    row("decode, 1 thread", tokens, dec);
    if (decoded == 0) std::printf("(nothing decoded)\n");
    return round_trip ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_tokenizer: error: %s\n", e.what());
        return 1;
    }
}
