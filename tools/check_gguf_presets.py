#!/usr/bin/env python3
"""Checks `ckpt-convert --to gguf --type PRESET` against llama.cpp on a real model: for each
preset (and, with --imatrix, each preset again with it), ckpt writes the GGUF straight from the
Hugging Face folder, llama-quantize (pinned) writes it from the BF16 GGUF that llama.cpp's own
convert_hf_to_gguf.py made of the same folder, and every tensor's type and data are compared.

Usage: .venv/bin/python tools/check_gguf_presets.py MODEL_DIR BF16_GGUF [--imatrix FILE] [--ckpt BIN] [PRESET ...]
Prints one line per preset ("identical: N tensors" or the first differences); exit 1 on any difference.
"""

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LLAMA = REPO / ".build" / "llama.cpp"
sys.path.insert(0, str(LLAMA / "src" / "gguf-py"))
from gguf import GGUFReader  # noqa: E402

DEFAULT = ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k",
           "iq4_nl", "iq4_xs"]


def table(path):
    return {t.name: (t.tensor_type.name, hashlib.sha256(bytes(t.data.tobytes())).hexdigest()) for t in GGUFReader(str(path)).tensors}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("bf16_gguf")
    ap.add_argument("--imatrix")
    ap.add_argument("--ckpt", default=str(REPO / ".build" / "release" / "ckpt-convert"))
    ap.add_argument("presets", nargs="*")
    args = ap.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets or DEFAULT:
            ours, theirs = Path(tmp) / "ours.gguf", Path(tmp) / "theirs.gguf"
            extra = ["--imatrix", args.imatrix] if args.imatrix else []
            subprocess.run([args.ckpt, args.model, str(ours), "--type", preset, "--force", "--quiet", *extra], check=True)
            subprocess.run([str(LLAMA / "bin" / "llama-quantize"), *extra, args.bf16_gguf, str(theirs), preset.upper(), "2"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            a, b = table(ours), table(theirs)
            diffs = [n for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n)]
            label = preset + (" + imatrix" if args.imatrix else "")
            if diffs:
                failed = True
                print(f"{label}: {len(diffs)} of {len(b)} tensors differ, e.g. " +
                      ", ".join(f"{n} ours {a.get(n, ('-',))[0]} theirs {b.get(n, ('-',))[0]}" for n in diffs[:3]))
            else:
                print(f"{label}: identical, {len(b)} tensors")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
