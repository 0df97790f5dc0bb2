#!/usr/bin/env python3
"""Goldens for `ckpt-convert ADAPTER out.gguf --base BASE`: the LoRA GGUFs llama.cpp's own
convert_lora_to_gguf.py writes for the fixture adapters (pinned: the llama.cpp vendored in
llama-cpp-python 0.3.36, built by tools/build_llama_cpp.sh into .build/llama.cpp/src, with its
gguf-py), read back with that gguf-py.

Writes fixtures/lora/gguf/goldens.json: per case (adapter, base, --outtype) the metadata llama.cpp
reads (general.architecture, general.type, adapter.type, adapter.lora.alpha) and per tensor its
GGML type, ne and the sha256 of its data bytes. A second run rewrites the file byte for byte.

Usage: tools/make_lora_gguf_goldens.py      (after tools/build_llama_cpp.sh)
"""

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / ".build" / "llama.cpp" / "src"
sys.path.insert(0, str(SRC / "gguf-py"))
import gguf  # noqa: E402

FIX = REPO / "fixtures"
OUT = FIX / "lora" / "gguf" / "goldens.json"

CASES = [
    # Q and K rows permuted in lora_b, every linear layer, the default f32.
    ("llama-lora-all-linear", "models/tiny-llama", "f32"),
    ("llama-lora-all-linear", "models/tiny-llama", "f16"),
    # Q8_0: lora_a rows (64 inputs) quantize; lora_b rows (rank 8) fall back to F16.
    ("llama-lora-all-linear", "models/tiny-llama", "q8_0"),
    ("llama-lora-second", "models/tiny-llama", "bf16"),
    # rsLoRA and rank/alpha patterns: the converter writes the plain alpha; ckpt folds the rest into lora_b.
    ("llama-rslora-patterns", "models/tiny-llama", "f32"),
]


def main() -> None:
    cases = []
    with tempfile.TemporaryDirectory() as scratch:
        for adapter, base, outtype in CASES:
            out = Path(scratch) / f"{adapter}-{outtype}.gguf"
            subprocess.run([sys.executable, str(SRC / "convert_lora_to_gguf.py"), "--base", str(FIX / base), "--outtype", outtype,
                            "--outfile", str(out), str(FIX / "lora" / "adapters" / adapter)],
                           check=True, capture_output=True)
            reader = gguf.GGUFReader(out)
            metadata = {}
            for key in ("general.architecture", "general.type", "adapter.type", "adapter.lora.alpha"):
                field = reader.fields[key]
                metadata[key] = field.contents()
            tensors = {}
            for t in reader.tensors:
                tensors[t.name] = {
                    "type": t.tensor_type.name,
                    "ne": [int(n) for n in t.shape],
                    "sha256": hashlib.sha256(bytes(t.data.tobytes())).hexdigest(),
                }
            cases.append({"adapter": adapter, "base": base, "outtype": outtype, "metadata": metadata,
                          "tensors": dict(sorted(tensors.items()))})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"generator": "tools/make_lora_gguf_goldens.py",
                               "reference": "convert_lora_to_gguf.py of llama-cpp-python 0.3.36 (llama.cpp 0c1e570)",
                               "cases": cases}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main()
