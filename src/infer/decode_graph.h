// Decode steps for slots [0, B) of an InferenceState: one token per sequence, logits [B, V] and
// greedy ids on the model's device. On CUDA the step is captured once into a CUDA graph and
// replayed (all its kernels in one launch); on the CPU it runs eagerly. The first step runs eagerly
// (it warms up the arena and the matmul plans), the graph is captured after it.
#pragma once

#include <span>
#include <vector>

#include "core/arena.h"
#include "model/layers.h"
#include "model/model.h"

namespace olmo {

class DecodeGraph {
  public:
    DecodeGraph(const Model& model, InferenceState& state, int64_t batch, bool use_graph = true);
    ~DecodeGraph();
    DecodeGraph(const DecodeGraph&) = delete;
    DecodeGraph& operator=(const DecodeGraph&) = delete;

    // Feeds tokens[B] (host) and advances every slot by one token.
    void step(std::span<const int32_t> tokens);
    // Logits [B, V] of the last step (device tensor, model dtype).
    const Tensor& logits() const { return logits_; }
    // Greedy next token of every sequence after the last step (argmax on the device, B ids copied
    // back).
    std::vector<int32_t> greedy();
    bool captured() const { return exec_ != nullptr; }

  private:
    void run_step();
    const Model& model_;
    InferenceState& state_;
    int64_t B_;
    bool use_graph_;
    Arena arena_;
    Tensor index_;  // [4·B] i32 on the device: ids | positions | start | kv_lens
    BatchInfo bt_;
    Tensor ids_, logits_, argmax_;
    std::vector<int32_t> host_index_;
    int64_t steps_ = 0;
    [[maybe_unused]] void* graph_ = nullptr;  // cudaGraph_t (CUDA builds)
    void* exec_ = nullptr;                    // cudaGraphExec_t
};

}  // namespace olmo
