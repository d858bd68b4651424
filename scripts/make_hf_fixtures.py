#!/usr/bin/env python3
"""Makes tiny random HF checkpoints with reference outputs computed by HF transformers in float32.

Each fixture is a folder: config.json + model.safetensors as `save_pretrained` writes them, and
reference.safetensors with input_ids, logits, hidden_states.{0..L}, loss, grad.<param> (in-memory names)
and a greedy continuation (generate.prompt, generate.tokens), plus reference.json. The cases cover what
the two shared fixtures do not: other layer patterns, RoPE and YaRN, GQA, GVA, positive-only eigenvalues,
another conv width, bf16 weights on disk, tied embeddings, several GDN chunks.

Usage (needs torch and transformers): make_hf_fixtures.py OUT_DIR
"""
import json
import os
import sys
import traceback

import torch
from safetensors.torch import save_file
from transformers import Olmo3Config, Olmo3ForCausalLM, OlmoHybridConfig, OlmoHybridForCausalLM

COMMON = dict(vocab_size=128, initializer_range=0.1, eos_token_id=1, pad_token_id=0, bos_token_id=None)

CASES = {
    # Attention first, GQA, default RoPE, GVA (2 key heads -> 4 value heads), no negative eigenvalues,
    # conv width 3, sequence over two GDN chunks.
    "hybrid-rope-gqa-gva": dict(
        cls="hybrid", B=2, T=150, disk="f32",
        cfg=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=5,
                 layer_types=["full_attention", "linear_attention", "linear_attention", "full_attention",
                              "linear_attention"],
                 num_attention_heads=4, num_key_value_heads=2, linear_num_key_heads=2, linear_num_value_heads=4,
                 linear_key_head_dim=8, linear_value_head_dim=12, linear_conv_kernel_dim=3,
                 linear_allow_neg_eigval=False, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                 max_position_embeddings=512)),
    # Released layout in miniature, bf16 weights on disk, YaRN RoPE on the attention layers, tied embeddings.
    "hybrid-bf16-yarn-tied": dict(
        cls="hybrid", B=2, T=70, disk="bf16",
        cfg=dict(hidden_size=48, intermediate_size=80, num_hidden_layers=4,
                 num_attention_heads=3, num_key_value_heads=3, linear_num_key_heads=3, linear_num_value_heads=3,
                 linear_key_head_dim=12, linear_value_head_dim=24,
                 rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                  "original_max_position_embeddings": 32, "beta_fast": 32.0, "beta_slow": 1.0},
                 max_position_embeddings=128, tie_word_embeddings=True)),
    # Olmo 3 with YaRN on full layers, default RoPE on sliding layers, GQA, bf16 on disk.
    "olmo3-yarn-gqa-bf16": dict(
        cls="olmo3", B=2, T=60, disk="bf16",
        cfg=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, sliding_window=8, max_position_embeddings=128,
                 layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
                 rope_parameters={
                     "full_attention": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                        "original_max_position_embeddings": 32, "attention_factor": 1.1,
                                        "beta_fast": 16.0, "beta_slow": 2.0},
                     "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})),
    # NoPE hybrid, all-GDN but the last layer, one key head shared by 3 value heads.
    "hybrid-nope-mqa": dict(
        cls="hybrid", B=3, T=33, disk="f32",
        cfg=dict(hidden_size=24, intermediate_size=40, num_hidden_layers=3,
                 layer_types=["linear_attention", "linear_attention", "full_attention"],
                 num_attention_heads=2, num_key_value_heads=1, linear_num_key_heads=1, linear_num_value_heads=3,
                 linear_key_head_dim=16, linear_value_head_dim=8, rope_parameters=None)),
}


def build(case, seed):
    torch.manual_seed(seed)
    kw = dict(COMMON)
    kw.update(case["cfg"])
    if case["cls"] == "hybrid":
        cfg = OlmoHybridConfig(**kw)
        cls = OlmoHybridForCausalLM
    else:
        cfg = Olmo3Config(**kw)
        cls = Olmo3ForCausalLM
    cfg._attn_implementation = "eager"
    return cls, cls(cfg).float().eval()


def make(name, case, out_root):
    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    for seed in range(20):  # pick a seed whose greedy continuation has a clear top-1 at every step
        cls, model = build(case, seed)
        if case["disk"] == "bf16":
            model = model.to(torch.bfloat16)
        model.save_pretrained(out)
        model = cls.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
        g = torch.Generator().manual_seed(1000 + seed)
        V = model.config.vocab_size
        ids = torch.randint(2, V, (case["B"], case["T"]), generator=g)
        prompt = ids[:1, :12].clone()
        model.generation_config.eos_token_id = None
        with torch.no_grad():
            gen = model.generate(prompt, max_new_tokens=24, do_sample=False, output_scores=True,
                                 return_dict_in_generate=True, pad_token_id=0, eos_token_id=None)
        margins = []
        for s in gen.scores:
            top2 = torch.topk(s[0].float(), 2).values
            margins.append(float(top2[0] - top2[1]))
        if min(margins) > 2e-3:
            break
    model.zero_grad()
    res = model(ids, labels=ids, output_hidden_states=True)
    res.loss.backward()
    tensors = {"input_ids": ids.contiguous(), "logits": res.logits.detach().contiguous(),
               "loss": res.loss.detach().reshape(1)}
    for i, h in enumerate(res.hidden_states):
        tensors[f"hidden_states.{i}"] = h.detach().contiguous()
    for n, p in model.named_parameters():
        tensors[f"grad.{n}"] = p.grad.detach().contiguous()
    tensors["generate.prompt"] = prompt[0].contiguous()
    tensors["generate.tokens"] = gen.sequences[0, prompt.shape[1]:].contiguous()
    save_file(tensors, os.path.join(out, "reference.safetensors"))
    import transformers
    meta = {"transformers": transformers.__version__, "torch": torch.__version__, "seed": seed,
            "B": case["B"], "T": case["T"], "weights_on_disk": case["disk"], "loss": float(res.loss),
            "greedy_min_top2_margin": min(margins),
            "note": "float32 reference computed by HF transformers (eager attention) from the saved weights"}
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{name}: seed {seed}, loss {float(res.loss):.5f}, min margin {min(margins):.4f}", flush=True)


def main():
    out_root = sys.argv[1]
    os.makedirs(out_root, exist_ok=True)
    failed = 0
    for name, case in CASES.items():
        try:
            make(name, case, out_root)
        except Exception:
            failed += 1
            print(f"{name}: FAILED", flush=True)
            traceback.print_exc()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
