#include "infer/decode_graph.h"

#include "ops/ops.h"

#ifdef OLMO_HAVE_CUDA
#include "cuda/runtime_internal.h"
#endif

namespace olmo {

DecodeGraph::DecodeGraph(const Model& model, InferenceState& state, int64_t batch, bool use_graph)
    : model_(model),
      state_(state),
      B_(batch),
      use_graph_(use_graph && model.device() == Device::cuda),
      arena_(model.device()) {
    OLMO_CHECK(batch >= 1 && batch <= state.slots(), "decode batch ", batch,
               " exceeds the state's slots");
    index_ = arena_.alloc(DType::i32, {4 * B_});
    ids_ = index_.narrow0(0, B_);
    bt_.B = B_;
    bt_.T = 1;
    bt_.N = B_;
    bt_.positions = index_.narrow0(B_, B_);
    bt_.start = index_.narrow0(2 * B_, B_);
    bt_.kv_lens = index_.narrow0(3 * B_, B_);
    logits_ = arena_.alloc(model.dtype(), {B_, model.config().vocab_size});
    argmax_ = arena_.alloc(DType::i32, {B_});
    host_index_.resize(4 * B_);
}

DecodeGraph::~DecodeGraph() {
#ifdef OLMO_HAVE_CUDA
    if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
    if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
#endif
}

void DecodeGraph::run_step() {
    ForwardOutputs out;
    out.logits = logits_;
    out.last_only = true;
    forward_batch(model_, &state_, 0, bt_, ids_, out, arena_);
}

void DecodeGraph::step(std::span<const int32_t> tokens) {
    if (int64_t(tokens.size()) != B_)
        fail("[decode] expected ", B_, " tokens, got ", tokens.size());
    for (int64_t b = 0; b < B_; ++b) {
        const int64_t len = state_.length[b];
        if (len + 1 > state_.max_len())
            fail("[decode] sequence ", b, " reached the state's limit of ", state_.max_len(),
                 " tokens");
        if (tokens[b] < 0 || tokens[b] >= model_.config().vocab_size)
            fail("[decode] token id ", tokens[b], " outside the vocabulary");
        host_index_[b] = tokens[b];
        host_index_[B_ + b] = int32_t(len);
        host_index_[2 * B_ + b] = int32_t(len);
        host_index_[3 * B_ + b] = int32_t(len + 1);
    }
    copy_tensor(index_, Tensor(host_index_.data(), DType::i32, Device::cpu, {4 * B_}));
    const size_t mark = arena_.mark();
    if (!use_graph_ || steps_ == 0) {
        run_step();  // eager: CPU, or the first step, which also sizes the arena and plans the
                     // matmuls
    } else {
#ifdef OLMO_HAVE_CUDA
        if (!exec_) {
            cudaStream_t s = cuda::current_stream();
            cudaGraph_t graph = nullptr;
            CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
            run_step();
            CUDA_CHECK(cudaStreamEndCapture(s, &graph));
            cudaGraphExec_t exec = nullptr;
            CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
            graph_ = graph;
            exec_ = exec;
        }
        CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), cuda::current_stream()));
#endif
    }
    arena_.rewind(mark);
    for (int64_t b = 0; b < B_; ++b) state_.length[b] += 1;
    ++steps_;
}

std::vector<int32_t> DecodeGraph::greedy() {
    ops::argmax(argmax_, logits_);
    std::vector<int32_t> ids(B_);
    copy_tensor(Tensor(ids.data(), DType::i32, Device::cpu, {B_}), argmax_);
    return ids;
}

}  // namespace olmo
