#!/usr/bin/env python3
"""Summary of scripts/gpu/bench's JSON lines: ours vs peers vs the roofline of an H200
(bf16 matrix rate 750 TFLOP/s, memory 4.1 TB/s, both measured on the card)."""
import json
import sys

PEAK_FLOPS = 750e12
PEAK_BYTES = 4.1e12


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
    by = lambda name: [r for r in rows if r.get("bench") == name]
    print("\n== chunked GDN forward (ms; lower is better)")
    fla = {(r["T"], r["H"], r["Dk"], r["Dv"]): r for r in by("fla_gdn_chunked") if "ms" in r}
    for r in by("gdn_chunked"):
        key = (r["T"], r["H"], r["Dk"], r["Dv"])
        f = fla.get(key)
        ratio = f"{f['ms'] / r['ms']:.2f}x vs fla ({f['ms']:.3f} ms)" if f else "fla: n/a"
        if f and f.get("graph_ms"):
            ratio += f", {f['graph_ms'] / r['ms']:.2f}x vs fla replayed from a CUDA graph ({f['graph_ms']:.3f} ms)"
        print(f"  B{r['B']} T{r['T']} H{r['H']} K{r['Dk']} V{r['Dv']}: {r['ms']:.3f} ms, {r['tflops']:.1f} TFLOP/s"
              f" ({r['tflops'] * 1e12 / PEAK_FLOPS:.1%} of bf16 peak); {ratio}")
    mem = by("memory")
    weight_bytes = mem[0]["matmul_weight_bytes"] if mem else None
    hf_pre = {r["tokens"]: r for r in by("hf_prefill") if "tok_per_s" in r}
    print("\n== prefill (tok/s)")
    for r in by("prefill"):
        L = r["tokens"]
        # 2 FLOPs per matmul weight per token, plus causal attention (8 layers, 30 heads x 128) at mean length L/2.
        flops = 2 * (weight_bytes / 2 if weight_bytes else 7.04e9) + 8 * 4 * (L / 2) * 3840
        roof = PEAK_FLOPS / flops
        h = hf_pre.get(L)
        hs = f", HF {h['tok_per_s']:.0f} ({r['tok_per_s'] / h['tok_per_s']:.1f}x)" if h else ""
        print(f"  {L} tokens: {r['tok_per_s']:.0f} tok/s = {r['tok_per_s'] / roof:.1%} of the {roof:.0f} tok/s "
              f"compute roofline{hs}")
    hf_dec = {r["batch"]: r for r in by("hf_decode")}
    print("\n== decode (tok/s, greedy, 512-token context)")
    for r in by("decode"):
        B = r["batch"]
        roof = PEAK_BYTES / weight_bytes * B if weight_bytes else float("nan")
        h = hf_dec.get(B)
        hs = f", HF {h['tok_per_s']:.1f} ({r['tok_per_s'] / h['tok_per_s']:.1f}x)" if h else ""
        print(f"  B={B}: {r['tok_per_s']:.1f} tok/s ({r['ms_per_step']:.3f} ms/step) = "
              f"{r['tok_per_s'] / roof:.1%} of the weight-streaming roofline {roof:.0f}{hs}")
    ops = sorted(by("decode_op"), key=lambda r: -r["ms"])
    tot = by("decode_op_total")
    if ops and tot:
        t = tot[0]["ms"]
        print(f"\n== one eager decode step at B=1, by op (sum {t:.3f} ms; the graph removes launch gaps)")
        for r in ops[:12]:
            print(f"  {r['op']:<22} {r['calls']:4d} calls {r['ms']:8.3f} ms {r['ms'] / t:6.1%}")
    gemv = by("gemv")
    if gemv:
        print("\n== decode matrix products alone (one token, back to back from a CUDA graph)")
        for r in gemv:
            print(f"  {r['O']:>6} x {r['I']:<6} {r['us']:8.2f} us  {r['tb_per_s']:.2f} TB/s = "
                  f"{r['tb_per_s'] * 1e12 / PEAK_BYTES:.0%} of the copy bandwidth")
    for r in mem:
        print(f"\n== peak device memory: {r['peak_mb']:.0f} MB (weights {weight_bytes / 1e9:.2f} GB streamed per token)")
    for r in by("hf_memory"):
        print(f"   HF peak: {r['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
