// Training math for the model: a forward pass that keeps what the backward pass needs, the backward
// pass through every layer (explicit *_backward ops, no autograd), and the loss.
//
// Loss convention (spec §10.5): targets[B, T] give the token each position should predict;
// positions whose target is `ignore_index` do not count (HF labels=input_ids is targets = ids
// shifted left by one, with the last position ignored). The loss is the mean cross-entropy over
// counted positions, plus the optional z-loss `z_loss · logsumexp²`.
#pragma once

#include "core/arena.h"
#include "model/model.h"

namespace olmo {

struct LossOptions {
    float z_loss = 0.0f;
    int64_t ignore_index = -100;
    // Rows of logits computed at a time, so that [B·T, V] logits are never held at once.
    int64_t logits_chunk = 1024;
    // Document masking (spec §3.6): ≥ 0 = the token that ends a document (EOS); each document of a
    // row then sees nothing before it (attention, conv and GDN state restart, positions restart).
    // −1 = off.
    int64_t document_separator = -1;
};

struct LossResult {
    double loss = 0;      // mean over counted positions (cross-entropy + z-loss term)
    int64_t counted = 0;  // positions that counted
};

// HF's causal-LM targets for ids[B, T]: targets[b, t] = ids[b, t+1], the last position ignored.
OwnedTensor next_token_targets(const Tensor& ids, int64_t ignore_index = -100);

// Forward and backward for one batch: adds grad_scale · d(loss)/d(param) into `grads` (same config,
// same device, f32) and returns the loss. Intermediates come from `arena` (rewound on return).
LossResult forward_backward(const Model& model, const Tensor& ids, const Tensor& targets,
                            ModelWeights& grads, float grad_scale, const LossOptions& options,
                            Arena& arena);

// The loss only (no gradients), with the same chunked logits: for held-out evaluation.
LossResult evaluate_loss(const Model& model, const Tensor& ids, const Tensor& targets,
                         const LossOptions& options, Arena& arena);

}  // namespace olmo
