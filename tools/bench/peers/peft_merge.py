#!/usr/bin/env python3
"""The job of `ckpt-merge-lora BASE ADAPTER OUT`, the way people do it with PEFT.

Usage: peft_merge.py BASE_FOLDER ADAPTER_FOLDER OUT_FOLDER   (the reference venv's python)

`PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=bfloat16), adapter)
.merge_and_unload()` then `save_pretrained(out)` (safetensors). Prints one JSON line: the import
time (torch, transformers, peft) and the work after it, split into load, merge and save.
"""

import json
import sys
import time

start = time.perf_counter()
import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

imported = time.perf_counter()
base, adapter, out = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
model = PeftModel.from_pretrained(model, adapter)
loaded = time.perf_counter()
merged = model.merge_and_unload()
merged_at = time.perf_counter()
merged.save_pretrained(out, safe_serialization=True)
done = time.perf_counter()
print(json.dumps({"import_seconds": imported - start, "work_seconds": done - imported, "load_seconds": loaded - imported,
                  "merge_seconds": merged_at - loaded, "save_seconds": done - merged_at,
                  "torch_threads": torch.get_num_threads()}))
