#!/usr/bin/env python3
"""Make tests/data/tokenizer/extra_goldens.jsonl with HF `tokenizers`, the reference implementation.

For every line {"text": ...} of tests/data/tokenizer/extra_texts.jsonl it writes, in the same
order, {"text": ..., "ids": [...], "decoded": ...} where ids = Tokenizer.encode(text).ids (special
tokens in the text are matched, as by default) and decoded = Tokenizer.decode(ids,
skip_special_tokens=False). The format is that of the reference goldens.jsonl; test_tokenizer
(Tokenizer.ExtraGoldens) checks the C++ tokenizer against it.

    pip install tokenizers==0.23.2
    python3 scripts/make_tokenizer_goldens.py [--tokenizer PATH/TO/tokenizer.json]
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    data = os.path.join(ROOT, "tests", "data", "tokenizer")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tokenizer",
        default=os.path.join(ROOT, "..", "shared", "tokenizer", "dolma2-tokenizer.json"),
        help="tokenizer.json (default: the dolma2 tokenizer of the reference folder)")
    parser.add_argument("--texts", default=os.path.join(data, "extra_texts.jsonl"))
    parser.add_argument("--out", default=os.path.join(data, "extra_goldens.jsonl"))
    args = parser.parse_args()

    try:
        import tokenizers
        from tokenizers import Tokenizer
    except ImportError:
        print("error: this needs HF tokenizers (pip install tokenizers)", file=sys.stderr)
        return 1

    tok = Tokenizer.from_file(args.tokenizer)
    lines = []
    with open(args.texts, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            text = json.loads(line)["text"]
            ids = tok.encode(text).ids
            decoded = tok.decode(ids, skip_special_tokens=False)
            record = {"text": text, "ids": ids, "decoded": decoded}
            lines.append(json.dumps(record, ensure_ascii=False))
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {len(lines)} goldens to {args.out} with tokenizers {tokenizers.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
