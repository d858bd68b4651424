// Per-op GPU time: an ops::OpObserver that records CUDA events around every op on the stream and
// sums the elapsed time per op name. For benchmarks (eager execution only, not inside a graph).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ops/ops.h"

namespace olmo::cuda {

class OpProfiler : public ops::OpObserver {
  public:
    ~OpProfiler() override;
    void begin(const char* op, Device device) override;
    void end(const char* op, Device device) override;
    // Synchronises, then returns milliseconds and call counts per op since the last collect().
    struct Entry {
        double ms = 0;
        int calls = 0;
    };
    std::map<std::string, Entry> collect();

  private:
    struct Pending {
        std::string op;
        void *start, *stop;
    };
    std::vector<Pending> pending_;
    std::vector<void*> free_events_;
    void* take_event();
};

}  // namespace olmo::cuda
