#!/usr/bin/env python3
"""Peers measured on the same card, same checkpoint and same shapes as the engine's benchmark:
HF transformers (bf16, sdpa attention, flash-linear-attention kernels when importable) on the random 7B
checkpoint, and fla's chunked GDN forward alone. Prints JSON lines.

Usage: bench_peers.py --model DIR [--skip-hf] [--gdn-only]
"""
import argparse
import json
import time

import torch


def cuda_ms(fn, reps=10, warmup=2):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def bench_fla(shapes):
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    for B, T, H, K, V in shapes:
        g = torch.Generator(device="cuda").manual_seed(0)
        q = torch.randn(B, T, H, K, device="cuda", dtype=torch.bfloat16, generator=g)
        k = torch.randn(B, T, H, K, device="cuda", dtype=torch.bfloat16, generator=g)
        v = torch.randn(B, T, H, V, device="cuda", dtype=torch.bfloat16, generator=g)
        gate = -torch.rand(B, T, H, device="cuda", dtype=torch.float32, generator=g) * 0.5 - 0.01
        beta = torch.rand(B, T, H, device="cuda", dtype=torch.float32, generator=g) * 1.8 + 0.1
        q = torch.nn.functional.normalize(q.float(), dim=-1).to(torch.bfloat16) * K ** -0.5
        k = torch.nn.functional.normalize(k.float(), dim=-1).to(torch.bfloat16)
        fn = lambda: chunk_gated_delta_rule(q, k, v, gate, beta.to(torch.bfloat16), scale=1.0,
                                            output_final_state=True)
        ms = cuda_ms(fn, reps=20, warmup=3)
        flops = B * T * H * (6 * K * V + 6 * 64 * K + 4 * 64 * V)
        # Replayed from a CUDA graph as well: the GPU time alone, without Python and launch overhead.
        graph_ms = None
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                fn()
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
            graph_ms = cuda_ms(graph.replay, reps=20, warmup=3)
        except Exception as e:  # report and go on
            print(json.dumps({"bench": "fla_gdn_graph_error", "error": str(e)[:200]}), flush=True)
        print(json.dumps({"bench": "fla_gdn_chunked", "B": B, "T": T, "H": H, "Dk": K, "Dv": V, "ms": ms,
                          "graph_ms": graph_ms, "tflops": flops / ms / 1e9}), flush=True)


def bench_hf(model_dir, prompts, batches, steps):
    from transformers import AutoModelForCausalLM
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    print(json.dumps({"bench": "hf_load", "seconds": time.time() - t0}), flush=True)
    V = model.config.vocab_size
    gen = torch.Generator(device="cuda").manual_seed(1)
    with torch.no_grad():
        for L in prompts:
            ids = torch.randint(0, min(V, 100000), (1, L), device="cuda", generator=gen)
            try:
                ms = cuda_ms(lambda: model(ids, use_cache=False, logits_to_keep=1), reps=3, warmup=1)
                print(json.dumps({"bench": "hf_prefill", "tokens": L, "ms": ms, "tok_per_s": L / ms * 1e3}), flush=True)
            except Exception as e:  # report and go on
                print(json.dumps({"bench": "hf_prefill", "tokens": L, "error": str(e)[:200]}), flush=True)
        for B in batches:
            n = steps if B == 1 else max(16, steps // 2)
            ids = torch.randint(0, min(V, 100000), (B, 512), device="cuda", generator=gen)
            model.generation_config.eos_token_id = None
            run = lambda: model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
            run()
            torch.cuda.synchronize()
            t = time.time()
            run()
            torch.cuda.synchronize()
            dt = time.time() - t
            print(json.dumps({"bench": "hf_decode", "batch": B, "context": 512, "steps": n,
                              "tok_per_s": B * n / dt, "note": "includes the 512-token prefill"}), flush=True)
    print(json.dumps({"bench": "hf_memory", "peak_mb": torch.cuda.max_memory_allocated() / 1e6}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model")
    p.add_argument("--gdn-only", action="store_true")
    p.add_argument("--prompts", default="2048")
    p.add_argument("--batches", default="1,16")
    p.add_argument("--steps", type=int, default=64)
    a = p.parse_args()
    try:
        import fla  # noqa: F401
        print(json.dumps({"bench": "fla_version", "version": fla.__version__}), flush=True)
        bench_fla([(1, 2048, 30, 96, 192), (1, 8192, 30, 96, 192), (1, 8192, 32, 128, 128)])
    except Exception as e:
        print(json.dumps({"bench": "fla_gdn_chunked", "error": str(e)[:300]}), flush=True)
    if not a.gdn_only and a.model:
        bench_hf(a.model, [int(x) for x in a.prompts.split(",")], [int(x) for x in a.batches.split(",")], a.steps)


if __name__ == "__main__":
    main()
