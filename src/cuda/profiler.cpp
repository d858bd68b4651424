#include "cuda/profiler.h"

#include "cuda/runtime_internal.h"

namespace olmo::cuda {

OpProfiler::~OpProfiler() {
    for (auto& p : pending_) {
        cudaEventDestroy(static_cast<cudaEvent_t>(p.start));
        cudaEventDestroy(static_cast<cudaEvent_t>(p.stop));
    }
    for (void* e : free_events_) cudaEventDestroy(static_cast<cudaEvent_t>(e));
}

void* OpProfiler::take_event() {
    if (!free_events_.empty()) {
        void* e = free_events_.back();
        free_events_.pop_back();
        return e;
    }
    cudaEvent_t e;
    CUDA_CHECK(cudaEventCreate(&e));
    return e;
}

void OpProfiler::begin(const char* op, Device device) {
    if (device != Device::cuda) return;
    Pending p{op, take_event(), take_event()};
    CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(p.start), current_stream()));
    pending_.push_back(p);
}

void OpProfiler::end(const char* op, Device device) {
    if (device != Device::cuda || pending_.empty()) return;
    CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(pending_.back().stop), current_stream()));
}

std::map<std::string, OpProfiler::Entry> OpProfiler::collect() {
    CUDA_CHECK(cudaStreamSynchronize(current_stream()));
    std::map<std::string, Entry> out;
    for (auto& p : pending_) {
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(p.start),
                                        static_cast<cudaEvent_t>(p.stop)));
        Entry& e = out[p.op];
        e.ms += ms;
        e.calls += 1;
        free_events_.push_back(p.start);
        free_events_.push_back(p.stop);
    }
    pending_.clear();
    return out;
}

}  // namespace olmo::cuda
