#!/usr/bin/env python3
"""Throughput of HF `tokenizers` on a whole text, for the tokenizer benchmark.

Usage: hf_tokenize.py TOKENIZER_JSON TEXT [--runs 5]   (TOKENIZERS_PARALLELISM=false is set here)

The text is read as bytes and decoded as UTF-8 (no newline translation), then encoded in one
`Tokenizer.encode(text)` call (special tokens added, the default), on one thread. Two figures,
each the best of RUNS after a warm-up:
  cold  a fresh `Tokenizer.from_file` before each timed call (load untimed), so the BPE word
        cache starts empty, as ckpt's does in every `encode` call;
  warm  the same Tokenizer object encoding the text again and again: its word cache (10,000
        words, kept across calls) is already full of this text's words.
Prints one JSON line: bytes, tokens, seconds and MB/s (10⁶ bytes) of both, and the ids'
position-weighted checksum Σ (i + 1) · id mod 2⁶⁴ (ckpt-bench tokenize prints the same).
"""

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # before tokenizers is imported

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("tokenizer")
    parser.add_argument("text")
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    with open(options.text, "rb") as file:
        raw = file.read()
    text = raw.decode("utf-8")

    load_start = time.perf_counter()
    Tokenizer.from_file(options.tokenizer)
    load_seconds = time.perf_counter() - load_start

    def timed(tokenizer: Tokenizer) -> tuple[float, list[int]]:
        start = time.perf_counter()
        ids = tokenizer.encode(text).ids
        return time.perf_counter() - start, ids

    # cold: a new tokenizer, so a new, empty cache, for every call
    timed(Tokenizer.from_file(options.tokenizer))
    cold = min(timed(Tokenizer.from_file(options.tokenizer))[0] for _ in range(options.runs))
    # warm: one tokenizer, cache filled by the calls before
    tokenizer = Tokenizer.from_file(options.tokenizer)
    _, ids = timed(tokenizer)
    warm = min(timed(tokenizer)[0] for _ in range(options.runs))

    weights = np.arange(1, len(ids) + 1, dtype=np.uint64)
    checksum = int((np.asarray(ids, dtype=np.uint64) * weights).sum(dtype=np.uint64))
    print(json.dumps({"bytes": len(raw), "tokens": len(ids), "load_seconds": load_seconds,
                      "cold_seconds": cold, "cold_mb_per_s": len(raw) / cold / 1e6,
                      "warm_seconds": warm, "warm_mb_per_s": len(raw) / warm / 1e6,
                      "ids_checksum": checksum, "runs": options.runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
