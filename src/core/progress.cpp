#include "core/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace olmo {

std::string human_bytes(double b) {
    const char* units[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;
    while (b >= 1000 && u < 4) b /= 1000, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", b, units[u]);
    return buf;
}

std::string human_count(double n) {
    const char* units[] = {"", "k", "M", "G"};
    int u = 0;
    while (n >= 1000 && u < 3) n /= 1000, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.1f%s" : "%.0f%s", n, units[u]);
    return buf;
}

Progress::Progress(std::string label, double total, std::string unit, bool enabled)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      enabled_(enabled),
      tty_(::isatty(2)),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
    if (!finished_) finish();
}

void Progress::set(double done) {
    done_ = done;
    const auto now = std::chrono::steady_clock::now();
    const double since = std::chrono::duration<double>(now - last_draw_).count();
    if (since >= (tty_ ? 0.1 : 5.0)) {
        last_draw_ = now;
        draw(false);
    }
}

void Progress::finish() {
    if (finished_) return;
    finished_ = true;
    draw(true);
}

void Progress::draw(bool final) {
    if (!enabled_) return;
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const bool bytes = unit_ == "B";
    auto amount = [&](double x) { return bytes ? human_bytes(x) : human_count(x) + " " + unit_; };
    std::string line = label_;
    if (total_ > 0) {
        char pct[16];
        std::snprintf(pct, sizeof pct, " %3.0f%%", 100.0 * std::min(1.0, done_ / total_));
        line += pct;
        line += " " + amount(done_) + " / " + amount(total_);
    } else {
        line += " " + amount(done_);
    }
    if (secs > 0 && done_ > 0) {
        line += "  " +
                (bytes ? human_bytes(done_ / secs) : human_count(done_ / secs) + " " + unit_) +
                "/s";
        if (total_ > 0 && !final && done_ < total_) {
            char eta[32];
            std::snprintf(eta, sizeof eta, "  eta %.0fs", (total_ - done_) * secs / done_);
            line += eta;
        } else if (final) {
            char el[32];
            std::snprintf(el, sizeof el, "  %.1fs", secs);
            line += el;
        }
    }
    if (!suffix_.empty()) line += "  " + suffix_;
    if (tty_)
        std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
    else
        std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
}

}  // namespace olmo
