// The training loop: batches from the DataLoader, forward_backward with gradient accumulation,
// global-norm clipping, the learning-rate schedule, skip-step on spikes, AdamW; periodic held-out
// loss; metrics to CSV with a PNG plot; checkpoints written atomically and an exact resume.
//
// Output folder layout (docs/TRAINING.md):
//   metrics.csv, loss.png
//   checkpoints/step-000100/{config.json, model.safetensors, optimizer.safetensors,
//   trainer_state.json} checkpoints/latest            name of the newest complete checkpoint model/
//   the final weights (HF layout), written when the run ends
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "model/training.h"
#include "train/data.h"
#include "train/optimizer.h"
#include "train/schedule.h"

namespace olmo {

struct TrainOptions {
    std::string output_dir;
    int64_t steps = 1000;
    int64_t batch_size = 16, seq_len = 128, grad_accum = 1;
    Schedule schedule;
    AdamWConfig adamw;
    LossOptions loss;
    uint64_t data_seed = 0;
    double heldout_fraction = 0.05;
    int64_t eval_every = 100, eval_batches = 8;
    int64_t checkpoint_every = 200;
    int64_t keep_checkpoints = 2;
    int64_t log_every = 10;
    bool skip_steps = true;
    double max_minutes =
        0;  // stop early (with a checkpoint) after this much wall time; 0 = no limit
    int64_t stop_at_step =
        0;  // stop (with a checkpoint) once this step is done, as if interrupted; 0 = never
    bool progress = true;
};

struct StepMetrics {
    int64_t step = 0;
    double loss = 0, lr = 0, grad_norm = 0, heldout_loss = -1, tokens_per_s = 0;
    int64_t tokens = 0;
    bool skipped = false;
};

class Trainer {
  public:
    // `model` holds f32 master weights (random or loaded); its config is saved with every
    // checkpoint.
    Trainer(Model& model, const TokenStream& data, TrainOptions options);

    // Continues from a checkpoint folder (or the output folder's latest checkpoint).
    void resume(const std::string& checkpoint);
    // Runs until options.steps (or max_minutes). Calls on_step after every step.
    void run(const std::function<void(const StepMetrics&)>& on_step = {});

    int64_t step() const { return step_; }
    double heldout_loss();
    std::string latest_checkpoint() const;
    // Writes a checkpoint now (atomically); returns its folder.
    std::string save_checkpoint();

  private:
    void write_metrics(const StepMetrics& m);
    void plot() const;

    Model& model_;
    const TokenStream& data_;
    TrainOptions opt_;
    DataLoader loader_;
    ModelWeights grads_;
    AdamW adamw_;
    SkipStepMonitor monitor_;
    Arena arena_;
    int64_t step_ = 0;
    int64_t tokens_seen_ = 0;
};

// Path of the newest complete checkpoint under an output folder ("" if none).
std::string find_latest_checkpoint(const std::string& output_dir);

}  // namespace olmo
