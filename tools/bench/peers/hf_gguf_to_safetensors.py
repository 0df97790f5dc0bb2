#!/usr/bin/env python3
"""GGUF → Hugging Face folder with transformers, the job of `ckpt-convert X.gguf OUT --type bf16`.

Usage: hf_gguf_to_safetensors.py FILE.gguf OUT_FOLDER   (the reference venv's python)

`AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=bfloat16)` (transformers'
GGUF loader dequantizes with the pinned `gguf` package, un-permutes Q/K) and `save_pretrained`
(safetensors), plus the tokenizer the GGUF carries (`AutoTokenizer.from_pretrained(dir,
gguf_file=...)` + `save_pretrained`), since ckpt-convert writes tokenizer.json too. The loader
marks the model "quantized with gguf", which `save_pretrained` refuses, though the weights are
plain tensors by then: the quantizer is detached first (as tools/smollm2_to_safetensors.py does).
Prints one JSON line: import time, model (load + save) and tokenizer (load + save) times.
"""

import json
import sys
import time
from pathlib import Path

start = time.perf_counter()
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

imported = time.perf_counter()
gguf, out = Path(sys.argv[1]).resolve(), sys.argv[2]
model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
model.hf_quantizer = None
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
loaded = time.perf_counter()
model.save_pretrained(out, safe_serialization=True)
saved = time.perf_counter()
tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
tokenizer.save_pretrained(out)
done = time.perf_counter()
print(json.dumps({"import_seconds": imported - start, "work_seconds": done - imported,
                  "model_load_seconds": loaded - imported, "model_save_seconds": saved - loaded,
                  "tokenizer_seconds": done - saved, "dtype": str(next(model.parameters()).dtype)}))
