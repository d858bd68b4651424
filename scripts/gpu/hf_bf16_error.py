#!/usr/bin/env python3
"""How far HF transformers' own bf16 run is from its f32 run on the test fixtures: the yardstick for the
engine's bf16 tolerance (docs/NUMERICS.md). For each fixture folder: logits of input_ids in f32 and in
bf16 (same weights, CUDA, eager attention), rel max error = max|bf16 − f32| / max|f32|, per hidden state too.

Usage: hf_bf16_error.py DIR...
"""
import json
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def main():
    for d in sys.argv[1:]:
        ids = load_file(d + "/reference.safetensors")["input_ids"].cuda()
        out = {}
        for dt in (torch.float32, torch.bfloat16):
            m = AutoModelForCausalLM.from_pretrained(d, dtype=dt, attn_implementation="eager").cuda().eval()
            with torch.no_grad():
                r = m(ids, output_hidden_states=True)
            out[dt] = [h.float() for h in r.hidden_states] + [r.logits.float()]
        errs = [float((a - b).abs().max() / b.abs().max()) for a, b in zip(out[torch.bfloat16], out[torch.float32])]
        print(json.dumps({"fixture": d.rstrip("/").split("/")[-1], "logits_rel_max_error": errs[-1],
                          "hidden_states": [round(e, 5) for e in errs[:-1]]}), flush=True)


if __name__ == "__main__":
    main()
