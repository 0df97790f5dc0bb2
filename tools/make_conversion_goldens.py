#!/usr/bin/env python3
"""Golden files for ckpt's conversion paths (ckpt issue 6): the GGUF reader and its dequantizers,
GGUF -> Hugging Face folder (llama family), PyTorch `pytorch_model.bin` (torch.save zip + pickle),
and safetensors -> GGUF (F32, F16, BF16, Q8_0, Q4_0). Made by the pinned reference stack
(tools/requirements.txt: gguf-py 0.19.0, torch, transformers, safetensors).

Run by tools/make_fixtures.sh after tools/make_fixtures.py (it needs fixtures/models/tiny-llama).
The output is a pure function of this script, the pinned wheels and that model: a second run
rewrites every file byte for byte. At the end it rewrites fixtures/SHA256SUMS the way
make_fixtures.py does, so the sums cover these files too.

Writes fixtures/convert/:
  quants.safetensors + quants.json   gguf-py quantize/dequantize goldens for F16 BF16 Q8_0 Q4_0 Q4_1
                                     Q5_0 Q5_1 (awkward inputs) and dequantize-only goldens of raw
                                     blocks (every type, K-quants included)
  tiny-llama.gguf                    fixtures/models/tiny-llama written as convert_hf_to_gguf.py does
                                     (Q/K rows permuted, gpt2 BPE vocabulary), one GGML type per
                                     tensor group so every supported type appears (F32 F16 BF16 Q8_0
                                     Q4_0 Q4_1 Q5_0 Q5_1)
  micro-llama-tied.gguf              a 1-layer tied-embedding llama, exactly as convert_hf_to_gguf.py
                                     writes it with its default --outtype (bf16); no output.weight
  gguf.json                          metadata, tensor infos and the expected Hugging Face tensors
                                     (sha256 after dequantize + inverse permutation), tokenizer ids,
                                     what transformers' GGUF loader gives, and the per-tensor bytes
                                     of safetensors -> GGUF in f32/f16/bf16/q8_0/q4_0
  gguf_reader/                       small valid files for the reader: every metadata value type,
                                     every tensor type, alignment 64, version 2 + manifest.json
  gguf_bad/                          hand-built hostile GGUF files + manifest.json
  pytorch/                           torch.save files: every dtype, views, shared storage, a micro
                                     llama (single file and two shards + index) + manifest.json
  pickles_bad/                       torch.save-style zips with forbidden globals, a truncated zip,
                                     a bad CRC-32, a deflated member + manifest.json
  README.md                          the exact formats and formulas, with gguf-py source lines

Every quantization golden is also recomputed by the plain numpy reference implementation below
(`ref_quantize` / `ref_dequantize`, which is what README.md describes), on the goldens and on a
larger random sweep that is not stored; the script stops if a single byte or bit differs.

Options: --out DIR (default <repo>/fixtures). --only SECTIONS is accepted so that
tools/make_fixtures.sh can pass its own arguments through: this script runs only when --only is
absent or names the 'models' section.
"""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

# First, before torch is imported: pins the environment for determinism (see fixture_common.py).
import fixture_common as fc  # noqa: E402
from fixture_common import log  # noqa: E402,F401

fc.pin_environment(TQDM_DISABLE="1")

import argparse  # noqa: E402
import collections  # noqa: E402
import hashlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import pickletools  # noqa: E402
import shutil  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
import zlib  # noqa: E402

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import safetensors.numpy  # noqa: E402
import safetensors.torch  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

logging.getLogger("gguf").setLevel(logging.ERROR)
logging.getLogger("gguf.gguf_writer").setLevel(logging.ERROR)
import gguf  # noqa: E402
import gguf.quants as gq  # noqa: E402
import gguf.utility  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402
from gguf import GGUFValueType as VT  # noqa: E402

REPO = TOOLS.parent
LLAMA = Path("models") / "tiny-llama"
F32 = np.float32
U8 = np.uint8

LEGACY = [QT.F16, QT.BF16, QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1]
KQUANTS = [QT.Q2_K, QT.Q3_K, QT.Q4_K, QT.Q5_K, QT.Q6_K]
SUPPORTED = [QT.F32] + LEGACY + KQUANTS


def sha(b) -> str:
    return hashlib.sha256(bytes(b)).hexdigest()


def nbytes_of(qt, n_elements: int) -> int:
    bs, ts = gguf.GGML_QUANT_SIZES[qt]
    assert n_elements % bs == 0
    return n_elements // bs * ts


def compact_json(obj) -> str:
    """Indented JSON, but lists of scalars kept on one line (readable and small)."""
    def enc(o, ind):
        pad = "  " * ind
        if isinstance(o, dict):
            if not o:
                return "{}"
            items = [f'{pad}  {json.dumps(k, ensure_ascii=False)}: {enc(v, ind + 1)}' for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list):
            if all(not isinstance(v, (dict, list)) for v in o):
                return json.dumps(o, ensure_ascii=False)
            items = [f"{pad}  {enc(v, ind + 1)}" for v in o]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return json.dumps(o, ensure_ascii=False)
    return enc(obj, 0)


def write_json(path: Path, obj):
    assert json.loads(compact_json(obj)) == json.loads(json.dumps(obj))
    fc.write_text(path, compact_json(obj) + "\n")


def src_ref(obj) -> str:
    """'gguf/quants.py:381-393' for a function of the pinned gguf-py (or other package)."""
    lines, start = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj))
    site = path.parents[1] if path.parent.name == "gguf" else path.parents[len(path.parents) - 1]
    rel = path.relative_to(site) if path.is_relative_to(site) else path.name
    return f"{rel}:{start}-{start + len(lines) - 1}"


def f32_bits(x) -> str:
    return f"0x{int(np.asarray(x, F32).view(np.uint32)):08x}"


# ---------------------------------------------------------------------------
# deterministic random numbers: PCG64 integers / float32 uniforms only (bit operations, no libm),
# so the values do not depend on the machine's math library.


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def bell(g: np.random.Generator, n: int) -> np.ndarray:
    """Roughly bell-shaped float32 in (-2, 2): the sum of four uniforms, centred."""
    u = g.random((4, n), dtype=F32)
    return (u.sum(axis=0, dtype=F32) - F32(2)).astype(F32)


# ---------------------------------------------------------------------------
# reference quantizers and dequantizers: what README.md describes, written independently of
# gguf-py's numpy code (element by element index arithmetic, C roundf, float32 throughout).


def fp16_bits(v) -> np.ndarray:
    """float32 -> IEEE binary16 bits, round to nearest even (numpy's cast, as gguf-py uses)."""
    with np.errstate(over="ignore"):
        return np.asarray(v, F32).astype(np.float16).view(np.uint16)


def fp16_value(bits) -> np.ndarray:
    return np.asarray(bits, np.uint16).view(np.float16).astype(F32)


def c_roundf(v: np.ndarray) -> np.ndarray:
    """C roundf: nearest integer, halfway cases away from zero; exact for every float32."""
    t = np.trunc(v)
    frac = v - t  # exact
    return (t + np.where(np.abs(frac) >= F32(0.5), np.sign(v), F32(0))).astype(F32)


def recip(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(d == 0, F32(0), F32(1) / d).astype(F32)


def first_absmax(blocks: np.ndarray) -> np.ndarray:
    """The signed value of the first element with the largest |x| in each block."""
    out = np.empty(blocks.shape[0], F32)
    for i, b in enumerate(blocks):
        a = np.abs(b)
        j = next(k for k in range(len(b)) if a[k] == a.max())
        out[i] = b[j]
    return out


def le16(bits: np.ndarray) -> np.ndarray:
    bits = np.asarray(bits, np.uint16)
    return np.stack([(bits & 0xFF).astype(U8), (bits >> 8).astype(U8)], axis=-1)


def pack_nibbles(q: np.ndarray) -> np.ndarray:
    """q [n, 32] -> [n, 16]: byte j = q[j] (low nibble) | q[j+16] (high nibble)."""
    return ((q[:, :16] & 0x0F) | ((q[:, 16:] & 0x0F) << 4)).astype(U8)


def qh_bytes(q: np.ndarray) -> np.ndarray:
    """Bit 4 of q[j] -> bit j of a little-endian uint32."""
    word = np.zeros(q.shape[0], np.uint64)
    for j in range(32):
        word |= ((q[:, j].astype(np.uint64) >> 4) & 1) << np.uint64(j)
    return np.stack([((word >> np.uint64(8 * k)) & 0xFF).astype(U8) for k in range(4)], axis=-1)


def ref_quantize(qt, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, F32)
    rows = x.reshape(-1, x.shape[-1])
    if qt == QT.F32:
        return rows.view(U8).reshape(x.shape[:-1] + (-1,))
    if qt == QT.F16:
        return fp16_bits(rows).view(U8).reshape(x.shape[:-1] + (-1,))
    if qt == QT.BF16:
        n = rows.view(np.uint32).astype(np.uint64)
        nan = (n & 0x7FFFFFFF) > 0x7F800000
        n = np.where(nan, (n & 0xFFFF0000) | 0x00400000, n)
        n = (n + 0x7FFF + ((n >> 16) & 1)) >> 16
        return n.astype(np.uint16).view(U8).reshape(x.shape[:-1] + (-1,))
    blocks = rows.reshape(-1, 32)
    if qt == QT.Q8_0:
        d = (np.abs(blocks).max(axis=1) / F32(127)).astype(F32)
        q = c_roundf(blocks * recip(d)[:, None]).astype(np.int8).view(U8)
        out = np.concatenate([le16(fp16_bits(d)), q], axis=1)
    elif qt in (QT.Q4_0, QT.Q5_0):
        levels, half = (8, 15) if qt == QT.Q4_0 else (16, 31)
        d = (first_absmax(blocks) / F32(-levels)).astype(F32)
        v = np.trunc(blocks * recip(d)[:, None] + F32(levels + 0.5))
        q = np.clip(v, 0, half).astype(U8)
        parts = [le16(fp16_bits(d))] + ([qh_bytes(q)] if qt == QT.Q5_0 else []) + [pack_nibbles(q)]
        out = np.concatenate(parts, axis=1)
    elif qt in (QT.Q4_1, QT.Q5_1):
        top = 15 if qt == QT.Q4_1 else 31
        mx, mn = blocks.max(axis=1), blocks.min(axis=1)
        d = ((mx - mn) / F32(top)).astype(F32)
        v = np.trunc((blocks - mn[:, None]) * recip(d)[:, None] + F32(0.5))
        q = np.clip(v, 0, top).astype(U8)
        parts = [le16(fp16_bits(d)), le16(fp16_bits(mn))] + ([qh_bytes(q)] if qt == QT.Q5_1 else []) + [pack_nibbles(q)]
        out = np.concatenate(parts, axis=1)
    else:
        raise NotImplementedError(qt.name)
    return out.reshape(x.shape[:-1] + (-1,))


def f16_at(blk: np.ndarray, off: int) -> np.ndarray:
    return fp16_value(blk[:, off].astype(np.uint16) | (blk[:, off + 1].astype(np.uint16) << 8))


def ref_dequantize(qt, raw: np.ndarray) -> np.ndarray:
    raw = np.ascontiguousarray(raw, U8)
    bs, ts = gguf.GGML_QUANT_SIZES[qt]
    if qt == QT.F32:
        return raw.view(F32).reshape(raw.shape[:-1] + (-1,))
    if qt == QT.F16:
        return raw.view(np.float16).astype(F32).reshape(raw.shape[:-1] + (-1,))
    if qt == QT.BF16:
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(F32).reshape(raw.shape[:-1] + (-1,))
    blk = raw.reshape(-1, ts)
    n = blk.shape[0]
    p = np.arange(bs)
    if qt == QT.Q8_0:
        y = f16_at(blk, 0)[:, None] * blk[:, 2:].view(np.int8).astype(F32)
    elif qt in (QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1):
        d = f16_at(blk, 0)[:, None]
        m = f16_at(blk, 2)[:, None] if qt in (QT.Q4_1, QT.Q5_1) else None
        qs_off = {QT.Q4_0: 2, QT.Q4_1: 4, QT.Q5_0: 6, QT.Q5_1: 8}[qt]
        qs = blk[:, qs_off + (p % 16)]
        q = ((qs >> np.where(p < 16, 0, 4)) & 0x0F).astype(np.int32)
        if qt in (QT.Q5_0, QT.Q5_1):
            qh_off = qs_off - 4
            word = sum(blk[:, qh_off + k].astype(np.uint32) << (8 * k) for k in range(4))
            q |= (((word[:, None] >> p.astype(np.uint32)) & 1) << 4).astype(np.int32)
        if qt == QT.Q4_0:
            y = d * (q - 8).astype(F32)
        elif qt == QT.Q5_0:
            y = d * (q - 16).astype(F32)
        else:
            y = (d * q.astype(F32)) + m
    elif qt == QT.Q2_K:
        scales, qs = blk[:, 0:16], blk[:, 16:80]
        d, dmin = f16_at(blk, 80)[:, None], f16_at(blk, 82)[:, None]
        sub = p // 16
        q = (qs[:, (p // 128) * 32 + p % 32] >> (2 * ((p % 128) // 32))) & 3
        dl = d * (scales[:, sub] & 0x0F).astype(F32)
        ml = dmin * (scales[:, sub] >> 4).astype(F32)
        y = dl * q.astype(F32) - ml
    elif qt == QT.Q3_K:
        hmask, qs, sc12 = blk[:, 0:32], blk[:, 32:96], blk[:, 96:108]
        d = f16_at(blk, 108)[:, None]
        j = np.arange(16)
        low = (sc12[:, j % 8] >> (4 * (j // 8))) & 0x0F
        high = (sc12[:, 8 + j % 4] >> (2 * (j // 4))) & 0x03
        sc = (low | (high << 4)).astype(np.int32) - 32
        ql = (qs[:, (p // 128) * 32 + p % 32] >> (2 * ((p % 128) // 32))) & 3
        hbit = (hmask[:, p % 32] >> (p // 32)) & 1
        q = ql.astype(np.int32) - 4 * (1 - hbit.astype(np.int32))
        y = (d * sc.astype(F32))[:, p // 16] * q.astype(F32)
    elif qt in (QT.Q4_K, QT.Q5_K):
        d, dmin, s = f16_at(blk, 0)[:, None], f16_at(blk, 2)[:, None], blk[:, 4:16]
        sc = np.empty((n, 8), np.int32)
        mn = np.empty((n, 8), np.int32)
        for j in range(8):
            if j < 4:
                sc[:, j], mn[:, j] = s[:, j] & 63, s[:, j + 4] & 63
            else:
                sc[:, j] = (s[:, j + 4] & 0x0F) | ((s[:, j - 4] >> 6) << 4)
                mn[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
        sub = p // 32
        qs_off = 16 if qt == QT.Q4_K else 48
        qs = blk[:, qs_off + (sub // 2) * 32 + p % 32]
        q = ((qs >> (4 * (sub % 2))) & 0x0F).astype(np.int32)
        if qt == QT.Q5_K:
            qh = blk[:, 16 + p % 32]
            q |= (((qh >> sub) & 1) << 4).astype(np.int32)
        dj = (d * sc.astype(F32))[:, sub]
        mj = (dmin * mn.astype(F32))[:, sub]
        y = dj * q.astype(F32) - mj
    elif qt == QT.Q6_K:
        ql, qh = blk[:, 0:128], blk[:, 128:192]
        sc = blk[:, 192:208].view(np.int8).astype(F32)
        d = f16_at(blk, 208)[:, None]
        h = p // 128
        lo = (ql[:, h * 64 + p % 64] >> (4 * ((p % 128) // 64))) & 0x0F
        hi = (qh[:, h * 32 + p % 32] >> (2 * ((p % 128) // 32))) & 0x03
        q = (lo | (hi << 4)).astype(np.int32) - 32
        y = (d * sc)[:, p // 16] * q.astype(F32)
    else:
        raise NotImplementedError(qt.name)
    return np.asarray(y, F32).reshape(raw.shape[:-1] + (-1,)) if raw.ndim > 1 else np.asarray(y, F32).reshape(-1)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def gguf_py_quantize(qt, x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        q = gq.quantize(x, qt)
    return np.ascontiguousarray(q).view(U8) if q.dtype != U8 else q


def gguf_py_dequantize(qt, raw: np.ndarray) -> np.ndarray:
    return np.asarray(gq.dequantize(raw, qt), F32)


# ---------------------------------------------------------------------------
# quants: quantize / dequantize goldens


# fp16 fields of every block layout (byte offsets), for the random raw blocks.
FP16_FIELDS = {
    QT.Q8_0: [0], QT.Q4_0: [0], QT.Q4_1: [0, 2], QT.Q5_0: [0], QT.Q5_1: [0, 2],
    QT.Q2_K: [80, 82], QT.Q3_K: [108], QT.Q4_K: [0, 2], QT.Q5_K: [0, 2], QT.Q6_K: [208],
}
# 1, -1, +0, -0, smallest subnormal, largest subnormal, smallest normal, 65504, -65504, ~0.1,
# -smallest subnormal, 2^-10: every class of finite binary16 value.
FP16_SPECIAL = [0x3C00, 0xBC00, 0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x2E66, 0x8001, 0x1400]


def tie_block(qt, variant: int, g) -> np.ndarray:
    """Blocks whose scaled values land on or next to a rounding boundary, per type."""
    if qt == QT.Q8_0:
        if variant == 0:   # absmax 127 -> d = 1, id = 1: x itself is rounded
            v = [127.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5, 0.49999997, -0.49999997,
                 0.50000006, 3.4999998, 63.5, -63.5, 100.5]
        elif variant == 1:  # absmax -127 -> d = 1
            v = [-127.0, 0.5, 5.5, -5.5, 0.25, -0.75, 10.5, -10.5, 99.5, -99.5, 1e-3, 7.5]
        elif variant == 2:  # d = 0.1 (not exact): ties only after float32 rounding of x * (1/d)
            v = [12.7] + [F32(k + 0.5) * F32(0.1) for k in range(-20, 20, 3)]
        else:
            v = list(bell(g, 32) * F32(100))
    elif qt in (QT.Q4_0, QT.Q5_0):
        L = 8 if qt == QT.Q4_0 else 16
        if variant == 0:    # max -L -> d = 1: trunc(x + L + 0.5)
            v = [-float(L), -L + 0.5, -0.5, 0.5, 0.49999997, -0.50000006, 1.4999999, L - 0.5, L - 1.5,
                 float(L - 1), 0.0, -0.0, 2.5, -2.5, 3.4999998]
        elif variant == 1:  # max +L -> d = -1
            v = [float(L), L - 0.5, 0.5, -0.5, 0.49999997, -L + 0.5, 1.5, -1.5, 0.0]
        elif variant == 2:  # d = -L*0.3/L: inexact reciprocal
            v = [-L * 0.3] + [F32(k + 0.5) * F32(0.3) for k in range(-L, L)]
        else:               # two equal |max| of opposite sign, negative first -> d > 0
            v = list(bell(g, 32)) + [-3.0, 3.0]
    elif qt in (QT.Q4_1, QT.Q5_1):
        T = 15 if qt == QT.Q4_1 else 31
        if variant == 0:    # min 0, max T -> d = 1, m = 0: trunc(x + 0.5)
            v = [0.0, float(T), 0.5, 1.5, 0.49999997, T - 0.5, 2.4999998, 7.5, 3.0]
        elif variant == 1:  # min -1, max T-1 -> d = 1, m = -1
            v = [-1.0, T - 1.0, -0.5, 0.5, 1.5, 4.5, -0.50000006]
        elif variant == 2:  # big offset: m = 1000, d = 1
            v = [1000.0, 1000.0 + T, 1000.5, 1001.5, 1000.25, 1007.5]
        else:
            v = list(bell(g, 32) * F32(3) + F32(50))
    else:
        raise AssertionError(qt)
    v = [v[i % len(v)] for i in range(32)]
    return np.array(v, F32)


def q_input(qt) -> tuple[np.ndarray, list[str]]:
    """2 rows x 256: 16 blocks of 32 with awkward values (see README for the list)."""
    g = rng(100 + int(qt))
    blocks, notes = [], []

    def add(b, note):
        blocks.append(np.asarray(b, F32))
        notes.append(note)

    add(np.zeros(32, F32), "all zeros (d = 0, 1/d taken as 0)")
    add(np.full(32, 0.75, F32), "constant 0.75 (Q4_1/Q5_1: max == min, d = 0)")
    add(bell(g, 32) * F32(1e-6), "tiny: d underflows to fp16 0, the quants are still computed from the float32 d")
    add(bell(g, 32) * F32(2e-5), "small: d is an fp16 subnormal")
    b = bell(g, 32) * F32(2e4)
    b[7] = F32(6e4)
    add(b, "large: |x| up to 6e4 (d and m stay finite in fp16 for every type)")
    b = bell(g, 32)
    b[11] = F32(-3)
    add(b, "the largest |x| is negative (-3)")
    b = bell(g, 32) * F32(0.5)
    b[5], b[20] = F32(2), F32(-2)
    add(b, "two equal |max| of opposite sign, positive first (Q4_0/Q5_0 take the first)")
    b = bell(g, 32) * F32(0.5)
    b[3], b[30] = F32(-2), F32(2)
    add(b, "two equal |max| of opposite sign, negative first")
    add(np.linspace(-1, 1, 32, dtype=F32), "ramp -1..1")
    for i in range(3):
        add(bell(g, 32) * F32(0.05 * (i + 1)), "random")
    for variant in range(4):
        add(tie_block(qt, variant, g), f"rounding boundaries {variant}")
    return np.concatenate(blocks).reshape(2, 256), notes


def float_input(qt) -> tuple[np.ndarray, list[str]]:
    """F16 / BF16 inputs: edge values in the first 64 entries, then random at several scales."""
    g = rng(200 + int(qt))
    if qt == QT.F16:
        special = [0.0, -0.0, 1.0, -1.0, 65504.0, -65504.0, 65519.996, 65520.0, -65520.0, 70000.0, 1e6,
                   np.inf, -np.inf, 6.1035156e-05, 6.097555e-05, 5.9604645e-08, -5.9604645e-08,
                   2.9802322e-08, 2.9802326e-08, 8.940697e-08, 1e-9, -1e-9,
                   1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -11 + 2 ** -20, -(1 + 2 ** -11), 2048.5, 4097.0,
                   0.1, 0.2, 0.3, 1 / 3, 3.14159265, 1e-5, 1e-4, 3e-5]
        notes = "zeros, +-1, 65504, halfway to overflow (65520 -> inf), overflow, inf, min normal, subnormals, "\
                "halfway ties at 1+2^-11 and below the smallest subnormal, then random at scales 1, 1e-3, 1e3, 1e-6"
    else:
        nan_bits = [0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF, 0xFF812345, 0x7FFFFFFF, 0x7FC0FFFF]
        special = [0.0, -0.0, 1.0, -1.0, 3.4028235e38, -3.4028235e38, 3.3961776e38, np.inf, -np.inf,
                   1.1754944e-38, 1e-40, -1e-40, 1e-45,
                   np.uint32(0x3F808000).view(F32), np.uint32(0x3F818000).view(F32),
                   np.uint32(0x3F808001).view(F32), np.uint32(0xBF818000).view(F32),
                   np.uint32(0x00018000).view(F32), np.uint32(0x7F7F8000).view(F32),
                   0.1, 1 / 3, 3.14159265, 65504.0, 1e30] + [np.uint32(b).view(F32) for b in nan_bits]
        notes = "zeros, +-1, float32 max (RNE overflows to inf), inf, min normal, subnormals, exact ties "\
                "0x3F808000 / 0x3F818000 (to even), NaNs (quiet, signaling, negative, payloads: gguf-py "\
                "forces bit 22 and keeps the top 16 bits), then random at scales 1, 1e-3, 1e3, 1e-6"
    x = np.zeros(512, F32)
    x[:len(special)] = np.array(special, F32)
    rest = 512 - 64
    scales = np.repeat(np.array([1, 1e-3, 1e3, 1e-6], F32), rest // 4)
    x[64:] = bell(g, rest) * scales
    return x.reshape(2, 256), [notes]


def random_raw(qt, n_blocks: int) -> np.ndarray:
    """n_blocks of random bytes (the last two all 0x00 and all 0xFF) with finite fp16 scales."""
    bs, ts = gguf.GGML_QUANT_SIZES[qt]
    g = rng(1000 + int(qt))
    if qt in (QT.F16, QT.BF16):
        bits = g.integers(0, 1 << 16, size=n_blocks * 32, dtype=np.uint32).astype(np.uint16)
        if qt == QT.F16:   # no NaN patterns: numpy's fp16 -> f32 of a NaN is machine-dependent
            bits = np.where((bits & 0x7C00) == 0x7C00, bits & 0xFC00, bits).astype(np.uint16)
        bits[:8] = [0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00 if qt == QT.F16 else 0x7F80,
                    0xFC00 if qt == QT.F16 else 0x7FC1]
        return bits.view(U8).reshape(n_blocks, 64)
    raw = g.integers(0, 256, size=(n_blocks, ts), dtype=np.uint32).astype(U8)
    raw[-2, :] = 0x00
    raw[-1, :] = 0xFF
    k = 0
    for i in range(n_blocks):
        for off in FP16_FIELDS[qt]:
            if k < len(FP16_SPECIAL):
                bits = FP16_SPECIAL[k]
            else:
                bits = int(g.integers(0, 1 << 16))
                if (bits & 0x7C00) == 0x7C00:
                    bits &= 0xBFFF  # exponent 31 (inf/NaN) -> 15
            k += 1
            raw[i, off], raw[i, off + 1] = bits & 0xFF, bits >> 8
    return raw


def make_quants(out: Path) -> dict:
    d = out / "convert"
    tensors: dict[str, np.ndarray] = {}
    cases = {}
    for qt in LEGACY + KQUANTS:
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        try:
            gq.quantize(np.zeros((1, 256), F32), qt)
            can_q = True
        except NotImplementedError:
            can_q = False
        entry = {"type_id": int(qt), "block_size": bs, "type_size": ts, "gguf_py_quantizes": can_q}
        name = qt.name
        if can_q:
            x, notes = (float_input(qt) if qt in (QT.F16, QT.BF16) else q_input(qt))
            raw = gguf_py_quantize(qt, x)
            deq = gguf_py_dequantize(qt, raw)
            ref_raw = ref_quantize(qt, x)
            if not same_bits(raw, ref_raw):
                bad = np.argwhere(raw != ref_raw)[:5]
                sys.exit(f"error: {name}: reference quantizer differs from gguf-py at {bad.tolist()}")
            if not same_bits(deq, ref_dequantize(qt, raw)):
                sys.exit(f"error: {name}: reference dequantizer differs from gguf-py")
            tensors[f"{name}.input"] = x
            tensors[f"{name}.quantized"] = np.ascontiguousarray(raw)
            tensors[f"{name}.dequantized"] = deq
            entry["input_blocks"] = notes
            entry["quantized_shape"] = list(raw.shape)
            entry["nonfinite_in_dequantized"] = int((~np.isfinite(deq)).sum())
        n_rand = 16 if qt in LEGACY else 4
        rr = random_raw(qt, n_rand)
        rdeq = gguf_py_dequantize(qt, rr).reshape(-1)
        if not same_bits(rdeq, ref_dequantize(qt, rr).reshape(-1)):
            sys.exit(f"error: {name}: reference dequantizer differs from gguf-py on random blocks")
        tensors[f"{name}.random_raw"] = np.ascontiguousarray(rr.reshape(-1))
        tensors[f"{name}.random_dequantized"] = rdeq
        entry["random_blocks"] = n_rand
        entry["random_note"] = ("random 16-bit patterns (no NaN for F16), the first eight fixed edge cases"
                                if qt in (QT.F16, QT.BF16) else
                                "random bytes; the last block all 0x00, the one before all 0xFF; fp16 scale "
                                "fields set to finite values, the first ones to every class of fp16 "
                                f"(bits {', '.join(f'0x{b:04x}' for b in FP16_SPECIAL)})")
        cases[name] = entry
    sweep = sweep_check()
    meta = {"format": "pt"}  # one key: the library writes a multi-key __metadata__ in random (hash) order
    safetensors.numpy.save_file(dict(sorted(tensors.items())), str(d / "quants.safetensors"), metadata=meta)
    back = safetensors.numpy.load_file(str(d / "quants.safetensors"))
    assert all(same_bits(back[k], v) for k, v in tensors.items())
    doc = {
        "generator": "tools/make_conversion_goldens.py",
        "versions": versions(),
        "file": "quants.safetensors",
        "tensors": "for each type T: T.input F32 [2,256], T.quantized U8 [2, 256/block*type_size] = "
                   "gguf.quants.quantize(T.input, T) (for F16 the fp16 bits as bytes), T.dequantized F32 "
                   "[2,256] = gguf.quants.dequantize(T.quantized, T); T.random_raw U8 [blocks*type_size] "
                   "and T.random_dequantized F32 [blocks*block_size]. K-quants: random only (gguf-py "
                   "0.19.0 cannot quantize them). Compare bit patterns (-0.0 and NaN payloads included).",
        "types": cases,
        "reference_sweep": sweep,
    }
    write_json(d / "quants.json", doc)
    return doc


def sweep_check() -> dict:
    """The reference implementation against gguf-py on many more random blocks (not stored)."""
    counts = {}
    for qt in LEGACY:
        g = rng(5000 + int(qt))
        n = 2048
        scale = np.float32(10.0) ** (g.integers(-6, 6, size=(n, 1)).astype(F32))
        x = (bell(g, n * 32).reshape(n, 32) * scale).astype(F32)
        x[g.random(n) < 0.1] = F32(0)  # some zero blocks
        if not same_bits(gguf_py_quantize(qt, x), ref_quantize(qt, x)):
            sys.exit(f"error: sweep: {qt.name} quantize differs")
        counts[qt.name] = {"quantized_blocks": n * (32 // gguf.GGML_QUANT_SIZES[qt][0]) if qt in (QT.F16, QT.BF16) else n}
    for qt in LEGACY + KQUANTS:
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        g = rng(6000 + int(qt))
        raw = g.integers(0, 256, size=(512, ts if bs > 1 else 64), dtype=np.uint32).astype(U8)
        if qt in (QT.F16,):
            bits = raw.view(np.uint16)
            raw = np.where((bits & 0x7C00) == 0x7C00, bits & 0xFC00, bits).astype(np.uint16).view(U8)
        elif qt != QT.BF16:
            for off in FP16_FIELDS[qt]:
                raw[:, off + 1] &= 0xBF  # keep fp16 scales finite
        if not same_bits(gguf_py_dequantize(qt, raw).reshape(-1), ref_dequantize(qt, raw).reshape(-1)):
            sys.exit(f"error: sweep: {qt.name} dequantize differs")
        counts.setdefault(qt.name, {})["dequantized_blocks"] = 512
    return {"note": "README's reference implementation (tools/make_conversion_goldens.py ref_quantize/"
                    "ref_dequantize) reproduced gguf-py bit for bit on these extra random blocks",
            "counts": counts}


def versions() -> dict:
    return {"gguf": gguf_version(), "torch": torch.__version__.split("+")[0], "numpy": np.__version__,
            "transformers": transformers.__version__, "safetensors": safetensors.__version__,
            "tokenizers": tokenizers.__version__}


def gguf_version() -> str:
    from importlib.metadata import version
    return version("gguf")


# ---------------------------------------------------------------------------
# a small GGUF parser (the format README.md describes), used to check gguf-py's files and to
# describe every file in the manifests


VT_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
VT_NAME = {v.value: v.name for v in VT}


class GGUFParseError(Exception):
    pass


def parse_gguf(data: bytes) -> dict:
    pos = 0

    def take(n):
        nonlocal pos
        if n < 0 or pos + n > len(data):
            raise GGUFParseError(f"read of {n} bytes at {pos} past the end ({len(data)})")
        b = data[pos:pos + n]
        pos += n
        return b

    def u32():
        return struct.unpack("<I", take(4))[0]

    def u64():
        return struct.unpack("<Q", take(8))[0]

    def string():
        n = u64()
        return take(n).decode("utf-8")

    def value(t):
        if t in VT_FMT:
            return struct.unpack(VT_FMT[t], take(struct.calcsize(VT_FMT[t])))[0]
        if t == 8:
            return string()
        if t == 9:
            it, n = u32(), u64()
            if it == 9:
                raise GGUFParseError("nested array")
            return {"item_type": it, "items": [value(it) for _ in range(n)]}
        raise GGUFParseError(f"unknown value type {t}")

    if take(4) != b"GGUF":
        raise GGUFParseError("bad magic")
    version = u32()
    if version not in (2, 3):
        raise GGUFParseError(f"version {version}")
    n_tensors, n_kv = u64(), u64()
    kvs = []
    for _ in range(n_kv):
        key = string()
        t = u32()
        start = pos
        v = value(t)
        kvs.append({"key": key, "type": t, "value": v, "value_offset": start, "value_bytes": data[start:pos]})
    keys = [kv["key"] for kv in kvs]
    if len(set(keys)) != len(keys):
        raise GGUFParseError("duplicate key")
    align = next((kv["value"] for kv in kvs if kv["key"] == "general.alignment"), 32)
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise GGUFParseError(f"general.alignment {align}")
    infos = []
    for _ in range(n_tensors):
        name = string()
        nd = u32()
        if nd > 4:
            raise GGUFParseError(f"n_dims {nd}")
        ne = [u64() for _ in range(nd)]
        t = u32()
        off = u64()
        infos.append({"name": name, "ne": ne, "type": t, "offset": off})
    if len({ti["name"] for ti in infos}) != len(infos):
        raise GGUFParseError("duplicate tensor name")
    data_start = (pos + align - 1) // align * align
    expect = 0
    for ti in infos:
        n = 1
        for e in ne_checked(ti["ne"]):
            n *= e
        qt = QT(ti["type"])
        ti["nbytes"] = nbytes_of(qt, n)
        if ti["offset"] != expect:
            raise GGUFParseError(f"tensor {ti['name']} offset {ti['offset']} expected {expect}")
        expect += (ti["nbytes"] + align - 1) // align * align
        if data_start + ti["offset"] + ti["nbytes"] > len(data):
            raise GGUFParseError("tensor data past the end")
        ti["data"] = data[data_start + ti["offset"]: data_start + ti["offset"] + ti["nbytes"]]
    return {"version": version, "kvs": kvs, "tensors": infos, "alignment": align, "data_start": data_start,
            "size": len(data)}


def ne_checked(ne):
    n = 1
    for e in ne:
        if e >= 1 << 63:
            raise GGUFParseError("dimension >= 2^63")
        n *= e
        if n >= 1 << 63:
            raise GGUFParseError("element count overflows")
    return ne


def describe_kv(kv) -> dict:
    t, v = kv["type"], kv["value"]
    out = {"key": kv["key"], "type": VT_NAME[t]}
    if t == 9:
        items = v["items"]
        out["item_type"] = VT_NAME[v["item_type"]]
        out["count"] = len(items)
        shown = [describe_scalar(v["item_type"], i) for i in items]
        if len(items) <= 16:
            out["value"] = shown
        else:
            out["first"] = shown[:4]
            out["last"] = shown[-4:]
        out["sha256_of_items"] = sha(kv["value_bytes"][12:])
    else:
        out["value"] = describe_scalar(t, v)
        if t == 6:
            out["f32_bits"] = f32_bits(v)
    return out


def describe_scalar(t, v):
    if t == 6:
        return float(np.float32(v))
    if t == 12:
        return float(v)
    return v


# ---------------------------------------------------------------------------
# GGUF: tiny-llama the way convert_hf_to_gguf.py writes a LlamaForCausalLM


def permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.permute (conversion/llama.py)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def unpermute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """The inverse: row r = h*D + 2*i + s of the GGUF tensor goes back to row h*D + s*(D/2) + i."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


CHKTXT = ('\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ '
          '🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ '
          '------======= нещо на Български \'\'\'\'\'\'```````""""......!!!!!!?????? I\'ve been \'told he\'s there, '
          '\'RE you sure? \'M not sure I\'ll make it, \'D you like some tea? We\'Ve a\'lL')


def llama_vocab(model_dir: Path, vocab_size: int):
    """convert_hf_to_gguf.py TextModel.get_vocab_base (conversion/base.py), for a gpt2 BPE vocab."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    vocab = tok.get_vocab()
    assert max(vocab.values()) < vocab_size
    chkhsh = sha(str(tok.encode(CHKTXT)).encode())
    reverse = {i: t for t, i in vocab.items()}
    added = tok.get_added_vocab()
    decoder = tok.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        t = reverse[i]
        if t in added:
            if not decoder[i].normalized:
                t = tok.decode(tok.encode(t, add_special_tokens=False))
            types.append(gguf.TokenType.CONTROL if decoder[i].special or (t.startswith("<|") and t.endswith("|>"))
                         else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(t)
    return tokens, [int(t) for t in types], chkhsh


def convert_llama(model_dir: Path, out_path: Path, ftype: gguf.LlamaFileType, override=None) -> dict:
    """Emulates `convert_hf_to_gguf.py MODEL --outtype ...` for LlamaForCausalLM with a byte-level
    BPE tokenizer (LlamaModel in conversion/llama.py, TextModel/ModelBase in conversion/base.py),
    step for step and in the same order; `override` maps a GGUF tensor name to another type."""
    hp = json.loads((model_dir / "config.json").read_text())
    n_layer, n_head, n_kv = hp["num_hidden_layers"], hp["num_attention_heads"], hp["num_key_value_heads"]
    arch = gguf.MODEL_ARCH.LLAMA
    tmap = gguf.get_tensor_name_map(arch, n_layer)
    w = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[arch])
    with gguf.utility.SafetensorsLocal(model_dir / "model.safetensors") as part:
        names = list(part.keys())  # the order convert_hf_to_gguf.py iterates
    sd = safetensors.torch.load_file(str(model_dir / "model.safetensors"))
    by_ftype = {gguf.LlamaFileType.ALL_F32: QT.F32, gguf.LlamaFileType.MOSTLY_F16: QT.F16,
                gguf.LlamaFileType.MOSTLY_BF16: QT.BF16, gguf.LlamaFileType.MOSTLY_Q8_0: QT.Q8_0,
                gguf.LlamaFileType.MOSTLY_Q4_0: QT.Q4_0}
    mapping = {}
    for name in names:
        t = sd[name]
        if t.dtype not in (torch.float16, torch.float32):
            t = t.to(torch.float32)
        data = t.numpy()
        if name.endswith("q_proj.weight"):
            data = permute(data, n_head, n_head)
        elif name.endswith("k_proj.weight"):
            data = permute(data, n_head, n_kv)
        new = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        assert new is not None, name
        qt = QT.F32 if data.ndim <= 1 or new.endswith("_norm.weight") else by_ftype[ftype]
        if override and new in override:
            qt = override[new]
        raw = gq.quantize(data, qt)
        w.add_tensor(new, raw, raw_dtype=qt)
        mapping[new] = name
    total, shared, expert, count = w.get_total_parameter_count()
    meta = gguf.Metadata.load(None, model_dir, None, total)
    if meta.name is None:
        meta.name = model_dir.name
    if meta.size_label is None and total > 0:
        meta.size_label = gguf.size_label(total, shared, expert, count)
    w.add_type(gguf.GGUFType.MODEL)
    meta.set_gguf_meta_model(w)
    # TextModel.set_gguf_parameters
    w.add_block_count(n_layer)
    w.add_context_length(hp["max_position_embeddings"])
    w.add_embedding_length(hp["hidden_size"])
    w.add_feed_forward_length(hp["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    rope = hp.get("rope_parameters") or {"rope_theta": hp.get("rope_theta")}
    w.add_rope_freq_base(rope["rope_theta"])  # rope_type "default": no rope.scaling keys
    w.add_layer_norm_rms_eps(hp["rms_norm_eps"])
    if "head_dim" in hp:
        w.add_key_length(hp["head_dim"])
        w.add_value_length(hp["head_dim"])
    w.add_file_type(ftype)
    # LlamaModel.set_gguf_parameters
    w.add_vocab_size(hp["vocab_size"])
    w.add_rope_dimension_count(hp.get("head_dim") or hp["hidden_size"] // n_head)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # LlamaModel.set_vocab: no tokenizer.model, no Llama BPE (FileNotFoundError) -> _set_vocab_gpt2
    tokens, types, chkhsh = llama_vocab(model_dir, hp["vocab_size"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(TOKENIZER_PRE)
    w.add_token_list(tokens)
    w.add_token_types(types)
    gguf.SpecialVocab(model_dir, load_merges=True).add_to_gguf(w)
    w.write_header_to_file(path=out_path)
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"hf_name_of": mapping, "chkhsh": chkhsh}


# The BPE pre-tokenizer: convert_hf_to_gguf.py recognises a tokenizer by the sha256 of its ids for
# CHKTXT and stops with "BPE pre-tokenizer was not recognized" for one it does not know, as it does
# for this freshly trained vocabulary. Its pre-tokenizer is ByteLevel with GPT-2's regex, which is
# llama.cpp's "gpt-2" pre-tokenizer type.
TOKENIZER_PRE = "gpt-2"
doc_metadata_cache: list = []
readme_cache: dict = {}

# one type per tensor group, so that the committed file has every type the reader must dequantize
MIXED = {
    "token_embd.weight": QT.Q8_0, "output.weight": QT.Q5_0,
    "blk.0.attn_q.weight": QT.F16, "blk.0.attn_k.weight": QT.BF16, "blk.0.attn_v.weight": QT.F32,
    "blk.0.attn_output.weight": QT.F16,
    "blk.0.ffn_gate.weight": QT.Q5_1, "blk.0.ffn_up.weight": QT.Q5_0, "blk.0.ffn_down.weight": QT.Q4_1,
    **{f"blk.1.{t}.weight": QT.Q8_0 for t in ("attn_q", "attn_k", "attn_v", "attn_output")},
    **{f"blk.1.{t}.weight": QT.Q4_0 for t in ("ffn_gate", "ffn_up", "ffn_down")},
    **{f"blk.2.{t}.weight": QT.Q4_1 for t in ("attn_q", "attn_k", "attn_v", "attn_output")},
    **{f"blk.2.{t}.weight": QT.Q5_0 for t in ("ffn_gate", "ffn_up", "ffn_down")},
    **{f"blk.3.{t}.weight": QT.Q5_1 for t in ("attn_q", "attn_k", "attn_v", "attn_output")},
    "blk.3.ffn_gate.weight": QT.Q4_1, "blk.3.ffn_up.weight": QT.Q5_1, "blk.3.ffn_down.weight": QT.Q4_0,
}

TEST_STRINGS = [
    "Hello world",
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "  two leading spaces, trailing space ",
    "tabs\tand\nnewlines\n\n\nend",
    "I'm sure it's they'll we've you'd",
    "numbers 1234567 3.14 and 2024!",
    "naïve café, Straße — “quotes” 🚀 漢字",
    "<|endoftext|>special in the middle<|endoftext|>",
    "",
]


def hf_expected(parsed: dict, hf_name_of: dict, n_head: int, n_kv: int) -> dict:
    out = {}
    for ti in parsed["tensors"]:
        qt = QT(ti["type"])
        raw = np.frombuffer(ti["data"], U8)
        ne = ti["ne"]
        shape = list(reversed(ne))
        vals = ref_dequantize(qt, raw.reshape(-1, nbytes_of(qt, ne[0])) if len(ne) > 1 else raw.reshape(1, -1))
        gpy = gguf_py_dequantize(qt, raw.reshape(-1, nbytes_of(qt, ne[0])))
        assert same_bits(vals.reshape(-1), gpy.reshape(-1)), ti["name"]
        vals = vals.reshape(shape)
        if ".attn_q." in ti["name"]:
            vals = unpermute(vals, n_head, n_head)
        elif ".attn_k." in ti["name"]:
            vals = unpermute(vals, n_head, n_kv)
        out[hf_name_of[ti["name"]]] = np.ascontiguousarray(vals, F32)
    return out


def make_gguf_models(out: Path, tmp: Path) -> dict:
    d = out / "convert"
    src = out / LLAMA
    hp = json.loads((src / "config.json").read_text())
    n_head, n_kv = hp["num_attention_heads"], hp["num_key_value_heads"]
    original = {k: v.float().numpy() for k, v in safetensors.torch.load_file(str(src / "model.safetensors")).items()}

    # 1. the committed mixed-type file
    path = d / "tiny-llama.gguf"
    info = convert_llama(src, path, gguf.LlamaFileType.MOSTLY_Q8_0, override=MIXED)
    data = path.read_bytes()
    parsed = parse_gguf(data)
    check_against_gguf_py_reader(path, parsed)
    expected = hf_expected(parsed, info["hf_name_of"], n_head, n_kv)
    tensors = []
    for ti in parsed["tensors"]:
        hf = info["hf_name_of"][ti["name"]]
        e = expected[hf]
        orig = original[hf]
        diff = np.abs(e - orig)
        tensors.append({
            "name": ti["name"], "type": QT(ti["type"]).name, "type_id": ti["type"], "ne": ti["ne"],
            "offset": ti["offset"], "nbytes": ti["nbytes"], "sha256": sha(ti["data"]),
            "hf_name": hf,
            "unpermute": ("n_head 4" if ".attn_q." in ti["name"] else "n_head_kv 2" if ".attn_k." in ti["name"]
                          else None),
            "hf_f32_sha256": sha(e.tobytes()),
            "equals_original_bf16": bool(np.array_equal(e, orig)),
            "max_abs_diff_vs_original": float(diff.max()),
        })
    # the permutation itself, on the bf16 originals (exact: pure data movement)
    for hf, n_kv_ in (("model.layers.0.self_attn.q_proj.weight", n_head), ("model.layers.0.self_attn.k_proj.weight", n_kv)):
        w = original[hf]
        assert np.array_equal(unpermute(permute(w, n_head, n_kv_), n_head, n_kv_), w)
    doc_metadata_cache[:] = [describe_kv(kv) for kv in parsed["kvs"]]
    tf = transformers_check(path, expected, original, src)
    micro = make_micro_gguf(out, tmp)
    writer = writer_goldens(src, tmp)
    tok_ids = tokenizer_check(path, src)
    doc = {
        "generator": "tools/make_conversion_goldens.py",
        "versions": versions(),
        "tiny-llama.gguf": {
            "source": "fixtures/models/tiny-llama (bf16 safetensors)",
            "made_as": "convert_hf_to_gguf.py --outtype q8_0 (conversion/llama.py LlamaModel), emulated step "
                       "by step with gguf-py's GGUFWriter, then one GGML type per tensor group (the "
                       "'type' column) instead of Q8_0 everywhere, as llama-quantize --tensor-type would, so "
                       "the file holds every type ckpt must read; general.file_type stays 7 (MOSTLY_Q8_0)",
            "size": len(data), "sha256": sha(data), "version": parsed["version"],
            "alignment": parsed["alignment"], "data_start": parsed["data_start"],
            "n_kv": len(parsed["kvs"]), "n_tensors": len(parsed["tensors"]),
            "tokenizer_pre_note": f"convert_hf_to_gguf.py does not know this vocabulary (chkhsh {info['chkhsh']}) "
                                  f"and would stop; '{TOKENIZER_PRE}' is llama.cpp's type for a ByteLevel "
                                  "pre-tokenizer with GPT-2's regex, which is what tokenizer.json has",
            "metadata": [describe_kv(kv) for kv in parsed["kvs"]],
            "tokens_note": "tokenizer.ggml.tokens[i] is the token with id i in fixtures/models/tiny-llama/"
                           "tokenizer.json (byte-level spelling, 'Ġ' for space); tokenizer.ggml.merges are its "
                           "255 merges as 'left right'; token_type 3 (CONTROL) for <|endoftext|>, 1 for the rest",
            "tensors": tensors,
            "expected_config": expected_config(parsed),
            "transformers": tf,
            "tokenizer": tok_ids,
        },
        "micro-llama-tied.gguf": micro,
        "writer_goldens": writer,
        "name_map": {
            "note": "GGUF -> Hugging Face names for the llama architecture (gguf-py tensor_mapping, "
                    "reversed); N is the block number",
            "map": {"token_embd.weight": "model.embed_tokens.weight",
                    "blk.N.attn_norm.weight": "model.layers.N.input_layernorm.weight",
                    "blk.N.attn_q.weight": "model.layers.N.self_attn.q_proj.weight",
                    "blk.N.attn_k.weight": "model.layers.N.self_attn.k_proj.weight",
                    "blk.N.attn_v.weight": "model.layers.N.self_attn.v_proj.weight",
                    "blk.N.attn_output.weight": "model.layers.N.self_attn.o_proj.weight",
                    "blk.N.ffn_norm.weight": "model.layers.N.post_attention_layernorm.weight",
                    "blk.N.ffn_gate.weight": "model.layers.N.mlp.gate_proj.weight",
                    "blk.N.ffn_up.weight": "model.layers.N.mlp.up_proj.weight",
                    "blk.N.ffn_down.weight": "model.layers.N.mlp.down_proj.weight",
                    "output_norm.weight": "model.norm.weight",
                    "output.weight": "lm_head.weight (absent: tie_word_embeddings true)"},
        },
    }
    check_name_map(doc["name_map"]["map"], hp["num_hidden_layers"])
    write_json(d / "gguf.json", doc)
    return doc


def check_name_map(m: dict, n_layer: int):
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layer)
    for g, h in m.items():
        hf = h.split(" ")[0].replace(".N.", ".1.")
        assert tmap.get_name(hf, try_suffixes=(".weight",)) == g.replace(".N.", ".1."), (g, hf)


def expected_config(parsed: dict) -> dict:
    kv = {k["key"]: k["value"] for k in parsed["kvs"]}
    tied = all(t["name"] != "output.weight" for t in parsed["tensors"])
    return {
        "note": "config.json a GGUF -> HF conversion writes, key by key from llama.* metadata (f32 values "
                "widened to double: 1e-05 comes back as 9.999999747378752e-06 unless rounded to the "
                "shortest float32 repr, which gives 1e-05)",
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": kv["llama.embedding_length"],
        "intermediate_size": kv["llama.feed_forward_length"],
        "num_hidden_layers": kv["llama.block_count"],
        "num_attention_heads": kv["llama.attention.head_count"],
        "num_key_value_heads": kv["llama.attention.head_count_kv"],
        "head_dim": kv["llama.attention.key_length"],
        "max_position_embeddings": kv["llama.context_length"],
        "rms_norm_eps_f32": float(np.float32(kv["llama.attention.layer_norm_rms_epsilon"])),
        "rope_theta": float(np.float32(kv["llama.rope.freq_base"])),
        "vocab_size": kv["llama.vocab_size"],
        "tie_word_embeddings": tied,
        "bos_token_id": kv["tokenizer.ggml.bos_token_id"],
        "eos_token_id": kv["tokenizer.ggml.eos_token_id"],
        "from_keys": {"hidden_size": "llama.embedding_length", "intermediate_size": "llama.feed_forward_length",
                      "num_hidden_layers": "llama.block_count", "num_attention_heads": "llama.attention.head_count",
                      "num_key_value_heads": "llama.attention.head_count_kv",
                      "head_dim": "llama.attention.key_length (or llama.rope.dimension_count)",
                      "max_position_embeddings": "llama.context_length",
                      "rms_norm_eps": "llama.attention.layer_norm_rms_epsilon", "rope_theta": "llama.rope.freq_base",
                      "vocab_size": "llama.vocab_size (or the length of tokenizer.ggml.tokens)",
                      "tie_word_embeddings": "true when there is no output.weight tensor",
                      "bos_token_id": "tokenizer.ggml.bos_token_id", "eos_token_id": "tokenizer.ggml.eos_token_id"},
    }


def check_against_gguf_py_reader(path: Path, parsed: dict):
    r = gguf.GGUFReader(path)
    assert [t.name for t in r.tensors] == [t["name"] for t in parsed["tensors"]]
    for t, ti in zip(r.tensors, parsed["tensors"]):
        assert int(t.tensor_type) == ti["type"] and list(map(int, t.shape)) == ti["ne"]
        assert bytes(np.asarray(t.data).view(U8).reshape(-1)) == ti["data"], t.name
    keys = [k for k in r.fields.keys() if not k.startswith("GGUF.")]
    assert keys == [kv["key"] for kv in parsed["kvs"]], (keys[:5], [kv["key"] for kv in parsed["kvs"]][:5])


def transformers_check(path: Path, expected: dict, original: dict, src: Path) -> dict:
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    rows, same, worst = {}, 0, 0.0
    for hf, e in expected.items():
        got = sd[hf]
        eq = same_bits(np.ascontiguousarray(got), e)
        same += eq
        dv = float(np.abs(got - original[hf]).max())
        worst = max(worst, dv)
        if not eq:
            rows[hf] = {"max_abs_diff_vs_expected": float(np.abs(got - e).max())}
    cfg = model.config
    return {
        "call": "AutoModelForCausalLM.from_pretrained(dir, gguf_file='tiny-llama.gguf', dtype=torch.float32)",
        "tensors_bitwise_equal_to_expected": f"{same} of {len(expected)}",
        "differing": rows,
        "max_abs_diff_vs_original_bf16": worst,
        "config": {k: getattr(cfg, k, None) for k in
                   ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "vocab_size",
                    "tie_word_embeddings", "bos_token_id", "eos_token_id")}
                  | {"rope_theta": (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta")},
    }


def tokenizer_check(path: Path, src: Path) -> dict:
    from transformers import AutoTokenizer
    gt = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    ref = tokenizers.Tokenizer.from_file(str(src / "tokenizer.json"))
    rows = []
    for s in TEST_STRINGS:
        a = gt.encode(s, add_special_tokens=False)
        b = ref.encode(s, add_special_tokens=False).ids
        rows.append({"text": s, "ids": a, "same_as_original_tokenizer_json": a == b,
                     **({} if a == b else {"original_ids": b}),
                     "decoded": gt.decode(a)})
    backend = json.loads(gt.backend_tokenizer.to_str())
    orig = json.loads((src / "tokenizer.json").read_text())
    return {
        "call": "AutoTokenizer.from_pretrained(dir, gguf_file='tiny-llama.gguf') (transformers' GGUF "
                "tokenizer conversion); ids without special tokens",
        "class": type(gt).__name__,
        "with_special_tokens_hello_world": gt.encode("Hello world"),
        "rebuilt_model_type": backend["model"]["type"],
        "rebuilt_vocab_equals_original": backend["model"]["vocab"] == orig["model"]["vocab"],
        "rebuilt_merges_equal_original": [list(m) if isinstance(m, list) else m.split(" ") for m in backend["model"]["merges"]]
                                         == [list(m) if isinstance(m, list) else m.split(" ") for m in orig["model"]["merges"]],
        "rebuilt_pre_tokenizer": backend["pre_tokenizer"],
        "original_pre_tokenizer": orig["pre_tokenizer"],
        "rebuilt_decoder": backend["decoder"],
        "rebuilt_added_tokens": backend["added_tokens"],
        "strings": rows,
    }


def micro_config():
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=512, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=4, max_position_embeddings=64,
                       rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=0,
                       eos_token_id=0)


def micro_state_dict() -> dict:
    """A 1-layer tied llama with uniform random bf16 weights (no lm_head.weight: tied)."""
    from transformers import LlamaForCausalLM
    with torch.device("meta"):
        names = {k: tuple(v.shape) for k, v in LlamaForCausalLM(micro_config()).state_dict().items()}
    g = rng(77)
    sd = {}
    for k in sorted(names):
        if k == "lm_head.weight":
            continue
        shape = names[k]
        n = int(np.prod(shape))
        v = np.ones(n, F32) + bell(g, n) * F32(0.05) if k.endswith("norm.weight") else bell(g, n) * F32(0.3)
        sd[k] = torch.from_numpy(v.reshape(shape)).to(torch.bfloat16)
    return sd


def micro_folder(tmp: Path) -> Path:
    d = tmp / "micro-llama"
    if d.exists():
        return d
    d.mkdir(parents=True)
    micro_config().save_pretrained(d)
    safetensors.torch.save_file(micro_state_dict(), str(d / "model.safetensors"), metadata={"format": "pt"})
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(REPO / "fixtures" / LLAMA / f, d / f)
    return d


def make_micro_gguf(out: Path, tmp: Path) -> dict:
    src = micro_folder(tmp)
    path = out / "convert" / "micro-llama-tied.gguf"
    info = convert_llama(src, path, gguf.LlamaFileType.MOSTLY_BF16)
    data = path.read_bytes()
    parsed = parse_gguf(data)
    check_against_gguf_py_reader(path, parsed)
    cfg = micro_config()
    expected = hf_expected(parsed, info["hf_name_of"], cfg.num_attention_heads, cfg.num_key_value_heads)
    original = {k: v.float().numpy() for k, v in micro_state_dict().items()}
    assert all(same_bits(expected[k], original[k]) for k in original), "bf16 round trip not exact"
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    tsd = model.state_dict()
    tf_equal = all(same_bits(tsd[k].float().numpy(), original[k]) for k in original)
    return {
        "source": "a 1-layer llama (hidden 8, 2 heads, 1 KV head, head_dim 4, ffn 16, vocab 512 with "
                  "tiny-llama's tokenizer, tie_word_embeddings true, uniform random bf16 weights); its "
                  "config.json is in pytorch/micro-llama/",
        "made_as": "convert_hf_to_gguf.py with the default --outtype (auto: bf16 for a bf16 checkpoint), "
                   "emulated exactly; no output.weight because the checkpoint has no lm_head.weight",
        "size": len(data), "sha256": sha(data),
        "metadata": [describe_kv(kv) for kv in parsed["kvs"] if kv["key"] not in
                     ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type")],
        "tensors": [{"name": ti["name"], "type": QT(ti["type"]).name, "ne": ti["ne"], "offset": ti["offset"],
                     "sha256": sha(ti["data"]), "hf_name": info["hf_name_of"][ti["name"]],
                     "hf_f32_sha256": sha(expected[info["hf_name_of"][ti["name"]]].tobytes())}
                    for ti in parsed["tensors"]],
        "round_trip": "every tensor dequantized (BF16 -> f32) and un-permuted equals the bf16 original exactly",
        "expected_config": expected_config(parsed),
        "transformers_from_pretrained_equal": tf_equal,
        "transformers_tie_word_embeddings": bool(model.config.tie_word_embeddings),
    }


def writer_goldens(src: Path, tmp: Path) -> dict:
    """safetensors -> GGUF: what convert_hf_to_gguf.py (emulated) writes for each --outtype."""
    out = {"note": "fixtures/models/tiny-llama converted with every --outtype ckpt supports. 'tensors' lists "
                   "each GGUF tensor in file order with the sha256 of its bytes: norms (1-D) always F32, "
                   "every 2-D weight (token_embd and output included) in the target type, Q/K rows permuted; "
                   "'tensors' maps each GGUF name (in file order) to 'TYPE sha256-of-its-bytes'. "
                   "q4_0 is not a convert_hf_to_gguf.py --outtype; it is the same procedure with "
                   "gguf.quants Q4_0 and general.file_type 2 (MOSTLY_Q4_0). file_sha256 is the whole file; "
                   "metadata lists the keys in file order (tokens/merges summarised)."}
    ftypes = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
              "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
              "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}
    for label, ft in ftypes.items():
        p = tmp / f"tiny-llama-{label}.gguf"
        info = convert_llama(src, p, ft)
        data = p.read_bytes()
        parsed = parse_gguf(data)
        entry = {"file_type": int(ft), "size": len(data), "file_sha256": sha(data),
                 "data_start": parsed["data_start"],
                 "tensors": {ti["name"]: f"{QT(ti['type']).name} {sha(ti['data'])}" for ti in parsed["tensors"]}}
        if label == "f16":
            keys = [describe_kv(kv) for kv in parsed["kvs"]]
            mixed = [m for m in doc_metadata_cache if m["key"] != "general.file_type"]
            assert [m for m in keys if m["key"] != "general.file_type"] == mixed, "metadata differs"
            entry["metadata"] = "the keys and values of tiny-llama.gguf (same order), general.file_type 1"
            readme_cache["f16_metadata"] = keys
        out[label] = entry
        p.unlink()
    return out


# ---------------------------------------------------------------------------
# GGUF files built byte by byte: valid reader tests and hostile inputs


def g_str(s) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def g_val(t: int, v) -> bytes:
    if t in VT_FMT:
        return struct.pack(VT_FMT[t], v)
    if t == 8:
        return g_str(v)
    if t == 9:
        it, items = v
        return struct.pack("<IQ", it, len(items)) + b"".join(g_val(it, i) for i in items)
    raise ValueError(t)


def g_kv(key, t, v) -> bytes:
    return g_str(key) + struct.pack("<I", t) + g_val(t, v)


def build_gguf(kvs: list[bytes], tensors: list[dict], version=3, alignment=32, n_tensors=None, n_kv=None,
               magic=b"GGUF") -> bytes:
    """tensors: {name, ne, type, data, offset (optional override), n_dims (optional override)}"""
    head = magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = b"".join(kvs)
    infos, blob, off = b"", b"", 0
    for t in tensors:
        ne = t["ne"]
        nd = t.get("n_dims", len(ne))
        infos += g_str(t["name"]) + struct.pack("<I", nd) + b"".join(struct.pack("<Q", e) for e in ne)
        infos += struct.pack("<IQ", t["type"], t.get("offset", off))
        blob += t["data"] + bytes((-len(t["data"])) % alignment)
        off += len(t["data"]) + (-len(t["data"])) % alignment
    meta = head + body + infos
    return meta + bytes((-len(meta)) % alignment) + blob


def make_reader_files(out: Path) -> dict:
    d = out / "convert" / "gguf_reader"
    d.mkdir(parents=True)
    g = rng(31)
    kvs_spec = [
        ("general.architecture", 8, "llama"),
        ("general.alignment", 4, 64),
        ("test.u8", 0, 255), ("test.i8", 1, -128), ("test.u16", 2, 65535), ("test.i16", 3, -32768),
        ("test.u32", 4, 4294967295), ("test.i32", 5, -2147483648), ("test.f32", 6, float(np.float32(-1.5e-7))),
        ("test.bool_true", 7, True), ("test.bool_false", 7, False),
        ("test.string", 8, "héllo, wörld ✓"), ("test.string_empty", 8, ""),
        ("test.u64", 10, 18446744073709551615), ("test.i64", 11, -9223372036854775808),
        ("test.f64", 12, 2.718281828459045),
        ("test.array.u8", 9, (0, [0, 1, 255])), ("test.array.i8", 9, (1, [-1, 127])),
        ("test.array.u16", 9, (2, [513])), ("test.array.i16", 9, (3, [-2, 2])),
        ("test.array.u32", 9, (4, [1, 2, 3])), ("test.array.i32", 9, (5, [-7])),
        ("test.array.f32", 9, (6, [0.5, -0.0, float(np.float32(3.4028235e38))])),
        ("test.array.bool", 9, (7, [True, False, True])),
        ("test.array.string", 9, (8, ["a", "", "ünï"])),
        ("test.array.u64", 9, (10, [1 << 40])), ("test.array.i64", 9, (11, [-(1 << 40)])),
        ("test.array.f64", 9, (12, [1e300, -1e-300])),
        ("test.array.empty_u32", 9, (4, [])),
    ]
    kvs = [g_kv(k, t, v) for k, t, v in kvs_spec]
    tensors, described = [], []
    x = (bell(g, 512) * F32(0.5)).astype(F32)
    for qt in SUPPORTED:
        bs, _ = gguf.GGML_QUANT_SIZES[qt]
        if qt in (QT.F32, QT.F16, QT.BF16, QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1):
            raw = ref_quantize(qt, x.reshape(2, 256)).reshape(-1)
        else:
            raw = random_raw(qt, 2).reshape(-1)
        ne = [256, 2]
        tensors.append({"name": f"t.{qt.name.lower()}", "ne": ne, "type": int(qt), "data": raw.tobytes()})
    tensors.append({"name": "t.f32.scalar_like", "ne": [1], "type": 0, "data": np.float32(7.25).tobytes()})
    tensors.append({"name": "t.f32.4d", "ne": [3, 2, 2, 2], "type": 0,
                    "data": np.arange(24, dtype=F32).tobytes()})
    blob = build_gguf(kvs, tensors, alignment=64)
    (d / "all_types.gguf").write_bytes(blob)
    parsed = parse_gguf(blob)
    check_against_gguf_py_reader(d / "all_types.gguf", parsed)
    for ti in parsed["tensors"]:
        qt = QT(ti["type"])
        raw = np.frombuffer(ti["data"], U8).reshape(int(np.prod(ti["ne"][1:])), -1)
        deq = gguf_py_dequantize(qt, raw).reshape(-1)
        described.append({"name": ti["name"], "type": qt.name, "type_id": int(qt), "ne": ti["ne"],
                          "offset": ti["offset"], "nbytes": ti["nbytes"], "sha256": sha(ti["data"]),
                          "dequantized_f32_sha256": sha(deq.tobytes()),
                          "dequantized_first4": [float(v) for v in deq[:4]]})
    good = [g_kv("general.architecture", 8, "llama"), g_kv("test.u32", 4, 7)]
    gt = [{"name": "a", "ne": [4], "type": 0, "data": np.array([1, 2, 3, 4], F32).tobytes()},
          {"name": "b", "ne": [32], "type": 8,
           "data": ref_quantize(QT.Q8_0, np.linspace(-1, 1, 32, dtype=F32).reshape(1, 32)).tobytes()}]
    v2 = build_gguf(good, gt, version=2)
    (d / "good_v2.gguf").write_bytes(v2)
    parse_gguf(v2)
    check_against_gguf_py_reader(d / "good_v2.gguf", parse_gguf(v2))
    v3 = build_gguf(good, gt, version=3)
    (d / "good_v3.gguf").write_bytes(v3)
    check_against_gguf_py_reader(d / "good_v3.gguf", parse_gguf(v3))
    manifest = {
        "generator": "tools/make_conversion_goldens.py",
        "note": "valid files, built byte by byte; each must load. gguf-py's GGUFReader reads them and agrees "
                "with README's format on every key, tensor info and tensor byte.",
        "files": [
            {"file": "all_types.gguf", "version": 3, "alignment": 64, "data_start": parsed["data_start"],
             "size": len(blob),
             "metadata": [{"key": k, "type": VT_NAME[t],
                           **({"item_type": VT_NAME[v[0]], "value": [describe_scalar(v[0], i) for i in v[1]]}
                              if t == 9 else {"value": describe_scalar(t, v)})} for k, t, v in kvs_spec],
             "metadata_note": "one key per value type 0-12 and an array of every item type, including an "
                              "empty array (gguf-py's writer refuses to write one; llama.cpp reads it)",
             "tensors": described,
             "tensors_note": "ne is GGUF order (ne[0] fastest = the row length); F32..Q5_1 rows are the same 512 "
                             "values quantized, K-quant rows are random blocks (random_raw); "
                             "dequantized_f32_sha256 is gguf-py's dequantization"},
            {"file": "good_v2.gguf", "version": 2, "note": "GGUF v2: the same layout as v3 for a little-endian "
                                                           "file (v1 had 32-bit counts and lengths)",
             "size": len(v2), "sha256": sha(v2)},
            {"file": "good_v3.gguf", "version": 3, "note": "the base every gguf_bad/ case is derived from",
             "size": len(v3), "sha256": sha(v3),
             "tensors": [{"name": "a", "type": "F32", "ne": [4], "values": [1.0, 2.0, 3.0, 4.0]},
                         {"name": "b", "type": "Q8_0", "ne": [32], "note": "linspace(-1, 1, 32) quantized"}]},
        ],
    }
    write_json(d / "manifest.json", manifest)
    return manifest


def make_bad_gguf(out: Path) -> dict:
    d = out / "convert" / "gguf_bad"
    d.mkdir(parents=True)
    arch = g_kv("general.architecture", 8, "llama")
    u32kv = g_kv("test.u32", 4, 7)
    a = {"name": "a", "ne": [4], "type": 0, "data": np.array([1, 2, 3, 4], F32).tobytes()}
    b = {"name": "b", "ne": [32], "type": 8,
         "data": ref_quantize(QT.Q8_0, np.linspace(-1, 1, 32, dtype=F32).reshape(1, 32)).tobytes()}
    good = build_gguf([arch, u32kv], [a, b])
    cases = []

    def add(file, case, note, blob, **extra):
        (d / file).write_bytes(blob)
        cases.append({"file": file, "case": case, "note": note, **extra, "gguf_py": gguf_py_verdict(d / file)})

    add("bad_magic.gguf", "badMagic", "magic 'GGUG' instead of 'GGUF'", b"GGUG" + good[4:])
    add("version1.gguf", "unsupportedVersion", "version 1 (32-bit counts; unsupported)",
        good[:4] + struct.pack("<I", 1) + good[8:], version=1)
    add("version4.gguf", "unsupportedVersion", "version 4 (does not exist yet)",
        good[:4] + struct.pack("<I", 4) + good[8:], version=4)
    add("truncated_header.gguf", "truncated", "the file ends 10 bytes into the first key-value pair", good[:34])
    add("truncated_tensor_info.gguf", "truncated", "the file ends inside the tensor infos",
        good[:len(build_gguf([arch, u32kv], [])) - 0 + 20])
    add("tensor_count_huge.gguf", "countTooLarge", "tensor count 2^62 in a 200-byte file",
        build_gguf([arch, u32kv], [a, b], n_tensors=1 << 62), count=1 << 62)
    add("kv_count_huge.gguf", "countTooLarge", "key-value count 2^62 in a 200-byte file",
        build_gguf([arch, u32kv], [a, b], n_kv=1 << 62), count=1 << 62)
    long_key = struct.pack("<Q", 1 << 40) + b"general.architecture" + struct.pack("<I", 8) + g_str("llama")
    add("string_too_long.gguf", "stringTooLong", "the first key's length is 2^40", build_gguf([long_key, u32kv], [a, b]),
        length=1 << 40)
    bad_val = g_str("general.architecture") + struct.pack("<I", 8) + struct.pack("<Q", (1 << 64) - 1) + b"llama"
    add("string_value_too_long.gguf", "stringTooLong", "a string value's length is 2^64-1",
        build_gguf([bad_val, u32kv], [a, b]), length=(1 << 64) - 1)
    arr = g_str("test.array") + struct.pack("<IIQ", 9, 4, 1 << 62) + struct.pack("<I", 1)
    add("array_too_long.gguf", "arrayTooLong", "an array of 2^62 uint32 (its byte size, 2^64, overflows 64 bits)",
        build_gguf([arch, arr], [a, b]), count=1 << 62)
    arr2 = g_str("test.array") + struct.pack("<IIQ", 9, 8, 1 << 40) + g_str("x")
    add("string_array_too_long.gguf", "arrayTooLong", "an array of 2^40 strings (each at least 8 bytes)",
        build_gguf([arch, arr2], [a, b]), count=1 << 40)
    unk = g_str("test.weird") + struct.pack("<I", 99) + struct.pack("<I", 0)
    add("unknown_value_type.gguf", "unknownValueType", "a key-value pair of type 99", build_gguf([arch, unk], [a, b]),
        value_type=99)
    unk_item = g_str("test.weird") + struct.pack("<IIQ", 9, 13, 1) + struct.pack("<I", 0)
    add("unknown_array_item_type.gguf", "unknownValueType", "an array whose item type is 13",
        build_gguf([arch, unk_item], [a, b]), value_type=13)
    nested = g_str("test.nested") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 4, 1) + struct.pack("<I", 5)
    add("nested_array.gguf", "unknownValueType", "an array of arrays (item type 9): llama.cpp refuses nested "
        "arrays; gguf-py reads them", build_gguf([arch, nested], [a, b]), value_type=9)
    add("unknown_tensor_type.gguf", "unknownTensorType", "tensor 'b' has type 1234",
        build_gguf([arch, u32kv], [a, {**b, "type": 1234}]), tensor="b", tensor_type=1234)
    add("removed_tensor_type.gguf", "unknownTensorType", "tensor 'b' has type 4 (Q4_2, removed from ggml)",
        build_gguf([arch, u32kv], [a, {**b, "type": 4}]), tensor="b", tensor_type=4)
    add("data_out_of_bounds.gguf", "dataOutOfBounds", "tensor 'b' claims offset 4096, past the end of the file",
        build_gguf([arch, u32kv], [a, {**b, "offset": 4096}]), tensor="b")
    add("data_truncated.gguf", "dataOutOfBounds", "a valid header, but the file ends 10 bytes into tensor 'b'",
        good[:len(good) - 64 + 10], tensor="b")
    add("misaligned_offset.gguf", "misalignedData", "tensor 'b' at offset 33: not a multiple of the alignment (32)",
        build_gguf([arch, u32kv], [a, {**b, "offset": 33}]), tensor="b")
    add("overlapping_data.gguf", "misalignedData", "tensor 'b' at offset 0, on top of 'a' (llama.cpp requires each "
        "offset to equal the padded sum of the sizes before it)",
        build_gguf([arch, u32kv], [a, {**b, "offset": 0}]), tensor="b")
    add("bad_alignment.gguf", "misalignedData", "general.alignment = 48 (not a power of two)",
        build_gguf([arch, g_kv("general.alignment", 4, 48)], [a, b]), alignment=48)
    add("zero_alignment.gguf", "misalignedData", "general.alignment = 0",
        build_gguf([arch, g_kv("general.alignment", 4, 0)], [a, b]), alignment=0)
    add("duplicate_tensor.gguf", "duplicateTensor", "two tensors named 'a'",
        build_gguf([arch, u32kv], [a, {**b, "name": "a"}]), tensor="a")
    add("duplicate_key.gguf", "duplicateKey", "the key 'test.u32' appears twice",
        build_gguf([arch, u32kv, g_kv("test.u32", 4, 8)], [a, b]), key="test.u32")
    add("too_many_dimensions.gguf", "tooManyDimensions", "tensor 'b' has n_dims 9 (ggml's maximum is 4)",
        build_gguf([arch, u32kv], [a, {**b, "ne": [32] + [1] * 8}]), tensor="b", n_dims=9)
    add("size_overflow.gguf", "sizeOverflow", "tensor 'b' has ne [2^32, 2^32, 2^8]: the element count overflows 64 bits",
        build_gguf([arch, u32kv], [a, {**b, "type": 0, "ne": [1 << 32, 1 << 32, 1 << 8]}]), tensor="b")
    add("dimension_negative.gguf", "sizeOverflow", "tensor 'b' has ne[0] = 2^63 (negative as ggml's int64)",
        build_gguf([arch, u32kv], [a, {**b, "type": 0, "ne": [1 << 63]}]), tensor="b")
    add("row_not_block_multiple.gguf", "tensorShapeInvalid", "Q8_0 tensor 'b' with ne[0] = 33 (not a multiple of "
        "the 32-element block)", build_gguf([arch, u32kv], [a, {**b, "ne": [33]}]), tensor="b")
    add("bad_utf8_key.gguf", "invalidString", "a key that is not UTF-8 (0xff 0xfe)",
        build_gguf([arch, g_str(b"\xff\xfe") + struct.pack("<I", 4) + struct.pack("<I", 1)], [a, b]))
    (d / "good.gguf").write_bytes(good)
    manifest = {
        "generator": "tools/make_conversion_goldens.py",
        "note": "each file is hand-built; 'case' is the reader error it must raise (the extra cases beyond the "
                "issue's list use new names: duplicateKey, sizeOverflow, tensorShapeInvalid, invalidString); "
                "good.gguf is the valid base most cases were derived from (the same bytes as "
                "gguf_reader/good_v3.gguf) and must load. 'gguf_py' is what gguf-py's GGUFReader does with the "
                "file (run in a subprocess with a 2 GB address-space limit): it is not a hardened reader, and "
                "accepts several of these.",
        "cases": cases,
    }
    assert parse_gguf(good)
    for c in cases:
        try:
            parse_gguf((d / c["file"]).read_bytes())
        except (GGUFParseError, ValueError, UnicodeDecodeError, KeyError, AssertionError):
            continue
        sys.exit(f"error: the reference parser accepts {c['file']}")
    write_json(d / "manifest.json", manifest)
    return manifest


def gguf_py_verdict(path: Path) -> str:
    code = ("import resource,sys;resource.setrlimit(resource.RLIMIT_AS,(2<<30,2<<30));import gguf\n"
            "try:\n r=gguf.GGUFReader(sys.argv[1]);print('accepted: %d tensors, %d fields'%(len(r.tensors),len(r.fields)))\n"
            "except BaseException as e:\n print('raises %s: %s'%(type(e).__name__,str(e).splitlines()[0][:120] if str(e) else ''))\n")
    try:
        r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
        return (r.stdout.strip() or f"crashed (exit {r.returncode})").splitlines()[-1]
    except subprocess.TimeoutExpired:
        return "does not finish within 60 s"


# ---------------------------------------------------------------------------
# PyTorch: torch.save zips


def tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    elif t.dtype in (torch.uint16, torch.uint32, torch.uint64):
        t = t.view({torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}[t.dtype])
    return t.numpy().tobytes()


def describe_pt(path: Path, sd: dict) -> dict:
    """Tensors, storages and pickle opcodes of one torch.save file."""
    z = zipfile.ZipFile(path)
    names = z.namelist()
    prefix = names[0].split("/")[0]
    pkl = z.read(f"{prefix}/data.pkl")
    globals_, ops = [], []
    for op, arg, _ in pickletools.genops(pkl):
        if op.name not in ops:
            ops.append(op.name)
        if op.name == "GLOBAL":
            g = arg.replace(" ", ".")
            if g not in globals_:
                globals_.append(g)
    storages = {}
    seen = {}
    tensors = []
    for k, t in sd.items():
        st = t.untyped_storage()
        key = seen.setdefault(st.data_ptr(), str(len(seen)))
        storages[key] = f"{st.nbytes()} bytes, sha256 {sha(z.read(f'{prefix}/data/{key}'))}"
        tensors.append({"name": k, "dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                        "stride": list(t.stride()), "storage_offset": t.storage_offset(), "storage_key": key,
                        "contiguous_sha256": sha(tensor_bytes(t))})
    loaded = torch.load(path, weights_only=True, map_location="cpu")
    assert list(loaded.keys()) == list(sd.keys())
    for k, t in sd.items():
        l = loaded[k]
        assert l.dtype == t.dtype and l.shape == t.shape and l.stride() == t.stride(), k
        assert l.storage_offset() == t.storage_offset() and tensor_bytes(l) == tensor_bytes(t), k
    info = {
        "zip_members": [f"{i.filename} size {i.file_size} at {local_data_offset(path, i)}" for i in z.infolist()],
        "pickle_protocol": pkl[1] if pkl[:1] == b"\x80" else None,
        "pickle_globals": globals_, "pickle_opcodes": ops,
        "storages": storages, "tensors": tensors,
        "torch_load_weights_only": "loads; every tensor equal (dtype, shape, stride, storage offset, bytes)",
    }
    if hasattr(sd, "_metadata"):
        info["has_metadata_attribute"] = "the OrderedDict carries _metadata (set by BUILD with a dict "\
                                         "{'_metadata': OrderedDict}); loaded._metadata == " \
                                         + repr(dict(getattr(loaded, "_metadata", {})))
    tied = [(a, b) for i, a in enumerate(sd) for b in list(sd)[i + 1:] if sd[a] is sd[b]]
    if tied:
        info["same_object"] = [{"names": [a, b], "loaded_is_same_object": loaded[a] is loaded[b]} for a, b in tied]
    return info


def local_data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        h = f.read(30)
    n, e = struct.unpack_from("<HH", h, 26)
    return info.header_offset + 30 + n + e


def dtype_state_dict() -> collections.OrderedDict:
    g = rng(9)
    f = lambda n: torch.from_numpy(bell(g, n))  # noqa: E731
    sd = collections.OrderedDict()
    sd["f32"] = f(6).reshape(2, 3)
    sd["f64"] = f(3).double()
    sd["f16"] = f(4).half()
    sd["bf16"] = f(6).reshape(3, 2).bfloat16()
    sd["i64"] = torch.tensor([0, -1, 1 << 40, -(1 << 62)], dtype=torch.int64)
    sd["i32"] = torch.tensor([-(1 << 31), 7], dtype=torch.int32)
    sd["i16"] = torch.tensor([-32768, 32767, 5], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 127, 0, 1], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 128], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True, True, False], dtype=torch.bool)
    sd["scalar"] = torch.tensor(2.5, dtype=torch.float32)
    sd["empty"] = torch.zeros(0, 4, dtype=torch.float32)
    base = f(24).reshape(4, 6)
    sd["transposed"] = base.t()              # non-contiguous: shape [6, 4], stride [1, 6]
    sd["row_view"] = base[2]                 # shares base's storage, storage offset 12
    sd["strided"] = base[::2, 1::2]          # shape [2, 3], stride [12, 2], offset 1
    tied = f(4).reshape(2, 2).bfloat16()
    sd["tied_a"] = tied                      # the same tensor object twice: memo (BINGET) reuse
    sd["tied_b"] = tied
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    return sd


def unsigned_state_dict() -> dict:
    return {"u16": torch.tensor([0, 65535, 1234], dtype=torch.uint16),
            "u32": torch.tensor([0, 4294967295], dtype=torch.uint32),
            "u64": torch.tensor([1 << 63], dtype=torch.uint64)}


def make_pytorch(out: Path, tmp: Path) -> dict:
    d = out / "convert" / "pytorch"
    d.mkdir(parents=True)
    files = {}

    def save(rel: str, sd, note: str):
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        torch.save(sd, p)
        files[rel] = {"note": note, "size": p.stat().st_size, "sha256": sha(p.read_bytes()), **describe_pt(p, sd)}

    save("state_dict_dtypes/pytorch_model.bin", dtype_state_dict(),
         "torch.save of an OrderedDict with _metadata, as nn.Module.state_dict() returns: every common dtype, "
         "a 0-d tensor, an empty tensor, non-contiguous views (transposed, strided, storage offset) of one "
         "shared storage, and one tensor object stored under two names")
    save("state_dict_unsigned/pytorch_model.bin", unsigned_state_dict(),
         "uint16/uint32/uint64: torch pickles these with torch._utils._rebuild_tensor_v3 and an "
         "UntypedStorage (with the dtype as a 7th argument), not a typed storage class")
    sd = micro_state_dict()
    cfg_dir = d / "micro-llama"
    cfg_dir.mkdir()
    micro_config().save_pretrained(cfg_dir)
    save("micro-llama/pytorch_model.bin", {k: v.contiguous() for k, v in sd.items()},
         "the micro llama (1 layer, tied embeddings, bf16) as transformers' save_pretrained("
         "safe_serialization=False) wrote it: a plain dict (EMPTY_DICT, no _metadata)")
    shard_dir = d / "micro-llama-sharded"
    shard_dir.mkdir()
    micro_config().save_pretrained(shard_dir)
    names = sorted(sd)
    first = set(names[: len(names) // 2])
    weight_map = {}
    for i, part in enumerate([[n for n in names if n in first], [n for n in names if n not in first]]):
        fname = f"pytorch_model-{i + 1:05d}-of-00002.bin"
        save(f"micro-llama-sharded/{fname}", {k: sd[k].contiguous() for k in part},
             f"shard {i + 1} of 2 of the micro llama")
        weight_map.update({k: fname for k in part})
    total = sum(t.numel() * t.element_size() for t in sd.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    fc.write_text(shard_dir / "pytorch_model.bin.index.json", json.dumps(index, indent=2, sort_keys=True) + "\n")
    # transformers loads both folders to the same tensors
    from transformers import AutoModelForCausalLM
    checks = {}
    for sub in ("micro-llama", "micro-llama-sharded"):
        m = AutoModelForCausalLM.from_pretrained(str(d / sub), dtype=torch.bfloat16)
        msd = m.state_dict()
        checks[sub] = all(tensor_bytes(msd[k]) == tensor_bytes(v) for k, v in sd.items()) and \
            tensor_bytes(msd["lm_head.weight"]) == tensor_bytes(sd["model.embed_tokens.weight"])
    manifest = {
        "generator": "tools/make_conversion_goldens.py",
        "note": "torch.save files (torch " + torch.__version__.split("+")[0] + "). For every tensor: dtype, shape, "
                "stride, storage offset, storage key and the sha256 of its bytes made contiguous (row-major, "
                "little-endian, bf16 as its 16-bit patterns); torch.load(weights_only=True) gives the same. "
                "zip_members: data_offset is where the member's bytes start in the file (a multiple of 64). "
                "transformers_loads: AutoModelForCausalLM.from_pretrained on the folder gives these tensors "
                "(lm_head tied to model.embed_tokens).",
        "transformers_loads": checks,
        "files": files,
    }
    write_json(d / "manifest.json", manifest)
    return manifest


def pickle_splice(base_pkl: bytes, marker: bytes, evil: bytes) -> bytes:
    """Replaces the pickled marker object (GLOBAL ckpt_marker + args + REDUCE) with `evil`."""
    i = base_pkl.index(b"c__main__\nMarker\n")
    j = base_pkl.index(b"\x85", base_pkl.index(marker, i) + len(marker))
    while base_pkl[j:j + 1] != b"R":  # TUPLE1, then BINPUT n, then REDUCE
        j += 2 if base_pkl[j:j + 1] == b"q" else 1
    j += 1
    return base_pkl[:i] + evil + base_pkl[j:]


class Marker:
    def __reduce__(self):
        return (Marker, ("MARKER",))


def write_torch_zip(path: Path, records: list[tuple[str, bytes]]):
    """Writes records with torch's own zip writer (PyTorchFileWriter): same layout as torch.save."""
    from torch.serialization import _get_storage_alignment, get_crc32_options
    with open(path, "wb") as f:
        w = torch._C.PyTorchFileWriter(f, get_crc32_options(), _get_storage_alignment())
        for name, data in records:
            w.write_record(name, data, len(data))
        w.write_end_of_file()


def unicode_op(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def make_bad_pickles(out: Path, tmp: Path) -> dict:
    d = out / "convert" / "pickles_bad"
    d.mkdir(parents=True)
    weight = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float32)
    probe = tmp / "probe.bin"
    torch.save({"weight": weight, "evil": Marker()}, probe)
    z = zipfile.ZipFile(probe)
    pkl = z.read("probe/data.pkl")
    storage = z.read("probe/data/0")
    cmd = "echo ckpt fixture: this command must never run"
    arg1 = unicode_op(cmd) + b"\x85"  # one-tuple
    payloads = [
        ("forbidden_os_system.bin", "os.system", "GLOBAL", b"cos\nsystem\n" + arg1 + b"R"),
        ("forbidden_posix_system.bin", "posix.system", "GLOBAL",
         b"cposix\nsystem\n" + arg1 + b"R"),  # what pickle writes for os.system on Linux
        ("forbidden_builtins_eval.bin", "builtins.eval", "GLOBAL",
         b"cbuiltins\neval\n" + unicode_op("__import__('os').system('echo never')") + b"\x85R"),
        ("forbidden_builtin_eval_py2.bin", "__builtin__.eval", "GLOBAL",
         b"c__builtin__\neval\n" + unicode_op("1+1") + b"\x85R"),
        ("forbidden_subprocess_popen.bin", "subprocess.Popen", "GLOBAL",
         b"csubprocess\nPopen\n" + b"(" + unicode_op("echo") + unicode_op("never") + b"l" + b"\x85R"),
        ("forbidden_collections_counter.bin", "collections.Counter", "GLOBAL",
         b"ccollections\nCounter\n" + b"}" + unicode_op("a") + b"K\x01s" + b"\x85R"),
        ("forbidden_stack_global.bin", "os.system", "STACK_GLOBAL",
         unicode_op("os") + unicode_op("system") + b"\x93" + arg1 + b"R"),
        ("forbidden_inst.bin", "os.system", "INST", b"(" + unicode_op(cmd) + b"ios\nsystem\n"),
        ("forbidden_torch_load.bin", "torch.load", "GLOBAL",
         b"ctorch\nload\n" + unicode_op("/nonexistent") + b"\x85R"),
        ("forbidden_getattr.bin", "builtins.getattr", "GLOBAL",
         b"cbuiltins\ngetattr\n(ccollections\nOrderedDict\n" + unicode_op("fromkeys") + b"tR"),
    ]
    cases = []
    records_rest = [(".format_version", b"1"), (".storage_alignment", b"64"), ("byteorder", b"little"),
                    ("data/0", storage)]
    for fname, glob, opcode, evil in payloads:
        data = pickle_splice(pkl, b"MARKER", evil)
        ops = [op.name for op, _, _ in pickletools.genops(data)]  # the stream is well-formed
        assert opcode in ops
        p = d / fname
        write_torch_zip(p, [("data.pkl", data)] + records_rest)
        cases.append({"file": fname, "case": "forbiddenGlobal", "global": glob, "opcode": opcode,
                      "note": f"a torch.save zip whose data.pkl maps 'evil' to {glob}(...) via {opcode}; "
                              "'weight' before it is a normal tensor",
                      "torch_weights_only": torch_verdict(p)})
    good = d / "good.bin"
    write_torch_zip(good, [("data.pkl", pickle_splice(pkl, b"MARKER", unicode_op("fine")))] + records_rest)
    good_bytes = good.read_bytes()
    (d / "truncated.bin").write_bytes(good_bytes[: len(good_bytes) * 6 // 10])
    cases.append({"file": "truncated.bin", "case": "truncatedZip",
                  "note": f"good.bin cut to {len(good_bytes) * 6 // 10} of {len(good_bytes)} bytes (no central "
                          "directory)", "torch_weights_only": torch_verdict(d / "truncated.bin")})
    zg = zipfile.ZipFile(good)
    member = next(i for i in zg.infolist() if i.filename.endswith("data/0"))
    off = local_data_offset(good, member)
    corrupt = bytearray(good_bytes)
    corrupt[off + 4] ^= 0x01
    (d / "bad_crc.bin").write_bytes(bytes(corrupt))
    cases.append({"file": "bad_crc.bin", "case": "badCRC",
                  "note": f"one bit of {member.filename} flipped (byte {off + 4}); its CRC-32 in the data descriptor "
                          "and central directory no longer matches", "member": member.filename,
                  "torch_weights_only": torch_verdict(d / "bad_crc.bin")})
    # deflated: rewritten by Python's zipfile, fixed timestamps, zlib level 9
    defl = d / "deflated.bin"
    with zipfile.ZipFile(defl, "w") as zw:
        for i in zg.infolist():
            zi = zipfile.ZipInfo(i.filename, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zw.writestr(zi, zg.read(i.filename), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    methods = sorted({i.compress_type for i in zipfile.ZipFile(defl).infolist()})
    cases.append({"file": "deflated.bin", "case": "deflatedMember",
                  "note": "good.bin's members rewritten with Python's zipfile, every member deflated (method 8, "
                          f"zlib level 9, zlib {zlib.ZLIB_VERSION}), no data descriptors, no 64-byte alignment: "
                          "valid, must load like good.bin", "methods": methods,
                  "torch_weights_only": torch_verdict(defl)})
    legacy = d / "legacy_format.bin"
    torch.save({"weight": weight}, legacy, _use_new_zipfile_serialization=False)
    # The legacy format names storages by their memory address (str(storage._cdata)): replace it
    # with a fixed string of the same length so the file is reproducible.
    key = str(weight.untyped_storage()._cdata).encode()
    blob = legacy.read_bytes()
    assert blob.count(key) >= 2, "storage key not found in the legacy file"
    legacy.write_bytes(blob.replace(key, b"1" * len(key)))
    assert tensor_bytes(torch.load(legacy, weights_only=True)["weight"]) == tensor_bytes(weight)
    cases.append({"file": "legacy_format.bin", "case": "legacyFormat",
                  "note": "torch.save(..., _use_new_zipfile_serialization=False): the pre-1.6 format (a bare "
                          "pickle stream, not a zip); ckpt may refuse it with a clear message",
                  "torch_weights_only": torch_verdict(legacy)})
    loaded = torch.load(good, weights_only=True)
    assert tensor_bytes(loaded["weight"]) == tensor_bytes(weight) and loaded["evil"] == "fine"
    manifest = {
        "generator": "tools/make_conversion_goldens.py",
        "note": "good.bin is a valid torch.save-layout zip ({'weight': f32 [1, 2, 3], 'evil': 'fine'}) and must "
                "load; every forbidden*.bin is good.bin with 'evil' bound to a call of a forbidden callable, "
                "written with torch's own zip writer (PyTorchFileWriter): a reader must refuse it at the "
                "GLOBAL / STACK_GLOBAL / INST opcode and name the global, without calling anything. "
                "torch_weights_only is what torch.load(weights_only=True) says (first line). Nothing here was "
                "ever loaded with weights_only=False.",
        "good": {"file": "good.bin", "weight_sha256": sha(tensor_bytes(weight)), "evil": "fine"},
        "cases": cases,
    }
    write_json(d / "manifest.json", manifest)
    return manifest


def torch_verdict(path: Path) -> str:
    try:
        r = torch.load(path, weights_only=True, map_location="cpu")
        return "loads: " + ", ".join(sorted(r.keys()))
    except Exception as e:  # noqa: BLE001
        boiler = ("Weights only load failed", "(1)", "(2)", "Check the documentation", "Please file an issue")
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.strip().startswith(boiler)]
        key = (lines[0] if lines else "").replace("WeightsUnpickler error: ", "")
        return f"raises {type(e).__name__}: {key[:160]}"


# ---------------------------------------------------------------------------
# README


def make_readme(out: Path, quants: dict, gguf_doc: dict, reader: dict, bad: dict, pt: dict, badpk: dict):
    text = readme_text(quants, gguf_doc, reader, bad, pt, badpk, out)
    fc.write_text(out / "convert" / "README.md", text)


def readme_text(quants, gguf_doc, reader, bad, pt, badpk, out) -> str:
    R = {}
    for cls in ("BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"):
        c = getattr(gq, cls)
        R[cls + ".q"] = src_ref(c.quantize_blocks)
        R[cls + ".d"] = src_ref(c.dequantize_blocks)
    for cls in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"):
        R[cls + ".d"] = src_ref(getattr(gq, cls).dequantize_blocks)
    R["scale_min"] = src_ref(gq.Q4_K.get_scale_min)
    R["roundf"] = src_ref(gq.np_roundf)
    R["quantize"] = src_ref(gq.quantize)
    R["dequantize"] = src_ref(gq.dequantize)
    R["rows"] = src_ref(gq._type_traits[QT.Q8_0].quantize_rows)
    W = gguf.GGUFWriter
    R["hdr"] = src_ref(W.write_header_to_file)
    R["kv"] = src_ref(W.write_kv_data_to_file)
    R["ti"] = src_ref(W.write_ti_data_to_file)
    R["tensors"] = src_ref(W.write_tensors_to_file)
    R["packval"] = src_ref(W._pack_val)
    R["pad"] = src_ref(W.write_padding)
    v = versions()
    tl = gguf_doc["tiny-llama.gguf"]
    micro = gguf_doc["micro-llama-tied.gguf"]
    wg = gguf_doc["writer_goldens"]
    tf = tl["transformers"]
    tok = tl["tokenizer"]
    sizes = {p.relative_to(out / "convert").as_posix(): p.stat().st_size
             for p in sorted((out / "convert").rglob("*")) if p.is_file() and p.name != "README.md"}
    total = sum(sizes.values())
    def exact(t):
        return "yes" if t["equals_original_bf16"] else f"{t['max_abs_diff_vs_original']:.3g}"
    types_table = "\n".join(
        f"| `{t['name']}` | {t['type']} | {t['ne']} | `{t['hf_name']}` | {exact(t)} |" for t in tl["tensors"])
    kv_order = "\n".join(f"{i + 1}. `{m['key']}` {m['type']}" + (f" of {m['item_type']}" if "item_type" in m else "")
                         + (f" = {json.dumps(m['value'], ensure_ascii=False)}" if "value" in m and m["type"] != "ARRAY" else
                            f" ({m['count']} items)" if "count" in m else "")
                         for i, m in enumerate(readme_cache["f16_metadata"]))
    bad_rows = "\n".join(f"| `{c['file']}` | {c['case']} | {c['note']} | {c['gguf_py']} |" for c in bad["cases"])
    pk_rows = "\n".join(f"| `{c['file']}` | {c['case']}{' `' + c['global'] + '` (' + c['opcode'] + ')' if 'global' in c else ''} | "
                        f"{c['torch_weights_only']} |" for c in badpk["cases"])
    tokstr = "\n".join(f"| {json.dumps(r['text'], ensure_ascii=False)} | {' '.join(map(str, r['ids'])) or '(none)'} |"
                       for r in tok["strings"])
    groups: dict[str, list[int]] = {}
    for k, n in sizes.items():
        top = k.split("/")[0] + ("/" if "/" in k else "")
        groups.setdefault(top, []).append(n)
    files_rows = "\n".join(f"| `{k}` | {len(ns)} | {sum(ns):,} |" for k, ns in groups.items())
    writer_rows = "\n".join(f"| {k} | {e['file_type']} | {e['size']:,} | `{e['file_sha256'][:16]}…` |"
                            for k, e in wg.items() if k != "note")
    dt = pt["files"]["state_dict_dtypes/pytorch_model.bin"]
    return f"""\
# Conversion goldens (GGUF, PyTorch .bin, safetensors -> GGUF)

Made by `tools/make_conversion_goldens.py` (run by `tools/make_fixtures.sh`) with gguf-py {v['gguf']},
torch {v['torch']}, transformers {v['transformers']}, safetensors {v['safetensors']}, numpy {v['numpy']}.
Every byte is regenerated identically by a second run. `file:line` references are to the pinned
gguf-py (`.venv/lib/python3.11/site-packages/gguf/...`); llama.cpp's converter is
`convert_hf_to_gguf.py` (now split into `conversion/base.py` and `conversion/llama.py`), which the
script emulates step by step (gguf-py's wheel does not ship it).

Everything the README states about quantization is also implemented, independently of gguf-py's numpy
code, by `ref_quantize` / `ref_dequantize` in the script, and checked bit for bit against gguf-py on the
goldens and on {quants['reference_sweep']['counts']['Q8_0']['quantized_blocks']} more random blocks per type.

| file or folder | files | bytes |
|---|---|---|
{files_rows}

Total {total:,} bytes, plus this README.

## 1. Block formats and the exact arithmetic (gguf-py `quants.py`)

All arithmetic is IEEE float32 unless said otherwise, each operation rounded separately: **no fused
multiply-add** (numpy never fuses; in Swift write `a * b + c` as two statements or check that the
compiler does not contract). `fp16(x)` is float32 -> binary16 with round-to-nearest-even, subnormals
kept, overflow to ±inf (numpy's cast, {R['quantize']}); `f32(h)` is the exact widening. `1/d` is
the float32 division `1.0f / d`, taken as 0 when `d == 0`. Quantizers see the tensor as rows of `ne[0]`
values cut into blocks (`{R['rows']}`); a block never crosses a row. Compare results as **bit
patterns**: `-0.0` appears (e.g. `0.0 * -3`) and must match.

Type ids (GGML): F32 0, F16 1, Q4_0 2, Q4_1 3, Q5_0 6, Q5_1 7, Q8_0 8, Q2_K 10, Q3_K 11, Q4_K 12,
Q5_K 13, Q6_K 14, BF16 30. (4 and 5 were Q4_2/Q4_3, removed: refuse them.)

**F16** (2 bytes/value): quantize `fp16(x)`; dequantize `f32(h)`.

**BF16** (2 bytes/value, {R['BF16.q']}): `n = bits(x)`; if `(n & 0x7fffffff) > 0x7f800000` (NaN)
`n = (n & 0xffff0000) | 0x00400000` (quiet, top payload kept); then round to nearest even:
`(n + 0x7fff + ((n >> 16) & 1)) >> 16` computed in 64 bits (no wrap), low 16 bits stored.
Float32 max rounds up to inf (0x7f80). Dequantize: `bits << 16` ({R['BF16.d']}).

**Q8_0** (32 values, 34 bytes: `d` fp16 @0, `qs` int8[32] @2). Quantize ({R['Q8_0.q']}):
`amax = max|x|`, `d = amax / 127` (float32 division), `id = 1/d`, `q[j] = roundf(x[j] * id)` where
roundf is C's: nearest, **halfway away from zero** (`np_roundf`, {R['roundf']}; it is not np.round,
which ties to even), stored as int8; then `d` is stored as `fp16(d)`. The quants come from the float32 d
(before fp16 rounding), as in llama.cpp's reference `quantize_row_q8_0_ref`. Dequantize
({R['Q8_0.d']}): `y[j] = f32(q[j]) * f32(d)`.

**Q4_0** (32 values, 18 bytes: `d` fp16 @0, `qs` u8[16] @2). Quantize ({R['Q4_0.q']}): `max` = the
**signed** value of the first element with the largest `|x|` (argmax takes the first of equals),
`d = max / -8`, `id = 1/d`, `q[j] = min(15, (uint8) trunc(x[j] * id + 8.5f))` — the `+ 8.5` is a
float32 addition that rounds (0.49999997 + 8.5 = 9.0 in float32, so q = 9), trunc toward zero, never
negative (x·id ≥ −8). Byte `j` (0..15) = `q[j] | q[j+16] << 4`: element j in the low nibble, element
j+16 in the high nibble. Dequantize ({R['Q4_0.d']}): `y[j] = f32(d) * f32(nibble(j) - 8)`.

**Q4_1** (32 values, 20 bytes: `d` fp16 @0, `m` fp16 @2, `qs` u8[16] @4). Quantize ({R['Q4_1.q']}):
`min`, `max` of the block, `d = (max - min) / 15`, `id = 1/d`,
`q[j] = min(15, trunc((x[j] - min) * id + 0.5f))`; stores `fp16(d)`, `fp16(min)`, nibbles as Q4_0.
Dequantize ({R['Q4_1.d']}): `y = (f32(d) * f32(q)) + f32(m)` (two roundings). A block with |min| > 65504
stores m = ±inf (not in the goldens).

**Q5_0** (32 values, 22 bytes: `d` fp16 @0, `qh` u8[4] @2, `qs` u8[16] @6). Quantize ({R['Q5_0.q']}):
as Q4_0 with `d = max / -16` and `q = min(31, trunc(x * id + 16.5f))`; `qs[j] = (q[j] & 15) | (q[j+16] & 15) << 4`;
`qh` is a little-endian uint32 whose bit j is bit 4 of `q[j]` (j = 0..31). Dequantize
({R['Q5_0.d']}): `q = nibble(j) | ((qh >> j) & 1) << 4`, `y = f32(d) * f32(q - 16)`.

**Q5_1** (32 values, 24 bytes: `d` fp16 @0, `m` fp16 @2, `qh` u8[4] @4, `qs` u8[16] @8). Quantize
({R['Q5_1.q']}): as Q4_1 with `d = (max - min) / 31`, `q = min(31, trunc((x - min) * id + 0.5f))`,
`qh` as Q5_0. Dequantize ({R['Q5_1.d']}): `y = (f32(d) * f32(q)) + f32(m)`.

K-quants: 256 values per block; gguf-py {v['gguf']} can only dequantize them (its quantizers raise
NotImplementedError), so the goldens are random raw blocks with finite fp16 scales. Element index
`p` = 0..255 within the block:

**Q2_K** (84 bytes: `scales` u8[16] @0, `qs` u8[64] @16, `d` fp16 @80, `dmin` fp16 @82; {R['Q2_K.d']}):
`s = scales[p/16]`, `q = (qs[(p/128)*32 + p%32] >> (2*((p%128)/32))) & 3`,
`y = (f32(d) * (s & 15)) * q - (f32(dmin) * (s >> 4))` — i.e. `dl*q - ml` with `dl`, `ml` rounded first.

**Q3_K** (110 bytes: `hmask` u8[32] @0, `qs` u8[64] @32, `scales` u8[12] @96, `d` fp16 @108; {R['Q3_K.d']}):
16 six-bit scales, for i = 0..15: `low = (scales[i%8] >> (4*(i/8))) & 15`,
`high = (scales[8 + i%4] >> (2*(i/4))) & 3`, `sc[i] = (low | high << 4) - 32` (signed);
`ql = (qs[(p/128)*32 + p%32] >> (2*((p%128)/32))) & 3`, `hbit = (hmask[p%32] >> (p/32)) & 1`,
`q = ql - (hbit ? 0 : 4)`; `y = (f32(d) * sc[p/16]) * q`.

**Q4_K** (144 bytes: `d` fp16 @0, `dmin` fp16 @2, `scales` u8[12] @4, `qs` u8[128] @16; {R['Q4_K.d']},
scales {R['scale_min']}): 8 sub-blocks of 32 with 6-bit scale `sc` and min `mn`: for j < 4
`sc[j] = s[j] & 63`, `mn[j] = s[j+4] & 63`; for j ≥ 4 `sc[j] = (s[j+4] & 15) | (s[j-4] >> 6) << 4`,
`mn[j] = (s[j+4] >> 4) | (s[j] >> 6) << 4`. With `j = p/32`: `q = (qs[(j/2)*32 + p%32] >> (4*(j%2))) & 15`,
`y = (f32(d) * sc[j]) * q - (f32(dmin) * mn[j])`.

**Q5_K** (176 bytes: `d` @0, `dmin` @2, `scales` u8[12] @4, `qh` u8[32] @16, `qs` u8[128] @48; {R['Q5_K.d']}):
as Q4_K plus `q |= ((qh[p%32] >> j) & 1) << 4`.

**Q6_K** (210 bytes: `ql` u8[128] @0, `qh` u8[64] @128, `scales` int8[16] @192, `d` fp16 @208; {R['Q6_K.d']}):
`h = p/128`, `lo = (ql[h*64 + p%64] >> (4*((p%128)/64))) & 15`, `hi = (qh[h*32 + p%32] >> (2*((p%128)/32))) & 3`,
`q = (lo | hi << 4) - 32`, `y = (f32(d) * scales[p/16]) * q`.

### quants.safetensors / quants.json

For each type T of F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1: `T.input` F32 [2,256], `T.quantized` U8 (the
stored bytes, rows of `256/block*type_size`), `T.dequantized` F32 [2,256]; for every type incl. the
K-quants `T.random_raw` U8 and `T.random_dequantized` F32. The 16 input blocks of the Q types: zeros,
a constant block (Q4_1/Q5_1 d = 0), tiny values (d underflows to fp16 0: quants computed, values
dequantize to ±0), fp16-subnormal d, |x| up to 6e4, the largest |x| negative, two equal |max| of
opposite sign in both orders, a ramp, random blocks, and four blocks per type built on rounding
boundaries (d exactly 1 or −1 so x·id + 8.5 lands on .5 ties and on float32 rounding of the addition,
and an inexact 1/d). F16/BF16 inputs: overflow, halfway ties, subnormals, and for BF16 NaNs with
payloads. Not covered, on purpose: blocks whose d overflows fp16 (|max| > 65504·127 for Q8_0,
·8 for Q4_0, ·16 for Q5_0; range > 65504·15 for Q4_1): d is stored as inf and 0·inf makes NaN, whose
sign bit differs between x86 and ARM; and float32-subnormal blocks whose 1/d is inf (gguf-py then
converts NaN to int8, which is undefined).

## 2. GGUF files (reader)

Little-endian. Header: magic `GGUF` (bytes 47 47 55 46), `u32 version` (2 or 3: identical layout for
little-endian files; 1 used u32 counts and is refused), `u64 n_tensors`, `u64 n_kv`. Then n_kv pairs:
key = string (`u64 length` + UTF-8 bytes, no NUL), `u32 type`, value. Types: 0 u8, 1 i8, 2 u16, 3 i16,
4 u32, 5 i32, 6 f32, 7 bool (1 byte), 8 string, 9 array (`u32 item type`, `u64 count`, items; an item
type of 9, an array of arrays, is refused by llama.cpp's gguf.cpp and read by gguf-py), 10 u64, 11 i64, 12 f64 (gguf-py writer: {R['packval']}). Then n_tensors infos:
name (string), `u32 n_dims` (≤ 4), `u64 ne[n_dims]` (ne[0] = the contiguous row length = the last
PyTorch dim), `u32 type`, `u64 offset` (relative to the data section). The data section starts at the
end of the infos rounded up to `general.alignment` (u32, a power of two; 32 when absent). llama.cpp
requires tensor i's offset to equal the sum of the previous tensors' sizes each rounded up to the
alignment, i.e. in order, contiguous, no gap and no overlap; a tensor's size is `ne[0]/block ·
type_size · ne[1]·ne[2]·ne[3]`, `ne[0]` a multiple of the block size. gguf-py pads every tensor,
the last included, with zero bytes to the alignment ({R['tensors']}, {R['pad']}), so the file length
is data_start + the padded sum.

`gguf_reader/`: `all_types.gguf` (one key of every value type, an array of every item type and an
empty array, alignment 64, one [2,256] tensor of every supported type, a 1-d and a 4-d F32 tensor),
`good_v2.gguf`, `good_v3.gguf`; their `manifest.json` gives every expected value and hash.

`gguf_bad/` (`manifest.json`: file, case, note, and what gguf-py's reader does; gguf-py is not a
hardened reader: it accepts several of these):

| file | case | what is wrong | gguf-py {v['gguf']} |
|---|---|---|---|
{bad_rows}

## 3. GGUF -> Hugging Face (`tiny-llama.gguf`, `micro-llama-tied.gguf`, `gguf.json`)

`tiny-llama.gguf` is fixtures/models/tiny-llama converted the way `convert_hf_to_gguf.py --outtype q8_0`
does, with one GGML type per tensor group so that one file has F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1
(`general.file_type` stays 7). Tensors are in the converter's order (the safetensors names sorted, so
`output.weight` first). `gguf.json` lists every key (type, value; arrays by count, first/last items
and the sha256 of their bytes) and every tensor (type, ne, offset, sha256 of its bytes) with the Hugging
Face tensor it must become: `hf_f32_sha256` is the sha256 of the float32 values after gguf-py
dequantization and the inverse Q/K permutation (row-major, little-endian).

| GGUF tensor | type | ne | HF tensor | equals the bf16 original? (else max abs diff) |
|---|---|---|---|---|
{types_table}

**Names**: `token_embd` -> `model.embed_tokens`, `blk.N.attn_norm` -> `model.layers.N.input_layernorm`,
`attn_q/attn_k/attn_v/attn_output` -> `self_attn.q_proj/k_proj/v_proj/o_proj`, `ffn_norm` ->
`post_attention_layernorm`, `ffn_gate/ffn_up/ffn_down` -> `mlp.gate_proj/up_proj/down_proj`,
`output_norm` -> `model.norm`, `output` -> `lm_head` (absent: `tie_word_embeddings: true`, as in
`micro-llama-tied.gguf`). PyTorch shape = ne reversed.

**Q/K permutation** (`LlamaModel.permute` in conversion/llama.py): for `attn_q` with `n = n_head` and
`attn_k` with `n = n_head_kv`, rows are grouped per head of `D = rows/n`; the converter wrote
`w.reshape(n, 2, D/2, cols).swapaxes(1, 2)`, i.e. GGUF row `h*D + 2*i + s` = HF row `h*D + s*D/2 + i`
(i < D/2, s ∈ {{0,1}}). The inverse (to HF): HF row `h*D + s*D/2 + i` = GGUF row `h*D + 2*i + s`
(`w.reshape(n, D/2, 2, cols).swapaxes(1, 2)`, as transformers does). Dequantize first (blocks run along
rows, so the row permutation never splits a block), then permute rows.

**config.json** from metadata (`expected_config` in gguf.json): hidden_size = `llama.embedding_length`,
intermediate_size = `llama.feed_forward_length`, num_hidden_layers = `llama.block_count`,
num_attention_heads = `llama.attention.head_count`, num_key_value_heads = `llama.attention.head_count_kv`,
head_dim = `llama.attention.key_length` (or `llama.rope.dimension_count`), max_position_embeddings =
`llama.context_length`, rms_norm_eps = `llama.attention.layer_norm_rms_epsilon` (an f32:
9.999999747378752e-06 as a double, transformers keeps that; print the shortest float32 repr, 1e-05, if
you want config.json to round-trip), rope_theta = `llama.rope.freq_base`, vocab_size =
`llama.vocab_size` (else the token count), bos/eos = `tokenizer.ggml.bos_token_id`/`eos_token_id`.

**transformers check**: `{tf['call']}` gives tensors bitwise equal to `hf_f32_sha256`'s values for
{tf['tensors_bitwise_equal_to_expected']} tensors (max |diff| to the bf16 original
{tf['max_abs_diff_vs_original_bf16']:.4g}, the quantization error); for `micro-llama-tied.gguf` (BF16)
transformers returns the bf16 originals exactly: {micro['transformers_from_pretrained_equal']}, tied:
{micro['transformers_tie_word_embeddings']}.

**Tokenizer** (`tokenizer.ggml.model` = "gpt2"): `tokens[i]` is the token of id i in byte-level spelling
(exactly tokenizer.json's vocab), `token_type` 1 normal / 3 control (`<|endoftext|>`, id 0), `merges` are
"left right" strings in rank order, `pre` = "{TOKENIZER_PRE}" (see note in gguf.json:
convert_hf_to_gguf.py does not recognise a freshly trained vocabulary; "gpt-2" is llama.cpp's name for
ByteLevel + GPT-2's split regex). Rebuilt tokenizer.json: BPE model with that vocab and merges,
pre_tokenizer `ByteLevel(add_prefix_space=false, use_regex=true)`, decoder ByteLevel, control tokens as
special added tokens. transformers' GGUF tokenizer ({tok['class']}) has vocab equal
{tok['rebuilt_vocab_equals_original']}, merges equal {tok['rebuilt_merges_equal_original']} and gives
the original tokenizer's ids on every test string (no special tokens added; with them, "Hello world" is
still {tok['with_special_tokens_hello_world']}: no BOS):

| text | ids |
|---|---|
{tokstr}

## 4. safetensors -> GGUF (`writer_goldens` in gguf.json)

The converter's procedure, which the goldens follow exactly (whole-file sha256 given per type):

1. Tensors in the order of the safetensors header names (sorted); bf16/other dtypes widened to f32
   first (f16/f32 kept); `q_proj.weight` permuted with n_head, `k_proj.weight` with n_head_kv; renamed.
2. Type: F32 for 1-D tensors and `*_norm.weight`; every other tensor (token_embd and output included)
   in the target type: F32 raw, F16 `fp16(x)`, BF16 as §1, Q8_0 / Q4_0 by §1's quantizers. Written
   as rows of ne[0].
3. Keys, in this order (`f16` shown; only `general.file_type` changes: f32 0, f16 1, bf16 32, q8_0 7,
   q4_0 2):

{kv_order}

   `general.name` comes from the model folder name (`tiny-llama` -> "Tiny Llama", gguf-py
   `Metadata.load`), `general.size_label` from the parameter count ("263K"). Arrays use item type
   STRING for tokens/merges and INT32 for token_type; ids are UINT32.
4. Layout: header, keys, tensor infos (offsets = running sum of sizes padded to 32), zero padding to
   32, tensors each padded to 32 ({R['hdr']}, {R['kv']}, {R['ti']}).

| --outtype | general.file_type | bytes | sha256 |
|---|---|---|---|
{writer_rows}

q4_0 is not a `convert_hf_to_gguf.py` --outtype (llama-quantize makes Q4_0 files and keeps some tensors
in other types); the golden applies the same procedure with gguf.quants Q4_0 to every 2-D tensor.

## 5. PyTorch `pytorch_model.bin` (torch {v['torch']} `torch.save`)

A ZIP archive (no compression, method 0). Member names are `<stem>/...` where stem is the file name
without extension (`pytorch_model/data.pkl`; `archive/` when saved to a buffer): find `*/data.pkl`.
Members in order: `data.pkl`, `.format_version` ("1"), `.storage_alignment` ("64"), `byteorder`
("little"), `data/0`, `data/1`, ... (one per storage, key = its number), `version` ("3\\n"),
`.data/serialization_id` (40 decimal digits; reproducible: the same records give the same id). Every local header has time/date 0,
flags 0x0808 (UTF-8 names, data descriptor), CRC and sizes 0, and an extra field (id 0x4246 "FB") of
zero bytes sized so that the **data starts at a multiple of 64**; the data is followed by a data
descriptor `PK\\x07\\x08 crc32 size size` (32-bit); the central directory has the real CRC-32 and sizes
(read it, not the local header). Files over 4 GB use ZIP64 records.

`data.pkl` is pickle protocol 2. A state dict is `GLOBAL collections OrderedDict`, `EMPTY_TUPLE`,
`REDUCE` (or `EMPTY_DICT` for a plain dict, as transformers' shards are), then `MARK`, key/value pairs,
`SETITEMS`; `nn.Module.state_dict()` adds `BUILD` with {{'_metadata': OrderedDict(...)}} at the end.
Each tensor is `GLOBAL torch._utils _rebuild_tensor_v2` + a tuple `(storage, storage_offset, size
tuple, stride tuple, requires_grad False, backward_hooks OrderedDict())` + `REDUCE`, where storage is
`BINPERSID` of the tuple `('storage', GLOBAL torch.<Type>Storage, key '0', location 'cpu', numel)`.
Storage classes: FloatStorage f32, DoubleStorage f64, HalfStorage f16, BFloat16Storage bf16,
LongStorage i64, IntStorage i32, ShortStorage i16, CharStorage i8, ByteStorage u8, BoolStorage bool.
numel counts elements of the storage (not bytes); a view stores its whole storage once and its offset
and strides (elements). The same tensor object saved twice is a memo reference (`BINGET`), and views
of one storage share the key. uint16/32/64 use `torch._utils _rebuild_tensor_v3` with `GLOBAL
torch.storage UntypedStorage` (numel in bytes) and the dtype (`GLOBAL torch uint16`) as 7th argument.
Opcodes seen: {', '.join(dt['pickle_opcodes'])}. A reader needs no other global than those listed in
`pytorch/manifest.json` (`pickle_globals`): refuse every other GLOBAL / STACK_GLOBAL / INST / OBJ.

`pytorch/manifest.json` gives, per file, the members with their data offsets, the globals, the
storages (bytes, sha256) and every tensor's dtype, shape, stride, storage offset and the sha256 of its
bytes made contiguous; `torch.load(weights_only=True)` gives the same. `micro-llama/` and
`micro-llama-sharded/` (two shards + `pytorch_model.bin.index.json`, transformers' format
`{{"metadata": {{"total_size": bytes}}, "weight_map": {{name: shard}}}}`) load in transformers to
these tensors: {pt['transformers_loads']}.

`pickles_bad/` (`manifest.json`): `good.bin` must load; what torch {v['torch']} does with each:

| file | case | torch.load(weights_only=True) |
|---|---|---|
{pk_rows}

Note what torch lets through: `collections.Counter` is on torch's weights-only allowlist (ckpt needs
only OrderedDict), torch does not verify CRC-32 (bad_crc.bin loads), deflated members load, and the
legacy non-zip format loads.

## Determinism

Random values come from numpy's PCG64 (`default_rng`, integers and float32 uniforms only); torch.save
writes zero timestamps and a reproducible serialization id; the deflated zip uses fixed timestamps
(its bytes depend on zlib {zlib.ZLIB_VERSION}). F16 goldens avoid NaN inputs/patterns (numpy's
fp16 <-> f32 of NaN payloads depends on the CPU's F16C path).
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "fixtures", help="default: <repo>/fixtures")
    ap.add_argument("--only", default=None, help="make_fixtures.py's sections; runs only if 'models' is among them")
    args = ap.parse_args()
    if not fc.models_section_requested(args.only, "make_conversion_goldens"):
        return
    fc.setup_libraries()
    torch.set_grad_enabled(False)
    transformers.utils.logging.set_verbosity_error()
    out = args.out.resolve()
    if not (out / LLAMA / "model.safetensors").is_file():
        sys.exit(f"error: {out / LLAMA}/model.safetensors missing: run tools/make_fixtures.py first")
    start = time.monotonic()
    fc.fresh_dir(out / "convert")
    with tempfile.TemporaryDirectory(prefix="ckpt-convert-") as t:
        tmp = Path(t)
        log("convert: quantization goldens")
        quants = make_quants(out)
        log("convert: GGUF models (tiny-llama, micro-llama, writer goldens)")
        gguf_doc = make_gguf_models(out, tmp)
        log("convert: GGUF reader files and hostile files")
        reader = make_reader_files(out)
        bad = make_bad_gguf(out)
        log("convert: PyTorch files")
        pt = make_pytorch(out, tmp)
        badpk = make_bad_pickles(out, tmp)
        make_readme(out, quants, gguf_doc, reader, bad, pt, badpk)
    total = sum(p.stat().st_size for p in (out / "convert").rglob("*") if p.is_file())
    log(f"convert: {total / 1e6:.3f} MB in fixtures/convert")
    fc.write_sums(out)
    log(f"make_conversion_goldens: done in {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    main()
