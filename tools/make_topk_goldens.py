#!/usr/bin/env python3
"""Goldens for which elements torch.topk keeps among equal values (CPU, largest=True), the choice
PEFT's magnitude pruning (ties, magnitude_prune, their _svd variants) inherits. Pinned torch from
tools/requirements.txt.

Writes fixtures/lora/topk/goldens.json: cases of small-integer values (many ties by design), k, and
the sorted indices torch.topk(values, k).indices returns. Covers both of torch's paths: std::nth_element
(k·64 > n) and std::partial_sort (k·64 ≤ n). A second run rewrites the file byte for byte.
"""
import json
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "lora" / "topk" / "goldens.json"
CASES = [(7, 3, 2), (64, 32, 3), (100, 50, 4), (1000, 500, 16), (1000, 10, 8), (4096, 2048, 16), (4096, 64, 5),
         (3000, 2999, 2), (500, 1, 3)]


def main() -> None:
    generator = torch.Generator().manual_seed(7)
    cases = []
    for n, k, levels in CASES:
        values = torch.randint(0, levels, (n,), generator=generator)
        indices = torch.topk(values.float(), k, largest=True).indices
        cases.append({"n": n, "k": k, "values": values.tolist(), "kept": sorted(indices.tolist())})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"generator": "tools/make_topk_goldens.py", "torch": torch.__version__, "cases": cases},
                              separators=(",", ":")) + "\n")
    print(f"wrote {OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main()
