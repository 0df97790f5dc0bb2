#!/usr/bin/env python3
"""Compares two merged checkpoints tensor by tensor (ckpt-merge-lora's output beside PEFT's).

Usage: compare_merged.py A/model.safetensors B/model.safetensors

Prints one JSON document: for the tensors both files hold, how many are bit-identical, and over
the others the number of differing elements, the largest absolute difference, and the largest
difference in units of the last place of the dtype (bf16: 2⁻⁷ relative), with the five worst
tensors. Names only one file holds are listed (PEFT's save drops nothing SmolLM2 has; a tied
lm_head is in neither).
"""

import json
import sys

import torch
from safetensors import safe_open


def ulp_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|x − y| in ulps of the storage dtype: the distance between the two bit patterns on the
    ordered integer line (bf16/f16: 16-bit; f32: 32-bit)."""
    bits = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}[x.dtype]
    def ordered(t: torch.Tensor) -> torch.Tensor:
        i = t.view(bits).to(torch.int64)
        sign = 1 << (8 * t.element_size() - 1)
        return torch.where(i < 0, -(i + sign), i)  # negative floats count down from -0
    return (ordered(x) - ordered(y)).abs()


def main() -> int:
    a_path, b_path = sys.argv[1], sys.argv[2]
    result = {"compared": 0, "identical": 0, "differing_tensors": 0, "elements": 0, "differing_elements": 0,
              "max_abs_diff": 0.0, "max_ulps": 0, "worst": [], "dtype_mismatch": [], "only_first": [], "only_second": []}
    worst = []
    with safe_open(a_path, framework="pt") as a, safe_open(b_path, framework="pt") as b:
        names_a, names_b = set(a.keys()), set(b.keys())
        result["only_first"], result["only_second"] = sorted(names_a - names_b), sorted(names_b - names_a)
        for name in sorted(names_a & names_b):
            x, y = a.get_tensor(name), b.get_tensor(name)
            result["compared"] += 1
            if x.dtype != y.dtype or x.shape != y.shape:
                result["dtype_mismatch"].append(f"{name}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}")
                continue
            result["elements"] += x.numel()
            differ = x.view(-1).view(torch.uint8 if x.element_size() == 1 else {2: torch.int16, 4: torch.int32}[x.element_size()]) \
                != y.view(-1).view(torch.uint8 if y.element_size() == 1 else {2: torch.int16, 4: torch.int32}[y.element_size()])
            count = int(differ.sum())
            if count == 0:
                result["identical"] += 1
                continue
            result["differing_tensors"] += 1
            result["differing_elements"] += count
            diff = float((x.float() - y.float()).abs().max())
            ulps = int(ulp_distance(x.reshape(-1), y.reshape(-1)).max()) if x.is_floating_point() else -1
            result["max_abs_diff"] = max(result["max_abs_diff"], diff)
            result["max_ulps"] = max(result["max_ulps"], ulps)
            worst.append({"name": name, "elements": x.numel(), "differing": count, "max_abs_diff": diff, "max_ulps": ulps})
    result["worst"] = sorted(worst, key=lambda w: -w["differing"])[:5]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
