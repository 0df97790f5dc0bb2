#!/usr/bin/env python3
"""Goldens for ckpt's GGML quantizers (K-quants, IQ4, the 32-value types), made by llama.cpp itself.

Writes fixtures/kquants/goldens.safetensors: F32 `input` [rows, 512] (rows chosen to reach every
branch: ordinary weights, heavy tails, one sign only, all-zero blocks and sub-blocks, constants,
values below llama.cpp's 1e-15 group threshold, values whose scales overflow f16, exact rounding
ties, spikes, sparse rows, bf16-rounded rows), F32 `importance` [512] (an imatrix: positive, with
zeros and outliers), and for every type T the U8 bytes `T` (no imatrix) and `T.imatrix`, each
from `ggml_quantize_chunk` - the function llama-quantize calls - in the pinned llama.cpp build
(tools/build_llama_cpp.sh: llama-cpp-python 0.3.36, llama.cpp 0c1e570), through the small C
harness tools/kquant_golden_harness.c linked against its libggml-base.a; and F32
`T.imatrix.decoded`, those bytes decoded by the vendored gguf-py.

Usage: .venv/bin/python tools/make_kquant_goldens.py   (about 10 seconds after the llama.cpp build)
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "fixtures" / "kquants"
LLAMA = REPO / ".build" / "llama.cpp"
TYPES = {"Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13,
         "Q6_K": 14, "IQ4_NL": 20, "IQ4_XS": 23}
N_PER_ROW = 512


def inputs() -> np.ndarray:
    rng = np.random.default_rng(20261130)
    rows = []
    g = lambda s=0.02: rng.normal(0, s, N_PER_ROW)
    rows += [g() for _ in range(6)]                                            # ordinary weights
    rows += [rng.standard_t(2, N_PER_ROW) * 0.01 for _ in range(2)]            # heavy tails
    rows.append(rng.uniform(0, 1, N_PER_ROW))                                  # positive only
    rows.append(-rng.uniform(0, 1, N_PER_ROW))                                 # negative only
    rows.append(np.zeros(N_PER_ROW))                                           # all zero
    r = g(); r[:256] = 0; rows.append(r)                                       # a zero super-block
    r = g(); r.reshape(-1, 16)[::2] = 0; rows.append(r)                        # every other 16 zero
    r = g(); r.reshape(-1, 32)[1::3] = 0; rows.append(r)                       # some 32-blocks zero
    rows.append(np.full(N_PER_ROW, 0.5))                                       # constant
    r = g(); r.reshape(-1, 32)[::2] *= 1e-17; rows.append(r)                   # below 1e-15
    rows.append(g() * 1e-6)                                                    # small but normal
    rows.append(g() * 3e6)                                                     # scales beyond f16
    rows.append(rng.integers(-8, 9, N_PER_ROW) * 0.125)                        # exact ties
    rows.append(rng.integers(0, 4, N_PER_ROW) * 0.25 - 0.375)                  # ties, 2-bit grid
    r = np.zeros(N_PER_ROW); r[::32] = rng.normal(0, 1, N_PER_ROW // 32); rows.append(r)   # spikes
    r = g(); r[rng.uniform(size=N_PER_ROW) < 0.9] = 0; rows.append(r)          # sparse
    r = g().astype(np.float32).view(np.uint32) & 0xFFFF0000; rows.append(r.view(np.float32))  # bf16 values
    r = g(); r[7] = 1.0; rows.append(r)                                        # one outlier
    for scale in (1e-3, 1e-1, 1.0, 10.0):                                      # a scale per 32-block
        rows.append(g(1) * np.repeat(rng.uniform(scale / 10, scale, N_PER_ROW // 32), 32))
    r = np.abs(g()); rows.append(r)                                            # |N|: min > 0 branch
    r = g(); r[r < 0] *= 0.01; rows.append(r)                                  # skewed
    rows.append(np.linspace(-1, 1, N_PER_ROW))                                 # ramp
    rows.append(g(0.02) + 0.05)                                                # offset
    return np.stack(rows).astype(np.float32)


def importance() -> np.ndarray:
    rng = np.random.default_rng(7)
    w = rng.chisquare(2, N_PER_ROW) * 0.5
    w[rng.uniform(size=N_PER_ROW) < 0.05] = 0
    w[::97] *= 50
    return w.astype(np.float32)


def main():
    global quants, GGMLQuantizationType
    subprocess.run([str(REPO / "tools" / "build_llama_cpp.sh")], check=True, stdout=sys.stderr)
    sys.path.insert(0, str(LLAMA / "src" / "gguf-py"))
    from gguf import GGMLQuantizationType, quants  # noqa: E402  (the vendored copy, pinned with llama.cpp)
    x, qw = inputs(), importance()
    tensors = {"input": x, "importance": qw}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        harness = tmp / "harness"
        subprocess.run(["gcc", "-O2", "-o", str(harness), str(REPO / "tools" / "kquant_golden_harness.c"),
                        str(LLAMA / "build" / "ggml" / "src" / "libggml-base.a"), "-lm", "-lpthread", "-lstdc++", "-fopenmp"], check=True)
        x.tofile(tmp / "x.f32")
        qw.tofile(tmp / "qw.f32")
        for name, type_id in TYPES.items():
            for suffix, matrix in (("", "-"), (".imatrix", str(tmp / "qw.f32"))):
                out = tmp / "out.bin"
                subprocess.run([str(harness), str(type_id), str(len(x)), str(N_PER_ROW), str(tmp / "x.f32"), matrix, str(out)],
                               check=True)
                tensors[name + suffix] = np.frombuffer(out.read_bytes(), dtype=np.uint8).copy()
            # The decode, by the vendored gguf-py (numpy re-implementation of ggml's dequantize).
            tensors[name + ".imatrix.decoded"] = quants.dequantize(tensors[name + ".imatrix"], getattr(GGMLQuantizationType, name)) \
                .astype(np.float32).reshape(len(x), N_PER_ROW)
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(OUT / "goldens.safetensors"),
              metadata={"generator": "tools/make_kquant_goldens.py", "llama.cpp": "0c1e570 (llama-cpp-python 0.3.36)",
                        "n_per_row": str(N_PER_ROW), "types": json.dumps(TYPES)})
    print(f"wrote {OUT / 'goldens.safetensors'}: {len(x)} rows of {N_PER_ROW}, {len(TYPES)} types x (plain, imatrix)", file=sys.stderr)


if __name__ == "__main__":
    main()
