#!/usr/bin/env python3
"""The job of `ckpt-merge-lora BASE A1 OUT --adapter A2 --adapter A3 --combination ties --density 0.5`,
the way people do it with PEFT.

Usage: peft_combine_merge.py BASE_FOLDER OUT_FOLDER ADAPTER...   (the reference venv's python)

Loads the base in bf16 and every adapter into one PeftModel, `add_weighted_adapter(names, [1]*n,
"combined", combination_type="ties", density=0.5)`, `merge_and_unload(adapter_names=["combined"])`,
`save_pretrained(out)` (safetensors). Prints one JSON line: import time and the work after it.
"""

import json
import sys
import time

start = time.perf_counter()
import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

imported = time.perf_counter()
base, out, adapters = sys.argv[1], sys.argv[2], sys.argv[3:]
names = [f"a{i}" for i in range(len(adapters))]
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
model = PeftModel.from_pretrained(model, adapters[0], adapter_name=names[0])
for name, folder in zip(names[1:], adapters[1:]):
    model.load_adapter(folder, adapter_name=name)
loaded = time.perf_counter()
model.add_weighted_adapter(names, [1.0] * len(names), "combined", combination_type="ties", density=0.5)
model.set_adapter("combined")
merged = model.merge_and_unload(adapter_names=["combined"])
merged_at = time.perf_counter()
merged.save_pretrained(out, safe_serialization=True)
done = time.perf_counter()
print(json.dumps({"import_seconds": imported - start, "work_seconds": done - imported, "load_seconds": loaded - imported,
                  "combine_merge_seconds": merged_at - loaded, "save_seconds": done - merged_at,
                  "torch_threads": torch.get_num_threads()}))
