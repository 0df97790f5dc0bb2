#!/usr/bin/env python3
"""A PEFT LoRA adapter for SmolLM2-135M, for the merge benchmark (tools/bench/run.py, section merge).

Usage: make_lora_adapter.py BASE_FOLDER OUT_FOLDER [SEED]   (the reference venv's python; SEED default 0)

r=16, lora_alpha=32, every attention and MLP projection (q,k,v,o,gate,up,down_proj), lora_dropout 0,
`init_lora_weights=False` so that B is not zero (nn.Linear's default uniform init for A and B: the
merge changes every targeted weight), seeded. Saved with `save_pretrained` (adapter_config.json +
adapter_model.safetensors; PEFT keeps the adapter in float32 over a bf16 base, as it trains it).
Written to OUT_FOLDER.partial and renamed, so an interrupted run leaves nothing half-made.
"""

import shutil
import sys
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 64
    base, out = sys.argv[1], Path(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) == 4 else 0
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    config = LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS, lora_dropout=0.0, bias="none",
                        task_type="CAUSAL_LM", init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(str(partial))
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
