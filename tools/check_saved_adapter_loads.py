#!/usr/bin/env python3
"""Checks that an adapter folder written by `ckpt-merge-lora --combination … --save-adapter` loads in
PEFT (pinned, tools/requirements.txt) as a user loads it, and that PEFT merging it gives what ckpt
merges from it.

Usage: tools/check_saved_adapter_loads.py BASE ADAPTER_DIR...   (the reference venv's python; a release build)

For each combination method in METHODS: ckpt combines the adapters and saves the result; PEFT loads
the base (bf16) and that folder with `PeftModel.from_pretrained`, `merge_and_unload()`s it and the
script compares every tensor with `ckpt-merge-lora BASE SAVED OUT`'s. Prints one line per method and
exits 1 when PEFT refuses a folder or a merged tensor differs by more than one bf16 step.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import safetensors.torch
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

REPO = Path(__file__).resolve().parent.parent
MERGE = REPO / ".build" / "release" / "ckpt-merge-lora"
METHODS = [("linear", []), ("cat", []), ("ties", ["--density", "0.5"]), ("magnitude_prune", ["--density", "0.5"]),
           ("dare_linear", ["--density", "0.5"]), ("svd", []), ("ties_svd", ["--density", "0.5"])]


def main() -> int:
    base, adapters = sys.argv[1], sys.argv[2:]
    if not adapters:
        print(__doc__, file=sys.stderr)
        return 64
    failed = False
    with tempfile.TemporaryDirectory() as scratch:
        for method, extra in METHODS:
            saved, ours = Path(scratch) / f"{method}-adapter", Path(scratch) / f"{method}-merged"
            more = [a for adapter in adapters[1:] for a in ("--adapter", adapter)]
            subprocess.run([str(MERGE), base, adapters[0], str(saved), *more, "--combination", method, *extra, "--save-adapter",
                            "--quiet"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run([str(MERGE), base, str(saved), str(ours), "--quiet"], check=True, stdout=subprocess.DEVNULL)
            try:
                model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
                merged = PeftModel.from_pretrained(model, str(saved)).merge_and_unload()
            except Exception as error:  # noqa: BLE001 - any refusal is the finding
                print(f"{method}: PEFT refused the saved adapter: {error}")
                failed = True
                continue
            state = {k: v for k, v in merged.state_dict().items()}
            mine = {}
            for file in sorted(ours.glob("*.safetensors")):
                mine.update(safetensors.torch.load_file(file))
            worst = 0.0
            for name, value in mine.items():
                reference = state[name].float()
                step = reference.abs().clamp(min=1e-30) * 2.0 ** -8
                worst = max(worst, float(((value.float() - reference).abs() / step).max()))
            verdict = "ok" if worst <= 1.0 else "DIFFERS"
            failed |= worst > 1.0
            print(f"{method}: PEFT loads it; merged by PEFT vs ckpt: at most {worst:.2f} bf16 steps apart ({verdict})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
