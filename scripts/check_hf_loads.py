#!/usr/bin/env python3
"""Checks that HF transformers loads checkpoints written by `olmo-hybrid init` and records its logits.

For every model folder under ROOT (config.json + model.safetensors), loads it with from_pretrained in
float32 (eager attention), runs fixed input ids and writes OUT/<folder>.safetensors with input_ids and
logits. The test suite compares the engine's logits on the same folders with these.

Usage: check_hf_loads.py ROOT OUT
"""
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM


def main():
    root, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if not os.path.exists(os.path.join(d, "config.json")):
            continue
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        g = torch.Generator().manual_seed(7)
        ids = torch.randint(0, model.config.vocab_size, (2, 21), generator=g)
        with torch.no_grad():
            logits = model(ids).logits
        save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous()},
                  os.path.join(out, name + ".safetensors"))
        print(f"{name}: {type(model).__name__} loaded, logits {tuple(logits.shape)}", flush=True)


if __name__ == "__main__":
    main()
