#!/usr/bin/env python3
"""Checks that pack-quantized folders ckpt wrote load in transformers + compressed-tensors (pinned,
tools/requirements.txt) and compute what ckpt's own dequantization computes.

For each FOLDER given with its dequantized twin (`ckpt-dequantize FOLDER FOLDER-deq --dtype bf16`):
loads FOLDER with CompressedTensorsConfig(run_compressed=False) and FOLDER-deq as a plain bf16
model, compares every weight bit for bit and the f32 logits on the first 64 fixture eval tokens,
and prints one line per folder. Exit 1 on any difference.

Usage: tools/check_w4a16_loads.py FOLDER [FOLDER ...]
"""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import fixture_common as fc  # noqa: E402,F401  (pins the environment before torch)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402


def main():
    tokens = np.fromfile(TOOLS.parent / "fixtures" / "eval" / "eval_tokens_u32le.bin", dtype="<u4")[:64].astype(np.int64)
    ids = torch.tensor(tokens)[None, :]
    failed = False
    for folder in sys.argv[1:]:
        quantized = transformers.AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.bfloat16, attn_implementation="eager",
            quantization_config=transformers.CompressedTensorsConfig(run_compressed=False))
        plain = transformers.AutoModelForCausalLM.from_pretrained(folder + "-deq", dtype=torch.bfloat16, attn_implementation="eager")
        q_state, p_state = quantized.state_dict(), plain.state_dict()
        differing = [k for k in p_state if k in q_state and not torch.equal(q_state[k], p_state[k])]
        missing = [k for k in p_state if k not in q_state]
        with torch.no_grad():
            a = quantized.float()(ids).logits
            b = plain.float()(ids).logits
        worst = (a - b).abs().max().item()
        ok = not differing and not missing and worst == 0.0
        failed |= not ok
        print(f"{folder}: {len(p_state)} tensors, {len(differing)} differ, {len(missing)} missing; max |Δlogit| {worst:.3g} "
              f"({'ok' if ok else 'DIFFERENT'})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
