// A progress line on stderr for long work: "label  42% 1.2/2.9 GB  35.1 MB/s  eta 48s".
// On a terminal it redraws one line; otherwise it prints a line at most every few seconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace olmo {

class Progress {
  public:
    // unit: "tok", "B" (bytes, shown in KB/MB/GB), "step", ...; total 0 = unknown.
    Progress(std::string label, double total, std::string unit, bool enabled = true);
    ~Progress();
    void add(double n) { set(done_ + n); }
    void set(double done);
    void set_suffix(std::string s) { suffix_ = std::move(s); }
    void finish();

  private:
    void draw(bool final);
    std::string label_, unit_, suffix_;
    double total_, done_ = 0;
    bool enabled_, tty_, finished_ = false;
    std::chrono::steady_clock::time_point start_, last_draw_;
};

// "1.23 GB", "512 KB", "1.5 M" style formatting.
std::string human_bytes(double bytes);
std::string human_count(double n);

}  // namespace olmo
