#!/usr/bin/env python3
"""Perplexity with transformers, by llama.cpp's method, for the perplexity benchmark.

Usage: hf_perplexity.py MODEL_FOLDER TEXT [--ctx 512] [--chunks 16] [--threads 2] [--attn sdpa|eager]
                        [--full-logits]

The text is read as bytes and decoded as UTF-8 (no newline translation: wikitext's CRLFs stay),
then tokenized with HF `tokenizers` from MODEL_FOLDER/tokenizer.json (`encode(text).ids`, special
tokens as the file's post-processor adds them; SmolLM2's adds none, so chunks start with no BOS;
a tokenizer that adds BOS puts it first in every chunk, as llama.cpp does). The model runs in
float32 (`from_pretrained(..., dtype=float32, attn_implementation=ATTN)`), `torch.set_num_threads`
THREADS, under `inference_mode`. Chunk i is tokens[i·ctx, (i+1)·ctx); its logits at positions
ctx/2 … ctx−2 are scored against the next token (log-softmax in float64). Only the last ctx/2
positions' logits are computed (`logits_to_keep`), which skips half of the lm_head work and
changes no scored value; --full-logits computes all ctx rows, as a plain `model(ids).logits`
script does.

One untimed forward of chunk 0 first (allocator and thread-pool warm-up); then every chunk is
timed: tokens/s = chunks × ctx / seconds of forward + scoring. Prints one JSON line.
"""

import argparse
import json
import math
import sys
import time

start = time.perf_counter()
import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("text")
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--chunks", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--attn", default="sdpa", choices=("sdpa", "eager"))
    parser.add_argument("--full-logits", action="store_true")
    options = parser.parse_args()
    imported = time.perf_counter()

    torch.set_num_threads(options.threads)
    tokenizer = Tokenizer.from_file(f"{options.model}/tokenizer.json")
    with open(options.text, "rb") as file:
        text = file.read().decode("utf-8")
    ids = tokenizer.encode(text).ids
    bos_ids = tokenizer.encode("").ids  # what the post-processor puts around an empty text
    bos = bos_ids[0] if bos_ids else None
    tokenized = time.perf_counter()

    model = AutoModelForCausalLM.from_pretrained(options.model, dtype=torch.float32,
                                                 attn_implementation=options.attn)
    model.eval()
    loaded = time.perf_counter()

    ctx = options.ctx
    chunks = min(options.chunks or len(ids) // ctx, len(ids) // ctx)
    first = ctx // 2

    def chunk_tokens(i: int) -> torch.Tensor:
        chunk = list(ids[i * ctx:(i + 1) * ctx])
        if bos is not None:
            chunk[0] = bos
        return torch.tensor([chunk], dtype=torch.long)

    def nll_of(i: int) -> tuple[float, float, int]:
        tokens = chunk_tokens(i)
        if options.full_logits:
            logits = model(tokens).logits[0, first:]  # all ctx rows computed; keep first … ctx−1
        else:
            logits = model(tokens, logits_to_keep=ctx - first).logits[0]  # rows for positions first … ctx−1
        scored = logits[:ctx - 1 - first].double().log_softmax(dim=-1)  # positions first … ctx−2
        targets = tokens[0, first + 1:ctx]
        nll = -scored.gather(1, targets.unsqueeze(1)).squeeze(1)
        return float(nll.sum()), float((nll * nll).sum()), nll.numel()

    with torch.inference_mode():
        nll_of(0)  # warm-up, untimed
        begin = time.perf_counter()
        total, total_sq, count, per_chunk = 0.0, 0.0, 0, []
        for i in range(chunks):
            s, sq, n = nll_of(i)
            total, total_sq, count = total + s, total_sq + sq, count + n
            per_chunk.append(math.exp(s / n))
        seconds = time.perf_counter() - begin

    mean = total / count
    variance = total_sq / count - mean * mean
    standard_error = math.exp(mean) * math.sqrt(max(variance, 0.0) / (count - 1))
    print(json.dumps({
        "tokens": len(ids), "ctx": ctx, "chunks": chunks, "scored_tokens": count, "bos": bos,
        "perplexity": math.exp(mean), "standard_error": standard_error, "mean_nll": mean,
        "per_chunk_perplexity": per_chunk, "seconds": seconds, "tokens_per_second": chunks * ctx / seconds,
        "import_seconds": imported - start, "tokenize_seconds": tokenized - imported, "load_seconds": loaded - tokenized,
        "threads": torch.get_num_threads(), "attn_implementation": model.config._attn_implementation,
        "logits_rows": ctx if options.full_logits else ctx - first, "torch": torch.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
