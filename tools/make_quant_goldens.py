#!/usr/bin/env python3
"""Golden files for ckpt's 4-bit (NF4/FP4, bitsandbytes layout) and int8 (compressed-tensors
layout) quantizers, made by the pinned reference stack (tools/requirements.txt).

Run by tools/make_fixtures.sh after tools/make_fixtures.py (it needs fixtures/models/tiny-llama
and fixtures/text/eval.txt). The output is a pure function of this script, the pinned wheels and
those two fixtures: a second run rewrites every file byte for byte. At the end it rewrites
fixtures/SHA256SUMS the way make_fixtures.py does, so the sums cover these files too.

Writes:
  fixtures/quant/bnb_4bit.safetensors + bnb_4bit.json   quantize_4bit goldens, one caseNN.* group per case
  fixtures/quant/dynamic_map.safetensors                 bitsandbytes' 8-bit dynamic map, NF4/FP4 tables, LUT
  fixtures/quant/tiny_llama_logits.safetensors + .json   logits of tiny-llama: bf16, NF4 (two ways)
  fixtures/quant/load_findings.json                       what transformers / compressed-tensors accept
  fixtures/quant/README.md                                the exact algorithms, with source line numbers
  fixtures/models/tiny-llama-bnb-nf4/                     tiny-llama quantized and saved by transformers+bnb
  fixtures/models/tiny-llama-ct-int8/                     tiny-llama in the compressed-tensors int8 layout

Every golden case is also recomputed by the plain numpy reference implementation below
(`ref_*`), which is what fixtures/quant/README.md describes; the script stops if the two
disagree on a single byte.

Options: --out DIR (default <repo>/fixtures). --only SECTIONS is accepted so that
tools/make_fixtures.sh can pass its own arguments through: this script runs only when
--only is absent or names the 'models' section (the goldens are derived from the model).
"""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

# First, before torch is imported: pins the environment for determinism (see fixture_common.py).
import fixture_common as fc  # noqa: E402
from fixture_common import cite, f32_hex, log, sha256_bytes  # noqa: E402,F401

# bitsandbytes wraps some CPU fallbacks (e.g. dequantize_4bit of an odd last dimension) in
# torch.compile; run them eagerly: same arithmetic, no C++ compiler needed, no recompile noise.
fc.pin_environment(TORCHDYNAMO_DISABLE="1")

import argparse
import contextlib
import inspect
import io
import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import safetensors.torch  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

# bitsandbytes logs a warning at import on AVX512-BF16 machines (an optional CPU kernel
# package is missing); it is harmless here, keep stderr readable.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
import bitsandbytes  # noqa: E402
import bitsandbytes.functional as bnbF  # noqa: E402
import compressed_tensors  # noqa: E402
from loguru import logger as _loguru  # noqa: E402

_loguru.disable("compressed_tensors")  # it warns per module when int-quantized is forced

REPO = TOOLS.parent
F32 = np.float32
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
N_TOKENS = 32  # logits are recorded for the first 32 tokens of fixtures/text/eval.txt
MAX_DEQUANT_NUMEL = 5000  # caseNN.dequant is stored for cases up to this many elements
MODEL_GOLDEN_WEIGHTS = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight"]
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SAFETENSORS_DTYPE = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


def tensor_sha(t: torch.Tensor) -> str:
    return sha256_bytes(t.contiguous().view(torch.uint8).numpy().tobytes() if t.dtype != torch.uint8
                        else t.contiguous().numpy().tobytes())


# ---------------------------------------------------------------------------
# reference implementation (numpy, float32 arithmetic made explicit)
#
# This is the algorithm fixtures/quant/README.md describes. Each golden case is recomputed with
# it and compared byte for byte with what bitsandbytes returned.


def ref_4bit_code(quant_type: str) -> np.ndarray:
    """get_4bit_type(): the table as literals, divided by its absmax in float32."""
    if quant_type == "nf4":
        data = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]
    else:
        # FP4 (1 sign, 2 exponent, 1 mantissa bit) in bit-pattern order; the Python list holds
        # the integer -0, i.e. +0.0: both index 0 and index 8 decode to +0.0.
        data = [0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, 0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0]
    d = np.array(data, dtype=F32)
    return (d / np.max(np.abs(d))).astype(F32)


def ref_4bit_bounds(quant_type: str):
    """Sorted order (stable argsort) and the 15 float32 midpoints (c[i]+c[i+1])/2 between
    neighbours in sorted order."""
    code = ref_4bit_code(quant_type)
    order = np.argsort(code, kind="stable")
    s = code[order]
    bounds = ((s[:-1] + s[1:]).astype(F32) / F32(2)).astype(F32)
    return order, bounds


def ref_quantize_4bit(x: np.ndarray, blocksize: int, quant_type: str):
    """bitsandbytes.backends.default.ops quantize_4bit: returns (packed uint8 [(n+1)//2], absmax f32)."""
    a = np.asarray(x, dtype=F32).reshape(-1)  # bf16/f16 inputs are widened exactly first
    n = a.size
    rem = n % blocksize
    full = n - rem
    blocks = full // blocksize
    tiny = F32(1e-38)  # torch's clamp(min=1e-38) on float32: the subnormal 0x006CE3EE
    parts, absmax = [], []
    if blocks:
        com = a[:full].reshape(blocks, blocksize)
        am = np.max(np.abs(com), axis=1).astype(F32)  # stored unclamped (0 for an all-zero block)
        recip = (F32(1) / np.maximum(am, tiny)).astype(F32)  # reciprocal, correctly rounded
        parts.append(np.clip((com * recip[:, None]).astype(F32), F32(-1), F32(1)).reshape(-1))
        absmax.append(am)
    if rem:
        am = np.maximum(np.max(np.abs(a[full:])).astype(F32), tiny)  # stored clamped
        parts.append(np.clip((a[full:] / am).astype(F32), F32(-1), F32(1)))  # true division
        absmax.append(np.array([am], dtype=F32))
    scaled = np.concatenate(parts).astype(F32)
    if scaled.size % 2:
        scaled = np.concatenate([scaled, np.zeros(1, F32)])  # pad element 0.0 -> the zero code
    order, bounds = ref_4bit_bounds(quant_type)
    q = np.searchsorted(bounds, scaled, side="left")  # torch.bucketize(right=False)
    q = order[q].astype(np.uint8)
    packed = ((q[0::2] << 4) | q[1::2]).astype(np.uint8)
    return packed, np.concatenate(absmax).astype(F32)


def ref_dynamic_map() -> np.ndarray:
    return bnbF.create_dynamic_map().numpy()  # the table itself is a golden (dynamic_map.safetensors)


def ref_quantize_lut(code: np.ndarray) -> np.ndarray:
    """libbitsandbytes_cpu build_quantize_lut(): 65536 entries over [-1, 1]."""
    code = np.asarray(code, dtype=F32)
    mid = ((code[:-1] + code[1:]).astype(F32) * F32(0.5)).astype(F32)
    i = np.arange(65536)
    val = ((F32(2) * i.astype(F32)).astype(F32) / F32(65535)).astype(F32)
    val = (val - F32(1)).astype(F32)  # -1.0f + (2.0f*i)/65535 ; exact same rounding as val - 1
    lut = np.empty(65536, dtype=np.uint8)
    idx = 0
    for k in range(65536):  # while (idx < 255 && mid[idx] < val) ++idx;
        v = val[k]
        while idx < 255 and mid[idx] < v:
            idx += 1
        lut[k] = idx
    return lut


def ref_lut_index(v: np.ndarray) -> np.ndarray:
    """uint16((clamp(v,-1,1) + 1.0f) * 0.5f * 65535 + 0.5f); the compiler fused the last
    multiply-add into one FMA (vfmadd213ss), then vcvttss2si truncates; NaN gives 0x80000000,
    whose low 16 bits are 0."""
    v = np.asarray(v, dtype=F32)
    with np.errstate(invalid="ignore"):
        c = np.where(v < F32(-1), F32(-1), np.where(v > F32(1), F32(1), v)).astype(F32)
        t = ((c + F32(1)).astype(F32) * F32(0.5)).astype(F32)
        r = (t.astype(np.float64) * 65535.0 + 0.5).astype(F32)  # exact in f64, one rounding: the FMA
        return np.where(np.isnan(r), 0, np.trunc(np.nan_to_num(r))).astype(np.int64) & 0xFFFF


def ref_quantize_blockwise_8bit(x: np.ndarray, code: np.ndarray, blocksize: int, lut: np.ndarray):
    """libbitsandbytes_cpu quantize_cpu_impl<float>: (codes uint8, absmax f32)."""
    a = np.asarray(x, dtype=F32).reshape(-1)
    nb = -(-a.size // blocksize)
    out = np.zeros(a.size, dtype=np.uint8)
    absmax = np.zeros(nb, dtype=F32)
    for b in range(nb):
        blk = a[b * blocksize:(b + 1) * blocksize]
        finite = blk[~np.isnan(blk)]  # std::max(acc, NaN) keeps acc
        am = F32(max(F32(0), np.max(np.abs(finite)) if finite.size else F32(0)))
        absmax[b] = am
        if am == 0:
            continue  # memset 0: code index 0
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            inv = F32(F32(1) / am)  # inf when am is subnormal below 2.9e-39
            out[b * blocksize:b * blocksize + blk.size] = lut[ref_lut_index((blk * inv).astype(F32))]
    return out, absmax


# torch.sum / torch.mean of a contiguous 1-D float32 CPU tensor: aten/src/ATen/native/cpu/
# SumKernel.cpp cascade_sum -> vectorized_inner_sum -> row_sum -> multi_row_sum.


def _ceil_log2(x: int) -> int:
    return 1 if x <= 2 else int(x - 1).bit_length()


def _multi_row_sum(rows: np.ndarray) -> np.ndarray:
    size = rows.shape[0]
    num_levels = 4
    level_power = max(4, _ceil_log2(size) // num_levels)
    level_step = 1 << level_power
    level_mask = level_step - 1
    acc = np.zeros((num_levels,) + rows.shape[1:], dtype=F32)
    i = 0
    while i + level_step <= size:
        for _ in range(level_step):
            acc[0] = acc[0] + rows[i]
            i += 1
        for j in range(1, num_levels):
            acc[j] = acc[j] + acc[j - 1]
            acc[j - 1] = 0
            if i & (level_mask << (j * level_power)):
                break
    while i < size:
        acc[0] = acc[0] + rows[i]
        i += 1
    for j in range(1, num_levels):
        acc[0] = acc[0] + acc[j]
    return acc[0]


def _row_sum(items: np.ndarray) -> np.ndarray:
    size = items.shape[0]
    size_ilp = size // 4
    ps = _multi_row_sum(items[:size_ilp * 4].reshape((size_ilp, 4) + items.shape[1:])).copy()
    for i in range(size_ilp * 4, size):
        ps[0] = ps[0] + items[i]
    for k in range(1, 4):
        ps[0] = ps[0] + ps[k]
    return ps[0]


def ref_torch_sum_f32(x: np.ndarray, lanes: int = 8) -> F32:
    """One thread (or n <= 32768, torch's GRAIN_SIZE). lanes = Vectorized<float>::size()."""
    x = np.ascontiguousarray(x, dtype=F32).reshape(-1)
    n = x.size
    if n >= lanes:
        vec_size = n // lanes
        vacc = _row_sum(x[:vec_size * lanes].reshape(vec_size, lanes))
        final = F32(0)
        for k in range(vec_size * lanes, n):
            final = F32(final + x[k])
        for k in range(lanes):
            final = F32(final + vacc[k])
    else:
        final = F32(_row_sum(x))
    return F32(F32(0) + final)  # CastStoreAccumulate: output (filled with 0) += result


def verify_sum_emulation() -> dict:
    """ref_torch_sum_f32 against torch.mean on random float32 arrays: one thread, and the two-chunk
    split torch uses with two threads above 32768 elements."""
    r = rng(900)
    sizes = list(range(1, 300)) + [511, 512, 513, 1000, 1023, 1024, 1025, 2047, 2048, 4096, 4097, 8191,
                                   8193, 16384, 20000, 30000, 32768]
    one = {"arrays": 0, "equal": 0}
    for n in sizes:
        for scale in (1e-3, 1.0, 1e4):
            x = (np.abs(r.standard_normal(n)) * scale + scale * 0.1).astype(F32)
            one["arrays"] += 1
            one["equal"] += int(F32(torch.from_numpy(x).mean().item()) == F32(ref_torch_sum_f32(x) / F32(n)))
    two = {"arrays": 0, "two_chunk_model_equal": 0, "mean_differs_from_one_thread": 0, "max_ulps": 0}
    try:
        torch.set_num_threads(2)
        for n in (32769, 40000, 65537, 100001, 250000, 704512):
            for _ in range(2):
                x = (np.abs(r.standard_normal(n)) * 0.02 + 0.01).astype(F32)
                t = torch.from_numpy(x)
                m2 = F32(t.mean().item())
                c = -(-n // 2)
                model = F32(F32(F32(F32(0) + ref_torch_sum_f32(x[:c])) + ref_torch_sum_f32(x[c:])) / F32(n))
                m1 = F32(ref_torch_sum_f32(x) / F32(n))
                two["arrays"] += 1
                two["two_chunk_model_equal"] += int(model == m2)
                two["mean_differs_from_one_thread"] += int(m1 != m2)
                two["max_ulps"] = max(two["max_ulps"], ulps_apart(m1, m2))
    finally:
        torch.set_num_threads(1)
    return {"one_thread": one, "two_threads": two}


def offset_candidates(absmax: np.ndarray) -> dict:
    """Ways one might compute mean(absmax) in float32."""
    a = np.asarray(absmax, dtype=F32)
    n = a.size
    seq = F32(0)
    for v in a:
        seq = F32(seq + v)

    def pairwise(v):
        if v.size <= 2:
            return F32(v.sum(dtype=F32)) if v.size == 2 else (F32(v[0]) if v.size else F32(0))
        h = v.size // 2
        return F32(pairwise(v[:h]) + pairwise(v[h:]))

    s64 = float(np.sum(a.astype(np.float64)))
    nf = F32(n)
    return {
        "sequential_f32": F32(seq / nf),
        "f64_sum_then_div_then_round": F32(s64 / n),
        "f64_sum_round_then_div_f32": F32(F32(s64) / nf),
        "numpy_pairwise_f32": F32(F32(np.sum(a, dtype=F32)) / nf),
        "halving_pairwise_f32": F32(pairwise(a) / nf),
        "torch_cascade_avx2_8_lanes": F32(ref_torch_sum_f32(a, 8) / nf),
        "torch_cascade_avx512_16_lanes": F32(ref_torch_sum_f32(a, 16) / nf),
    }


def ulps_apart(a, b) -> int:
    ia = np.array([a], dtype=F32).view(np.int32)[0].item()
    ib = np.array([b], dtype=F32).view(np.int32)[0].item()
    # map sign-magnitude to a monotone integer line
    ia = ia if ia >= 0 else -(ia & 0x7FFFFFFF)
    ib = ib if ib >= 0 else -(ib & 0x7FFFFFFF)
    return abs(ia - ib)


# ---------------------------------------------------------------------------
# golden cases


def rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def normal(seed: int, n: int, scale: float = 1.0) -> np.ndarray:
    return (rng(seed).standard_normal(n) * scale).astype(F32)


def midpoint_values(quant_type: str) -> np.ndarray:
    """1.0 (the absmax, so the scale is exactly 1) then every float32 midpoint between
    neighbouring codes and its two float32 neighbours."""
    _, b = ref_4bit_bounds(quant_type)
    up = np.nextafter(b, F32(2))
    down = np.nextafter(b, F32(-2))
    return np.concatenate([[F32(1)], b, up, down]).astype(F32)


def discriminators(quant_type: str, absmax: float, count: int) -> np.ndarray:
    """Values x (|x| < absmax) whose code differs between x*(1/absmax) and x/absmax in float32:
    the first is what a full block computes, the second the last partial block."""
    _, bounds = ref_4bit_bounds(quant_type)
    am = F32(absmax)
    recip = F32(F32(1) / am)
    found = []
    for b in bounds:
        x0 = F32(b * am)
        x = x0
        for _ in range(8):
            x = np.nextafter(x, F32(-np.inf))
        for _ in range(17):
            qa = np.searchsorted(bounds, np.clip(F32(x * recip), -1, 1), side="left")
            qb = np.searchsorted(bounds, np.clip(F32(x / am), -1, 1), side="left")
            if qa != qb and abs(x) < am:
                found.append(x)
            x = np.nextafter(x, F32(np.inf))
    found = np.array(found, dtype=F32)
    if found.size < 2:
        sys.exit(f"error: found no reciprocal/division discriminators for {quant_type} absmax {absmax}")
    return np.resize(found, count).astype(F32)


def constant_absmax_blocks(seed: int, nblocks: int, blocksize: int, c: float, tail: int = 0) -> np.ndarray:
    """Every block's absmax is exactly c (one element +-c, the rest uniform in (-c, c))."""
    r = rng(seed)
    x = (r.uniform(-0.999, 0.999, nblocks * blocksize + tail) * c).astype(F32)
    for b in range(nblocks + (1 if tail else 0)):
        start = b * blocksize
        x[start + int(r.integers(0, min(blocksize, x.size - start)))] = F32(c if r.integers(0, 2) else -c)
    return x


def build_cases(model_weights: dict) -> list:
    """(dtype, quant_type, blocksize, double_quant, shape, float32 values, note) for every case."""
    C = []

    def add(dtype, qt, bs, dq, shape, values, note):
        values = np.asarray(values, dtype=F32).reshape(-1)
        assert values.size == int(np.prod(shape)), (shape, values.size)
        C.append(dict(dtype=dtype, quant_type=qt, blocksize=bs, double_quant=dq, shape=list(shape),
                      values=values, note=note))

    # sizes, NF4, blocksize 64
    for dtype, seed in (("float32", 100), ("bfloat16", 200)):
        for n in (1, 63, 64, 65, 127, 4097):
            add(dtype, "nf4", 64, False, [n], normal(seed + n, n),
                f"N(0,1), n={n}: " + {1: "a single element (remainder-only block, odd: pad nibble)",
                                      63: "one partial block, odd n",
                                      64: "exactly one full block",
                                      65: "one full block + a 1-element remainder block",
                                      127: "full block + 63-element remainder, odd n",
                                      4097: "64 full blocks + 1-element remainder"}[n])
        add(dtype, "nf4", 64, False, [33, 70], normal(seed + 7, 33 * 70, 0.05),
            "2-D [33,70]: 2310 elements, 36 full blocks + a 6-element remainder; blocks cross rows")
    add("float16", "nf4", 64, False, [4097], normal(300, 4097, 0.3), "float16 input, n=4097")

    # FP4 sizes
    for n in (1, 63, 65, 4097):
        add("float32", "fp4", 64, False, [n], normal(400 + n, n), f"FP4, N(0,1), n={n}")
    add("float32", "fp4", 64, False, [33, 70], normal(407, 2310, 0.05), "FP4, 2-D [33,70]")
    add("bfloat16", "fp4", 64, False, [65], normal(465, 65), "FP4, bfloat16, n=65")
    add("bfloat16", "fp4", 64, False, [33, 70], normal(477, 2310, 0.05), "FP4, bfloat16, 2-D [33,70]")

    # block sizes
    for qt in ("nf4", "fp4"):
        for bs in (32, 64, 128, 256):
            add("float32", qt, bs, False, [33, 70], normal(500 + bs, 2310),
                f"blocksize {bs}: 2310 = {2310 // bs}*{bs} + {2310 % bs}")
        add("float32", qt, 4096, False, [4500], normal(504, 4500),
            "blocksize 4096: one full block + a 404-element remainder")
    add("bfloat16", "nf4", 32, False, [33, 70], normal(532, 2310, 0.02), "bfloat16, blocksize 32")
    add("bfloat16", "nf4", 4096, False, [33, 70], normal(533, 2310, 0.02),
        "bfloat16, blocksize 4096 > n: a single remainder block")

    # edge values
    def zero_middle(seed, n=200):
        x = normal(seed, n)
        x[64:128] = 0
        return x

    add("float32", "nf4", 64, False, [200], zero_middle(600),
        "block 1 (elements 64..127) all zero: absmax 0.0 stored, codes 7 (0.0)")
    add("float32", "fp4", 64, False, [200], zero_middle(601), "FP4, block 1 all zero: codes 0")
    add("bfloat16", "nf4", 64, False, [200], zero_middle(602), "bfloat16, block 1 all zero")
    add("float32", "nf4", 64, False, [100], np.zeros(100, F32),
        "all zero, n=100: full block absmax 0.0 but remainder absmax 1e-38 (clamped, 0x006ce3ee)")
    add("float32", "nf4", 64, False, [64], np.zeros(64, F32), "all zero, exactly one full block: absmax 0.0")
    add("bfloat16", "fp4", 64, False, [100], np.zeros(100, F32), "FP4, bfloat16, all zero, n=100")
    add("float32", "nf4", 64, False, [130], normal(610, 130, 1e30), "huge magnitudes (N(0,1)*1e30)")
    add("bfloat16", "fp4", 64, False, [130], normal(611, 130, 1e30), "FP4, bfloat16, huge magnitudes")
    add("float32", "nf4", 64, False, [130], normal(612, 130, 1e-30), "tiny magnitudes (N(0,1)*1e-30)")
    add("float32", "fp4", 64, False, [130], normal(613, 130, 1e-30), "FP4, tiny magnitudes")
    sub = normal(614, 130, 1e-40)
    add("float32", "nf4", 64, False, [130], sub,
        "subnormals (N(0,1)*1e-40): absmax < 1e-38, so elements are scaled by 1/1e-38, not 1/absmax: "
        "x*1e38 ~ 0.01, every code 7")
    add("float32", "fp4", 64, False, [130], normal(615, 130, 1e-40), "FP4, subnormals")
    add("bfloat16", "nf4", 64, False, [130], normal(616, 130, 1e-39), "bfloat16 subnormals (N(0,1)*1e-39)")
    mixed = normal(617, 130, 1e-3)
    mixed[70:80] = normal(618, 10, 1e-40)
    add("float32", "nf4", 64, False, [130], mixed, "normal block absmax with subnormal elements in it")

    for qt in ("nf4", "fp4"):
        m = midpoint_values(qt)  # 46 values
        x = np.concatenate([m, -m[1:19], m, np.nextafter(m[1:5], F32(0))]).astype(F32)
        x = x[:110]
        add("float32", qt, 64, False, [x.size], x,
            f"{qt} midpoints: absmax 1.0 exactly, then each float32 midpoint (c[i]+c[i+1])/2 and its two "
            "float32 neighbours; ties go to the lower code; block 0 full (reciprocal), block 1 remainder "
            "(division)")
        for am in (0.7, 3.0):
            d = discriminators(qt, am, 63)
            x = np.concatenate([[F32(am)], d, [F32(am)], d[:40]]).astype(F32)
            add("float32", qt, 64, False, [x.size], x,
                f"{qt} reciprocal-vs-division: absmax {am}; each other element's code differs between "
                "x*(1/absmax) (used in the full block 0) and x/absmax (used in the remainder block 1)")

    nz = normal(620, 150)
    nz[::5] = -0.0
    nz[64:128] = -0.0
    nz[128:] = -0.0
    add("float32", "nf4", 64, False, [150], nz,
        "negative zeros: scattered -0.0, a full block of -0.0 (absmax +0.0) and a remainder of -0.0 "
        "(absmax 1e-38)")
    add("bfloat16", "fp4", 64, False, [150], nz, "FP4, bfloat16, negative zeros")
    t = np.concatenate([[F32(1)], normal(621, 63, 1e-3), [F32(-1)], normal(622, 63, 1e-3)]).astype(F32)
    add("float32", "fp4", 64, False, [128], t,
        "FP4 around zero: |x*scale| <= 0.0026 -> code 0 (+0.0) for x <= 0, code 8 (also 0.0) for x > 0")

    # double quantization
    n334 = 333 * 64 + 17  # 334 blocks: nested 8-bit blocks of 256 -> one full + one of 78
    add("bfloat16", "nf4", 64, True, [n334], normal(700, n334, 0.02),
        "double quant, bfloat16 like a weight: 334 absmax -> nested blocks 256 + 78")
    add("float32", "nf4", 64, True, [n334], normal(701, n334), "double quant, float32")
    add("float32", "fp4", 64, True, [n334], normal(702, n334), "FP4 double quant, float32")
    add("float16", "nf4", 64, True, [n334], normal(703, n334, 0.1), "double quant, float16")
    add("float32", "nf4", 32, True, [301 * 32 - 7], normal(704, 301 * 32 - 7),
        "double quant, blocksize 32: 301 absmax -> nested 256 + 45")
    add("bfloat16", "nf4", 64, True, [334 * 64 - 3], constant_absmax_blocks(705, 333, 64, 0.0625, 61),
        "double quant, every block's absmax is 0.0625: offset exactly 0.0625, centred absmax all 0 -> "
        "nested absmax 0 and nested codes 0")
    cx = np.concatenate([constant_absmax_blocks(706, 256, 64, 0.05),
                         normal(707, 78 * 64 - 9, 0.02)]).astype(F32)
    add("float32", "nf4", 64, True, [cx.size], cx,
        "double quant, the first nested block (256 absmax) is constant 0.05 and the rest vary: "
        "centred values all equal -> every nested code is the end of the map")
    add("float32", "nf4", 64, True, [n334], normal(708, n334, 1e-30), "double quant, tiny magnitudes")
    add("float32", "nf4", 64, True, [n334], normal(709, n334, 1e30), "double quant, huge magnitudes")
    add("float32", "nf4", 64, True, [65], normal(710, 65), "double quant, 2 blocks: one partial nested block")
    add("float32", "nf4", 64, True, [1], normal(711, 1), "double quant, 1 element: offset = absmax, "
        "centred 0 -> nested absmax 0")
    add("float32", "nf4", 64, True, [64 * 20], normal(712, 64 * 20, 1e-40),
        "double quant, subnormal inputs: the nested absmax is subnormal, 1.0f/absmax overflows to inf, "
        "x*inf = +-inf clamps to +-1: every nested code is 0 or 255 (a centred 0 would give NaN -> index 0 "
        "on x86)")

    # the fixture model's weights
    for name in MODEL_GOLDEN_WEIGHTS:
        w = model_weights[name]
        for dq in (False, True):
            add("bfloat16", "nf4", 64, dq, list(w.shape), w.float().numpy(),
                f"fixtures/models/tiny-llama {name}" + (", double quant (as transformers stores it)" if dq else ""))
    return C


def to_dtype(values: np.ndarray, dtype: str, shape) -> torch.Tensor:
    t = torch.from_numpy(values.copy()).reshape(shape)
    out = t.to(TORCH_DTYPES[dtype])
    # the generators produce float32; make sure bf16/f16 casts did not overflow or hit NaN
    assert torch.isfinite(out).all() or not torch.isfinite(t).all(), "cast overflow"
    return out


def run_case(i: int, case: dict, lut: np.ndarray, dyn: np.ndarray, tensors: dict) -> dict:
    name = f"case{i:02d}"
    A = to_dtype(case["values"], case["dtype"], case["shape"])
    packed, qs = bnbF.quantize_4bit(A, blocksize=case["blocksize"], compress_statistics=case["double_quant"],
                                    quant_type=case["quant_type"], quant_storage=torch.uint8)
    d = qs.as_dict(packed=True)
    key = f"quant_state.bitsandbytes__{case['quant_type']}"
    qs_json = bytes(d[key].tolist()).decode("utf-8")
    n = A.numel()
    assert tuple(packed.shape) == ((n + 1) // 2, 1) and packed.dtype == torch.uint8

    # recompute with the reference and compare every byte
    af = A.float().numpy().reshape(-1)
    rp, ra = ref_quantize_4bit(af, case["blocksize"], case["quant_type"])
    assert np.array_equal(rp, packed.numpy().reshape(-1)), f"{name}: packed bytes differ from the reference"
    entry = dict(name=name, quant_type=case["quant_type"], blocksize=case["blocksize"],
                 double_quant=case["double_quant"], dtype=case["dtype"], shape=case["shape"], numel=n,
                 blocks=int(ra.size), note=case["note"])
    tensors[f"{name}.input"] = A
    tensors[f"{name}.packed"] = packed
    tensors[f"{name}.quant_map"] = d["quant_map"]
    tensors[f"{name}.quant_state"] = d[key]
    if case["double_quant"]:
        off = float(qs.offset.item())
        absmax_raw = torch.ops.bitsandbytes.quantize_4bit.default(A, case["blocksize"], case["quant_type"],
                                                                   torch.uint8)[1]
        assert np.array_equal(absmax_raw.numpy(), ra), f"{name}: absmax differs from the reference"
        cands = offset_candidates(ra)
        torch_mean = F32(torch.from_numpy(ra).mean().item())
        assert torch_mean == F32(off)
        assert cands["torch_cascade_avx2_8_lanes"] == F32(off), f"{name}: cascade emulation missed the offset"
        centred = (ra - F32(off)).astype(F32)
        rq, rn = ref_quantize_blockwise_8bit(centred, dyn, 256, lut)
        assert np.array_equal(rq, d["absmax"].numpy()), f"{name}: nested codes differ from the reference"
        assert np.array_equal(rn, d["nested_absmax"].numpy()), f"{name}: nested absmax differs"
        tensors[f"{name}.absmax"] = d["absmax"]
        tensors[f"{name}.absmax_raw"] = absmax_raw
        tensors[f"{name}.nested_absmax"] = d["nested_absmax"]
        tensors[f"{name}.nested_quant_map"] = d["nested_quant_map"]
        entry.update(nested_offset=off, nested_offset_f32_hex=f32_hex(off), nested_blocks=int(rn.size),
                     offset_by_method={k: {"value": float(v), "f32_hex": f32_hex(v),
                                           "ulps_from_torch": ulps_apart(v, off)} for k, v in cands.items()})
    else:
        assert np.array_equal(d["absmax"].numpy(), ra), f"{name}: absmax differs from the reference"
        tensors[f"{name}.absmax"] = d["absmax"]
    # bitsandbytes returns [1, n] for an even-length 1-D input (its C++ path views 1-D as [1, n]);
    # store it in the input's shape
    deq = bnbF.dequantize_4bit(packed, qs).reshape(case["shape"])
    entry["has_dequant"] = n <= MAX_DEQUANT_NUMEL  # keeps fixtures/quant near 2 MB
    if entry["has_dequant"]:
        tensors[f"{name}.dequant"] = deq
    # decode check: dequant == code[q] * absmax (float32), then cast to the input dtype
    code = ref_4bit_code(case["quant_type"])
    q = np.stack([rp >> 4, rp & 15], 1).reshape(-1)[:n]
    if case["double_quant"]:  # code8[q8] * nested_absmax[i // 256] + offset, all float32
        q8 = d["absmax"].numpy().astype(np.int64)
        nested = np.repeat(d["nested_absmax"].numpy(), 256)[: q8.size]
        absmax_f = ((dyn[q8] * nested).astype(F32) + F32(off)).astype(F32)
    else:
        absmax_f = ra
    scale = np.repeat(absmax_f.astype(F32), case["blocksize"])[:n]
    expect = torch.from_numpy((code[q] * scale).astype(F32)).to(TORCH_DTYPES[case["dtype"]])
    got = deq.reshape(-1)
    entry["dequant_equals_code_times_absmax"] = bool(
        torch.equal(expect.isnan(), got.isnan()) and torch.equal(torch.nan_to_num(expect), torch.nan_to_num(got)))
    entry["quant_state_json"] = qs_json
    entry["sha256"] = {"packed": tensor_sha(packed), "absmax": tensor_sha(d["absmax"])}
    return entry


def make_goldens(out: Path, model_weights: dict) -> dict:
    d = out / "quant"
    d.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():  # start clean, but keep the record tools/check_quantized_loads.py writes
        if f.name != "load_check.json":
            shutil.rmtree(f) if f.is_dir() else f.unlink()
    dyn = bnbF.create_dynamic_map()
    lut = ref_quantize_lut(dyn.numpy())
    order = {qt: ref_4bit_bounds(qt) for qt in ("nf4", "fp4")}
    for qt in ("nf4", "fp4"):
        assert np.array_equal(ref_4bit_code(qt), bnbF.get_4bit_type(qt, device="cpu").numpy())
        from bitsandbytes.backends.default.ops import _get_4bit_quantize_bounds
        b, o = _get_4bit_quantize_bounds(qt, torch.device("cpu"))
        assert np.array_equal(b.numpy(), order[qt][1]) and np.array_equal(o.numpy(), order[qt][0])
    # the library's LUT, observed through quantize_blockwise on the 65536 grid points
    grid = np.concatenate([((np.arange(65536, dtype=np.float64) * 2 / 65535) - 1).astype(F32), [F32(1)]])
    q, _ = bnbF.quantize_blockwise(torch.from_numpy(grid), code=dyn.clone(), blocksize=grid.size)
    assert np.array_equal(q.numpy()[:65536], lut[ref_lut_index(grid[:65536])])
    mid = ((dyn[:-1] + dyn[1:]) * 0.5).numpy().astype(F32)
    lut_checks = {"grid_points_checked_against_library": 65536, "fused_vs_unfused": fused_vs_unfused()}
    safetensors.torch.save_file({
        "dynamic_map": dyn,
        "dynamic_midpoints": torch.from_numpy(mid),
        "dynamic_lut": torch.from_numpy(lut),
        "nf4": bnbF.get_4bit_type("nf4", device="cpu"),
        "fp4": bnbF.get_4bit_type("fp4", device="cpu"),
        "nf4_bounds": torch.from_numpy(order["nf4"][1]),
        "fp4_bounds": torch.from_numpy(order["fp4"][1]),
        "fp4_order": torch.from_numpy(order["fp4"][0].astype(np.uint8)),
    }, str(d / "dynamic_map.safetensors"), metadata={"format": "pt"})

    cases = build_cases(model_weights)
    tensors, entries = {}, []
    for i, case in enumerate(cases):
        entries.append(run_case(i, case, lut, dyn.numpy(), tensors))
    safetensors.torch.save_file(tensors, str(d / "bnb_4bit.safetensors"), metadata={"format": "pt"})

    # every linear weight of the fixture model, with and without double quant
    model_rows = []
    for name in sorted(model_weights):
        if not (name.endswith(".weight") and name.split(".")[-2] in LINEAR):
            continue
        w = model_weights[name]
        row = {"tensor": name, "shape": list(w.shape)}
        for dq in (False, True):
            p, qs = bnbF.quantize_4bit(w, blocksize=64, compress_statistics=dq, quant_type="nf4",
                                       quant_storage=torch.uint8)
            sd = qs.as_dict(packed=True)
            rp, ra = ref_quantize_4bit(w.float().numpy(), 64, "nf4")
            assert np.array_equal(rp, p.numpy().reshape(-1))
            key = "double_quant" if dq else "plain"
            row[key] = {"packed_sha256": tensor_sha(p), "absmax_sha256": tensor_sha(sd["absmax"])}
            if dq:
                off = float(qs.offset.item())
                row[key].update(nested_offset=off, nested_offset_f32_hex=f32_hex(off),
                                nested_absmax_sha256=tensor_sha(sd["nested_absmax"]),
                                quant_state_json=bytes(sd["quant_state.bitsandbytes__nf4"].tolist()).decode())
                cands = offset_candidates(ra)
                row[key]["offset_methods_matching"] = sorted(k for k, v in cands.items() if v == F32(off))
        model_rows.append(row)

    manifest = {
        "generator": "tools/make_quant_goldens.py",
        "torch_mean_emulation_check": verify_sum_emulation(),
        "versions": {"torch": torch.__version__.split("+")[0], "bitsandbytes": bitsandbytes.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "kernel_paths": kernel_paths(),
        "lut_checks": lut_checks,
        "nested_codes_torch_fallback_vs_library": fallback_vs_library(tensors, entries, dyn),
        "note": "bnb_4bit.safetensors holds, per case NN: caseNN.input (original dtype), caseNN.packed "
                "(U8 [(n+1)//2, 1], exactly as quantize_4bit returned it), caseNN.absmax (F32 [blocks], or "
                "U8 codes when double_quant), caseNN.absmax_raw (F32, the block absmax before double "
                "quantization; double_quant only), caseNN.nested_absmax (F32) and caseNN.nested_quant_map "
                "(F32 [256]) when double_quant, caseNN.quant_map (F32 [16]), caseNN.quant_state (U8: the "
                "JSON bytes of QuantState.as_dict(packed=True), key quant_state.bitsandbytes__<type>) and, "
                "when has_dequant (numel <= 5000), caseNN.dequant (bitsandbytes dequantize_4bit in the "
                "original dtype, reshaped to the input shape). nested_offset is the float32 "
                "torch.mean of absmax_raw, widened to a Python float; offset_by_method says which simple "
                "summation orders reproduce it.",
        "cases": entries,
        "model_weights": {"source": "fixtures/models/tiny-llama/model.safetensors (bf16)",
                          "quantize_4bit": {"quant_type": "nf4", "blocksize": 64}, "tensors": model_rows},
    }
    fc.write_json(d / "bnb_4bit.json", manifest)
    return manifest


def fused_vs_unfused() -> dict:
    """Values within 3 ulps of every LUT index boundary: does it matter that the index is computed
    with one FMA rather than a rounded multiply and a rounded add?"""
    k = np.arange(1, 65536, dtype=np.float64)
    base = (((k - 0.5) / 65535.0) * 2 - 1).astype(F32)
    vals = [base]
    for direction in (np.inf, -np.inf):
        y = base.copy()
        for _ in range(3):
            y = np.nextafter(y, F32(direction))
            vals.append(y)
    v = np.concatenate(vals).astype(F32)
    v = v[np.abs(v) <= 1]
    t = ((v + F32(1)).astype(F32) * F32(0.5)).astype(F32)
    unfused = np.trunc(((t * F32(65535)).astype(F32) + F32(0.5)).astype(F32)).astype(np.int64)
    return {"values": int(v.size), "index_differs": int((unfused != ref_lut_index(v)).sum())}


def fallback_vs_library(tensors: dict, entries: list, dyn: torch.Tensor) -> dict:
    """The nested codes bitsandbytes' pure-torch quantize_blockwise (backends/default/ops.py, the
    CompositeExplicitAutograd kernel, used only without the native library) gives, against the
    C++ library's, on the golden cases."""
    op = torch.ops.bitsandbytes.quantize_blockwise.default
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)
    differ = total = 0
    cases = []
    for e in entries:
        if not e["double_quant"]:
            continue
        raw = tensors[f"{e['name']}.absmax_raw"]
        centred = raw - torch.tensor(F32(e["nested_offset"]))
        q, _ = op.redispatch(keys, centred, dyn, 256)
        lib = tensors[f"{e['name']}.absmax"]
        d = int((q != lib).sum())
        differ += d
        total += lib.numel()
        if d:
            cases.append(e["name"])
    return {"codes": total, "differ": differ, "cases_with_differences": cases}


def kernel_paths() -> dict:
    """Which implementation of each bitsandbytes op runs on CPU here, read from the dispatcher."""
    from bitsandbytes.cextension import ErrorHandlerMockBNBNativeLibrary, lib
    native = not isinstance(lib, ErrorHandlerMockBNBNativeLibrary)
    paths = {}
    for op in ("quantize_4bit", "quantize_blockwise", "dequantize_4bit", "dequantize_blockwise"):
        table = torch._C._dispatch_dump_table(f"bitsandbytes::{op}")
        cpu_line = [ln for ln in table.splitlines() if ln.startswith("CPU:")]
        paths[op] = ("C++ libbitsandbytes_cpu (backends/cpu/ops.py)"
                     if cpu_line and "fallthrough" not in cpu_line[0] and "[kernel]" in cpu_line[0]
                     else "torch ops (backends/default/ops.py, CompositeExplicitAutograd)")
    paths["native_library_loaded"] = native
    return paths


# ---------------------------------------------------------------------------
# model folders


def copy_tokenizer(src: Path, dst: Path):
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(src / f, dst / f)


def eval_token_ids(model_dir: Path, text_path: Path) -> list:
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    return tok.encode(text_path.read_text(encoding="utf-8")).ids[:N_TOKENS]


def bnb_config():
    return transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                           bnb_4bit_use_double_quant=True,
                                           bnb_4bit_compute_dtype=torch.bfloat16)


@contextlib.contextmanager
def quiet():
    """transformers prints load reports and tqdm bars on stdout/stderr; keep our log readable."""
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        yield


def portable_bnb(model):
    """Linear4bit uses a repacked-weight AVX512-BF16 kernel on CPUs that have it; force the
    portable path (dequantize_4bit + torch linear) so logits do not depend on the machine."""
    for m in model.modules():
        if isinstance(m, bitsandbytes.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False
    return model


def dequantized_f32_model(folder: Path):
    """A plain float32 LlamaForCausalLM whose linear weights are bitsandbytes' dequantize_4bit
    of the folder's NF4 tensors (in float32: code[q] * absmax) and whose other weights are the
    folder's tensors widened to float32."""
    sd = safetensors.torch.load_file(str(folder / "model.safetensors"))
    cfg_dict = json.loads((folder / "config.json").read_text())
    cfg_dict.pop("quantization_config", None)
    cfg = transformers.AutoConfig.for_model(**cfg_dict)
    plain, groups = {}, {}
    for k, v in sd.items():
        base = next((k[: k.index(".weight") + len(".weight")] for s in (".absmax", ".quant_map", ".nested_absmax",
                     ".nested_quant_map", ".quant_state.") if s in k), None)
        if base is not None:
            groups.setdefault(base, {})[k[len(base) + 1:]] = v
        else:
            plain[k] = v
    out = {}
    for k, v in plain.items():
        if k in groups:
            qs = bnbF.QuantState.from_dict({kk: vv for kk, vv in groups[k].items()}, device=torch.device("cpu"))
            qs.dtype = torch.float32
            out[k] = bnbF.dequantize_4bit(v, qs)
        else:
            out[k] = v.float()
    with quiet():
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(out, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    return model.eval(), sorted(groups)


@torch.no_grad()
def logits_of(model, ids: list) -> torch.Tensor:
    return model(input_ids=torch.tensor([ids])).logits[0].float()


def make_bnb_folder(out: Path, src: Path) -> dict:
    d = fc.fresh_dir(out / "models" / "tiny-llama-bnb-nf4")
    with quiet():
        m = transformers.AutoModelForCausalLM.from_pretrained(src, quantization_config=bnb_config(),
                                                              device_map="cpu")
        m.save_pretrained(d)
    copy_tokenizer(src, d)
    # transformers must have written exactly what quantize_4bit gives for the bf16 weights
    saved = safetensors.torch.load_file(str(d / "model.safetensors"))
    base = safetensors.torch.load_file(str(src / "model.safetensors"))
    checked = 0
    for name, w in base.items():
        if name.split(".")[-2] in LINEAR:
            p, qs = bnbF.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4",
                                       quant_storage=torch.uint8)
            for k, v in {"": p, **{"." + kk: vv for kk, vv in qs.as_dict(packed=True).items()}}.items():
                assert torch.equal(saved[name + k], v), f"transformers wrote {name + k} differently"
            checked += 1
        else:
            assert torch.equal(saved[name], w), f"transformers changed {name}"
    return {"linear_weights_identical_to_quantize_4bit": checked, "tensors": len(saved)}


def make_ct_int8_folder(out: Path, src: Path) -> dict:
    """The DESIGN.md int8 layout: per row, groups of 64 along the input dimension, scale =
    absmax/127 (float32), q = round-half-away(x/scale) clamped to [-127, 127] (int8)."""
    d = fc.fresh_dir(out / "models" / "tiny-llama-ct-int8")
    base = safetensors.torch.load_file(str(src / "model.safetensors"))
    tensors = {}
    for name, w in base.items():
        if name.split(".")[-2] in LINEAR and name.endswith(".weight"):
            q, s = ref_int8_group(w.float().numpy(), 64)
            tensors[name] = torch.from_numpy(q)
            tensors[name[: -len("weight")] + "weight_scale"] = torch.from_numpy(s)
        else:
            tensors[name] = w
    safetensors.torch.save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"] = ct_int8_quantization_config(64)
    fc.write_text(d / "config.json", json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(src / "generation_config.json", d / "generation_config.json")
    copy_tokenizer(src, d)
    return tensors


def ct_int8_quantization_config(group_size: int, per_group_format: bool = True, minimal: bool = False) -> dict:
    """What compressed-tensors 0.20 itself writes (ModelCompressor.update_config) for this scheme."""
    group = {"targets": ["Linear"],
             "weights": {"num_bits": 8, "type": "int", "symmetric": True, "group_size": group_size,
                         "strategy": "group", "dynamic": False},
             "input_activations": None, "output_activations": None}
    if per_group_format:
        group["format"] = "int-quantized"
    if minimal:
        return {"quant_method": "compressed-tensors", "format": "int-quantized",
                "quantization_status": "compressed", "config_groups": {"group_0": group}, "ignore": ["lm_head"]}
    return {"config_groups": {"group_0": group}, "format": "int-quantized", "global_compression_ratio": None,
            "ignore": ["lm_head"], "kv_cache_scheme": None, "moe_sparsity_config": None,
            "quant_method": "compressed-tensors", "quantization_status": "compressed", "sparsity_config": {},
            "transform_config": {}, "version": compressed_tensors.__version__}


def ref_int8_group(w: np.ndarray, g: int):
    w = np.asarray(w, dtype=F32)
    o, i = w.shape
    ng = -(-i // g)
    pad = np.zeros((o, ng * g), dtype=F32)
    pad[:, :i] = w
    scale = (np.max(np.abs(pad.reshape(o, ng, g)), axis=2) / F32(127)).astype(F32)
    s = np.repeat(scale, g, axis=1)[:, :i]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (w / s).astype(F32).astype(np.float64)  # float32 quotient, then exact rounding in f64
    q = np.where(s == 0, 0, np.sign(v) * np.floor(np.abs(v) + 0.5))
    return np.clip(q, -127, 127).astype(np.int8), scale


def ct_load_findings(out: Path, src: Path, int8_tensors: dict) -> dict:
    """Load the int8 folder (and variants of it) through transformers + compressed-tensors."""
    folder = out / "models" / "tiny-llama-ct-int8"
    res = {}

    def expected(name, tensors, scale_dtype=torch.float32):
        q = tensors[name]
        s = tensors[name[: -len("weight")] + "weight_scale"].to(scale_dtype)
        g = -(-q.shape[1] // s.shape[1])
        return (q.to(scale_dtype) * s.repeat_interleave(g, 1)[:, : q.shape[1]]).float()

    def try_load(path: Path, tensors, dequantize: bool, scale_dtype=torch.float32):
        kw = {"dtype": torch.float32}
        if dequantize:
            kw["quantization_config"] = transformers.CompressedTensorsConfig(run_compressed=False)
        try:
            with quiet():
                m = transformers.AutoModelForCausalLM.from_pretrained(path, **kw)
                with torch.no_grad():
                    m(input_ids=torch.tensor([[1, 2, 3]]))  # the non-dequantize path decompresses here
            worst, n = 0.0, 0
            for name, mod in m.named_modules():
                if name.split(".")[-1] in LINEAR:
                    worst = max(worst, (mod.weight.float() - expected(name + ".weight", tensors, scale_dtype))
                                .abs().max().item())
                    n += 1
            return {"loads": True, "weights_match": worst == 0.0, "linear_weights": n,
                    "max_abs_weight_minus_q_times_scale": worst,
                    "weight_dtype": str(mod.weight.dtype).replace("torch.", "")}
        except Exception as e:  # a finding, not a failure of this script
            return {"loads": False, "weights_match": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}

    res["fixture_folder"] = {"dequantize=True (run_compressed=False)": try_load(folder, int8_tensors, True),
                             "default (decompress on first forward)": try_load(folder, int8_tensors, False)}
    with tempfile.TemporaryDirectory() as tmp:
        def variant(label, qcfg, tensors=None):
            v = Path(tmp) / label
            shutil.copytree(folder, v)
            cfg = json.loads((v / "config.json").read_text())
            cfg["quantization_config"] = qcfg
            (v / "config.json").write_text(json.dumps(cfg, indent=2))
            if tensors is not None:
                safetensors.torch.save_file(tensors, str(v / "model.safetensors"), metadata={"format": "pt"})
            return v

        v = variant("minimal", ct_int8_quantization_config(64, minimal=True))
        res["minimal_config"] = {"config": ct_int8_quantization_config(64, minimal=True),
                                 "dequantize=True": try_load(v, int8_tensors, True),
                                 "default": try_load(v, int8_tensors, False)}
        v = variant("no_group_format", ct_int8_quantization_config(64, per_group_format=False, minimal=True))
        res["without_per_group_format"] = {"dequantize=True": try_load(v, int8_tensors, True),
                                           "default": try_load(v, int8_tensors, False)}
        bf = {k: (t.to(torch.bfloat16) if k.endswith("weight_scale") else t) for k, t in int8_tensors.items()}
        v = variant("bf16_scale", ct_int8_quantization_config(64), bf)
        res["bf16_weight_scale"] = {
            "dequantize=True, compared with bf16(q*scale)": try_load(v, bf, True, torch.bfloat16),
            "note": "compressed-tensors multiplies in the scale's dtype: q.to(bf16) * scale -> bf16 product"}
        base = safetensors.torch.load_file(str(src / "model.safetensors"))
        g128 = {}
        for name, w in base.items():
            if name.split(".")[-2] in LINEAR:
                q, s = ref_int8_group(w.float().numpy(), 128)
                g128[name], g128[name[: -len("weight")] + "weight_scale"] = torch.from_numpy(q), torch.from_numpy(s)
            else:
                g128[name] = w
        v = variant("group128", ct_int8_quantization_config(128), g128)
        res["group_size_128_not_dividing_64_or_192"] = {"dequantize=True": try_load(v, g128, True)}
    # compressed-tensors' own compressor, fed the same scales: does it write the same int8?
    res["compressed_tensors_own_compressor"] = ct_own_compress(src, int8_tensors)
    return res


def ct_own_compress(src: Path, int8_tensors: dict) -> dict:
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (QuantizationArgs, QuantizationConfig, QuantizationScheme,
                                                 apply_quantization_config)
    with quiet():
        m = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
        qc = QuantizationConfig(config_groups={"group_0": QuantizationScheme(
            targets=["Linear"], weights=QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="group",
                                                         group_size=64))},
            ignore=["lm_head"], format="int-quantized", quantization_status="frozen")
        apply_quantization_config(m, qc)
        for name, mod in m.named_modules():
            if hasattr(mod, "weight_scale"):
                mod.weight_scale.data = int8_tensors[name + ".weight_scale"].clone()
        mc = ModelCompressor.from_pretrained_model(m, quantization_format="int-quantized")
        mc.compress_model(m)
        sd = m.state_dict()
    base = safetensors.torch.load_file(str(src / "model.safetensors"))
    diff, total, ties, diff_ties, keys = 0, 0, 0, 0, set()
    for name, mod in m.named_modules():
        if name.split(".")[-1] in LINEAR:
            keys.update(k for k in sd if k.startswith(name + "."))
            a, b = sd[name + ".weight"], int8_tensors[name + ".weight"]
            assert a.dtype == torch.int8 and a.shape == b.shape
            w = base[name + ".weight"].float().numpy()
            s = int8_tensors[name + ".weight_scale"].numpy()
            v = (w / np.repeat(s, -(-w.shape[1] // s.shape[1]), axis=1)[:, : w.shape[1]]).astype(F32)
            tie = np.abs(v - np.trunc(v)) == F32(0.5)
            ne = (a != b).numpy()
            diff += int(ne.sum())
            diff_ties += int((ne & tie).sum())
            ties += int(tie.sum())
            total += a.numel()
    return {"int8_elements_differing_from_round_half_away": diff, "of": total,
            "differing_elements_that_are_exact_half_ties": diff_ties,
            "exact_half_ties_in_x_over_scale": ties,
            "state_dict_keys_per_linear": sorted({k.rsplit(".", 1)[1] for k in keys}),
            "note": "compressed-tensors rounds x/scale with torch.round (half to even) and clamps to "
                    "[-128, 127]; differences can only come from exact .5 ties"}


def make_logits(out: Path, src: Path) -> dict:
    folder = out / "models" / "tiny-llama-bnb-nf4"
    ids = eval_token_ids(src, out / "text" / "eval.txt")
    with quiet():
        base = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
        tb = portable_bnb(transformers.AutoModelForCausalLM.from_pretrained(folder).eval())
    deq, groups = dequantized_f32_model(folder)
    L = {"base_f32": logits_of(base, ids), "nf4_dequantized_f32": logits_of(deq, ids),
         "nf4_transformers_bnb": logits_of(tb, ids)}
    safetensors.torch.save_file({k: v.contiguous() for k, v in L.items()},
                                str(out / "quant" / "tiny_llama_logits.safetensors"), metadata={"format": "pt"})

    def mad(a, b):
        return float((L[a] - L[b]).abs().max())

    info = {
        "generator": "tools/make_quant_goldens.py",
        "token_ids": ids,
        "text": "fixtures/text/eval.txt, first 32 tokens of tokenizers.Tokenizer.from_file(tokenizer.json)"
                ".encode(text).ids (no BOS added)",
        "file": "tiny_llama_logits.safetensors (F32 [32, 512] each)",
        "logits": {
            "base_f32": "fixtures/models/tiny-llama, bf16 weights widened, float32 compute",
            "nf4_dequantized_f32": "fixtures/models/tiny-llama-bnb-nf4: each NF4 weight dequantized by "
                                   "bitsandbytes dequantize_4bit in float32 (code[q] * absmax, absmax from the "
                                   "nested 8-bit codes + offset), other tensors widened; float32 compute. "
                                   "This is what ckpt's f32 forward on that folder should match (~1e-4).",
            "nf4_transformers_bnb": "the same folder through transformers + bitsandbytes as users run it: "
                                    "bf16 compute (bnb_4bit_compute_dtype), weights dequantized to bf16 per "
                                    "forward; Linear4bit forced to the portable path (the AVX512-BF16 repacked "
                                    "kernel is machine-dependent)",
        },
        "max_abs_diff": {"nf4_dequantized_f32_vs_base_f32": mad("nf4_dequantized_f32", "base_f32"),
                         "nf4_transformers_bnb_vs_nf4_dequantized_f32": mad("nf4_transformers_bnb",
                                                                            "nf4_dequantized_f32")},
        "quantized_weights": groups,
    }
    fc.write_json(out / "quant" / "tiny_llama_logits.json", info)
    return info


def bnb_load_findings(out: Path, ids: list) -> dict:
    """Does a folder whose quantization_config carries only DESIGN.md's keys load the same?"""
    folder = out / "models" / "tiny-llama-bnb-nf4"
    design_keys = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                   "bnb_4bit_use_double_quant": True, "bnb_4bit_compute_dtype": "bfloat16",
                   "bnb_4bit_quant_storage": "uint8"}
    with tempfile.TemporaryDirectory() as tmp:
        v = Path(tmp) / "m"
        shutil.copytree(folder, v)
        cfg = json.loads((v / "config.json").read_text())
        written = cfg["quantization_config"]
        cfg["quantization_config"] = design_keys
        (v / "config.json").write_text(json.dumps(cfg, indent=2))
        with quiet():
            a = portable_bnb(transformers.AutoModelForCausalLM.from_pretrained(v).eval())
            b = portable_bnb(transformers.AutoModelForCausalLM.from_pretrained(folder).eval())
        same = torch.equal(logits_of(a, ids), logits_of(b, ids))
    return {"quantization_config_written_by_transformers": written,
            "design_md_keys_only": design_keys,
            "design_md_keys_only_loads_with_identical_logits": same}


# ---------------------------------------------------------------------------
# README


def make_readme(out: Path, manifest: dict, logits: dict, findings: dict):
    cases = manifest["cases"]
    dq = [c for c in cases if c["double_quant"]]
    methods = list(dq[0]["offset_by_method"])
    counts = {m: sum(1 for c in dq if c["offset_by_method"][m]["ulps_from_torch"] == 0) for m in methods}
    worst = {m: max(c["offset_by_method"][m]["ulps_from_torch"] for c in dq) for m in methods}
    mrows = [r["double_quant"] for r in manifest["model_weights"]["tensors"]]
    mcounts = {m: sum(1 for r in mrows if m in r["offset_methods_matching"]) for m in methods}
    method_table = "\n".join(f"| `{m}` | {counts[m]} / {len(dq)} | {worst[m]} | {mcounts[m]} / {len(mrows)} |"
                             for m in methods)
    size = {p.name: p.stat().st_size for p in sorted((out / "quant").iterdir()) if p.name != "load_check.json"}
    bytes_table = "\n".join(f"| `{k}` | {v:,} |" for k, v in size.items() if k != "README.md")
    dflt = "bitsandbytes/backends/default/ops.py"
    cpu = "bitsandbytes/backends/cpu/ops.py"
    fn = "functional.py"
    B = bitsandbytes
    ct = findings["ct_int8"]
    cfg_example = json.dumps(ct_int8_quantization_config(64), indent=2, sort_keys=True)
    kp = manifest["kernel_paths"]
    sumcheck = manifest["torch_mean_emulation_check"]
    fb = manifest["nested_codes_torch_fallback_vs_library"]
    lc = manifest["lut_checks"]
    text = f"""\
# Quantization goldens

Made by `tools/make_quant_goldens.py` (run by `tools/make_fixtures.sh` after
`tools/make_fixtures.py`) with torch {manifest['versions']['torch']}, bitsandbytes
{manifest['versions']['bitsandbytes']}, transformers {manifest['versions']['transformers']},
compressed-tensors {compressed_tensors.__version__}, on CPU, one thread, `ATEN_CPU_CAPABILITY=avx2`.
Every case below was also recomputed by the numpy reference implementation in that script
(`ref_quantize_4bit`, `ref_quantize_blockwise_8bit`, `ref_torch_sum_f32`): they agree on every byte.
That reference is the executable form of this page.

| file | what |
|---|---|
| `bnb_4bit.safetensors` + `bnb_4bit.json` | {len(cases)} `quantize_4bit` cases (`caseNN.*`; the manifest lists name, quant_type, blocksize, double_quant, dtype, shape, blocks, nested_offset as a float and as float32 hex, the packed quant_state JSON, a note) + hashes and offsets for all 28 linear weights of tiny-llama |
| `dynamic_map.safetensors` | `create_dynamic_map()` F32[256], `get_4bit_type` `nf4`/`fp4` F32[16], the 15 `nf4_bounds`/`fp4_bounds`, `fp4_order`, the 255 `dynamic_midpoints` and the 65536-entry `dynamic_lut` of the CPU 8-bit quantizer |
| `tiny_llama_logits.safetensors` + `.json` | logits [32, 512] of tiny-llama on the first 32 eval tokens: `base_f32`, `nf4_dequantized_f32`, `nf4_transformers_bnb` |
| `load_findings.json` | what transformers / compressed-tensors accept (config variants, int8 loads), measured |
| `load_check.json` | written by `tools/check_quantized_loads.py --record` (dev-time check of ckpt's own output; kept when the goldens are regenerated) |
| `../models/tiny-llama-bnb-nf4/` | tiny-llama loaded with `BitsAndBytesConfig(load_in_4bit, nf4, double quant, compute bf16)` on CPU and saved by `save_pretrained` (+ tokenizer files copied) |
| `../models/tiny-llama-ct-int8/` | tiny-llama in the compressed-tensors int8 group layout, written by the reference below |

Sizes: {sum(size.values()):,} bytes in this folder.

| file | bytes |
|---|---|
{bytes_table}

## Which code runs on CPU

* `quantize_4bit`: **{kp['quantize_4bit']}**. No CPU kernel is registered for it
  ({cite(B, 'backends/cpu/ops.py', 'register_kernel("bitsandbytes::quantize_blockwise", "cpu")')} registers only
  `quantize_blockwise`/`dequantize_*`), so the dispatcher runs
  {cite(B, 'backends/default/ops.py', 'register_kernel("bitsandbytes::quantize_4bit", "default")')}.
* The nested 8-bit quantization of the absmax (`quantize_blockwise`, blocksize 256, the dynamic
  map): **{kp['quantize_blockwise']}**, {cite(B, 'backends/cpu/ops.py', 'lib.cquantize_blockwise_cpu_fp32(')}
  (`cquantize_blockwise_cpu_fp32` → `quantize_cpu_impl<float>`). Native library loaded: {kp['native_library_loaded']}.
  The pure-torch fallback {cite(B, 'backends/default/ops.py', 'register_kernel("bitsandbytes::quantize_blockwise", "default")')}
  (bucketize on midpoints) is **not** what runs, and it gives different codes: on the double-quant
  cases here {fb['differ']} of {fb['codes']} nested codes differ (`nested_codes_torch_fallback_vs_library`).
* `dequantize_4bit` and `dequantize_blockwise`: {kp['dequantize_4bit']} (odd last dimension: falls back
  to {cite(B, 'backends/default/ops.py', 'def _dequantize_4bit_compute')}, wrapped in `torch.compile`; the
  generator runs it eagerly, `TORCHDYNAMO_DISABLE=1`). A 1-D input of even length comes back as `[1, n]`
  from the C++ path; `caseNN.dequant` is reshaped to the input shape.
* The C++ source is not in the wheel. Cited from bitsandbytes-foundation/bitsandbytes at commit
  95f9af309d4d (`0.50.2.dev0`; its Python package is byte-identical to the installed 0.50.2 except
  `__version__`): `csrc/cpu_ops.cpp` lines 501-520 (`build_quantize_lut`), 568-571
  (`norm_to_lut_index`), 574-665 (`quantize_cpu_impl`), 522-563 (the per-code-book LUT cache). The float expressions below were checked in
  the disassembly of the installed `libbitsandbytes_cpu.so` (`quantize_cpu_impl<float>._omp_fn.0` at
  0x38c0: `vdivss` for 1/absmax, `vmulss`, `std::clamp`, `vaddss 1.0`, `vmulss 0.5`,
  `vfmadd213ss 65535.0, +0.5`, `vcvttss2si`, `movzwl`; `build_quantize_lut` at 0x36c0: `vaddps` +
  `vmulps 0.5` for the midpoints, `vcvtsi2ss`, `vaddss x,x`, `vdivss 65535.0`, `vsubss 1.0`).

## 4-bit: `quantize_4bit` (NF4 and FP4), exact

Source: {cite(B, 'backends/default/ops.py', 'def _get_4bit_quantize_bounds')} (bounds),
{cite(B, 'backends/default/ops.py', 'register_kernel("bitsandbytes::quantize_4bit", "default")')} (kernel),
{cite(B, fn, 'def get_4bit_type')} (tables), {cite(B, fn, 'def quantize_4bit(')} (wrapper).

1. `A.reshape(-1).float()`: bf16/f16 are widened exactly; blocks run over the flattened tensor
   (row boundaries do not matter). `n`, `rem = n % blocksize`, `full = n - rem`.
2. **Full blocks**: `absmax = max|x|` (float32, stored **unclamped**: an all-zero block stores
   `0.0`, a block of `-0.0` stores `+0.0`). Scale: `scaled = clamp(x * (1.0 / max(absmax, 1e-38)), -1, 1)`:
   a correctly rounded float32 **reciprocal**, then a float32 multiply
   ({cite(B, 'backends/default/ops.py', 'scaled = torch.clamp(A_com * (1.0 / absmax.clamp(min=1e-38)', 2)}).
   `1e-38` becomes the float32 subnormal `0x006CE3EE` (9.99999935e-39); blocks whose absmax is below it
   (subnormal inputs) are scaled by `1/9.99999935e-39` (= 1.0000000e38, finite), not by their own
   absmax, while the stored absmax is still the true one: subnormal blocks quantize to (almost) all
   zero codes.
3. **The last, partial block** (when `rem > 0`): `am = max(max|x|, 1e-38)` is **stored clamped**
   (an all-zero remainder stores `0x006CE3EE`, not 0), and `scaled = clamp(x / am, -1, 1)` is a true
   float32 **division**, not a reciprocal multiply
   ({cite(B, 'backends/default/ops.py', 'scaled = torch.cat([scaled, torch.clamp(A_flat[full:] / am, -1, 1)])', 2)}).
   The two differ in the last bit often enough to change codes: cases with notes
   "reciprocal-vs-division" hold values where they do.
4. Codes: `bounds[i] = (s[i] + s[i+1]) / 2` in float32 over the code table sorted ascending
   (`argsort`, stable on CPU), `q = bucketize(scaled, bounds)` (right=False: the first `i` with
   `scaled <= bounds[i]`). **A value exactly on a midpoint takes the lower code.** NaN → 15.
   NF4: sorted order is the identity, so `q` is the NF4 index; `0.0`/`-0.0` → 7. FP4: `q` is mapped
   through `fp4_order = {list(map(int, ref_4bit_bounds('fp4')[0]))}`: scaled values in
   (-0.0026041667, 0] (zero, -0.0, tiny negatives) → code **0**, in (0, 0.0026041667] → code **8**
   (both decode to +0.0, the table has no -0.0; bit pattern 8 is where a sign bit would be).
   The bounds are in `dynamic_map.safetensors`.
5. Odd `n`: `scaled` is padded with one `0.0` **before** bucketize, so the last low nibble is the
   zero code (NF4 7, FP4 0), not 0.
6. Packing: `byte = (q[2k] << 4) | q[2k+1]` (first element in the high nibble), shape
   `[(n+1)//2, 1]`, U8.
7. All-zero full block → codes 7 (NF4), 0 (FP4); this is what the formula gives anyway
   (`0 * 1e38 = 0`), no special case.

`get_4bit_type`: the literals divided by their absmax in float32 (NF4 already has ±1.0; FP4 is
`[0, 0.0625, 8, 12, 4, 6, 2, 3, 0, -0.0625, -8, -12, -4, -6, -2, -3] / 12`).

## Double quantization (`compress_statistics=True`), exact

{cite(B, fn, 'offset = _absmax.mean()', 2)}:
`offset = absmax.mean()`; `quantize_blockwise(absmax - offset, blocksize=256)` with the default
dynamic map (`create_dynamic_map()`, signed, 7 exponent bits: `dynamic_map.safetensors`). The stored
`absmax` becomes U8 codes, `nested_absmax` the float32 absmax of each 256-block of the **centred**
values, `nested_quant_map` a copy of the dynamic map. `absmax - offset` is a float32 subtraction.

The CPU 8-bit quantizer (`quantize_cpu_impl<float>`), per block of 256 (the last may be shorter):

* `absmax_block = max(0, max |x|)` (NaN ignored). If `absmax_block == 0`: every code is **0**
  (`memset`, index 0 = -0.99297 in the dynamic map, not the zero entry) and `nested_absmax = 0`.
* else `inv = 1.0f / absmax_block` (float32 division, **reciprocal**), `v = x * inv` (float32).
* `idx = (uint16_t) fmaf((clamp(v, -1, 1) + 1.0f) * 0.5f, 65535.0f, 0.5f)`: clamp (NaN passes
  through), add 1.0f, multiply by 0.5f (each rounded to float32), then one fused multiply-add
  rounded once, then truncation toward zero (`vcvttss2si`; a NaN gives 0x80000000 whose low 16
  bits are **0**).
* `code = lut[idx]` with the 65536-entry table built once per code book:
  `mid[i] = 0.5f * (code[i] + code[i+1])` (float32) for i < 255, then for i = 0..65535:
  `val = (2.0f * (float)i) / 65535.0f - 1.0f` (float32 ops: exact doubling, correctly rounded
  division, subtraction) and `lut[i]` = the number of leading midpoints `< val` (the build loop
  advances `code_idx` while `mid[code_idx] < val`): a value exactly on a midpoint takes the lower
  index. `dynamic_lut` in `dynamic_map.safetensors` is this table; the generator checks it against
  the library on all 65536 grid points.
* So the code is the nearest **grid point's** nearest code, not the nearest code of `v`: codes
  closer together than 1/32768 (the dynamic map is dense near 0) cannot all be reached.
* Fused or not makes no difference in practice: on {lc['fused_vs_unfused']['values']:,} values within 3 ulps of
  every LUT index boundary, the unfused `(t*65535.0f) + 0.5f` gave a different index
  {lc['fused_vs_unfused']['index_differs']} times (adding 0.5 is exact in the product's binade). The reference
  computes the fused form exactly in float64.

Dequantization (what transformers does on load and per forward): `absmax = code8[q8] * nested_absmax[i // 256] + offset`
(float32, the multiply in `dequantize_blockwise`, then `absmax += offset`), then `out = code4[q4] * absmax`
(float32), cast to the quant_state `dtype`. Every case's `caseNN.dequant` equals this
(`dequant_equals_code_times_absmax` in the manifest).

### The nested offset: can `absmax.mean()` be reproduced?

Yes, exactly, when torch runs on one thread (or the absmax has ≤ 32768 entries). `torch.mean` on
CPU is `sum(...).div_(n)`; the float32 `sum` is `cascade_sum` (aten/src/ATen/native/cpu/SumKernel.cpp):
`vectorized_inner_sum` over `Vectorized<float>` of **8 lanes** (AVX2): the first `8*(n/8)` elements as
`n/8` vectors, summed by `row_sum` (4 interleaved accumulators of vectors, each a 4-level cascade with
level step 16, i.e. `multi_row_sum`), then the accumulators 0+1+2+3, then a scalar `final = 0`, plus the
`n % 8` tail elements in order, plus the 8 lanes in order, and finally `0 + final`. Then
`mean = sum / (float)n`, one float32 division. `ref_torch_sum_f32` in the generator is this,
line by line. Checked by the generator against `torch.mean` (`torch_mean_emulation_check` in
`bnb_4bit.json`): {sumcheck['one_thread']['equal']} of {sumcheck['one_thread']['arrays']} random arrays of
1..32768 elements equal, one thread.

Per golden case (`offset_by_method` in the manifest: value, float32 hex, ulps from torch):

| method | cases matching torch exactly | worst ulps | tiny-llama weights matching |
|---|---|---|---|
{method_table}

* `torch_cascade_avx2_8_lanes` is torch's algorithm with the vector width pinned here
  (`ATEN_CPU_CAPABILITY=avx2`). With AVX512 torch uses 16 lanes and the last bit can change.
* **Threads change it**: for more than 32768 absmax values (tensors over ~2M elements at blocksize 64)
  and more than one torch thread, `parallel_reduce` splits the sum into one chunk per thread
  (`ceil(n/threads)` elements each, each chunk summed as above, partial sums added in order). With 2
  threads on {sumcheck['two_threads']['arrays']} arrays of 32769..704512 values the mean differed from the
  one-thread mean in {sumcheck['two_threads']['mean_differs_from_one_thread']} (by at most
  {sumcheck['two_threads']['max_ulps']} ulps) and the two-chunk model reproduced
  {sumcheck['two_threads']['two_chunk_model_equal']}. So for big tensors bitsandbytes' own offset is not a function of the data
  alone; the bytes given an offset are (DESIGN.md's fallback).
* The quant_state JSON stores the offset as Python's `repr` of the float32 value widened to a double
  (`{dq[0]['nested_offset']!r}`): print the double, not the shortest float32 repr.

### quant_state JSON

{cite(B, fn, 'def as_dict(self, packed: bool = False)')} + {cite(B, 'utils.py', 'def pack_dict_to_tensor')}:
`json.dumps` (default separators `", "` and `": "`) of, in this order, `quant_type`, `blocksize`,
`dtype` (`str(torch.dtype).strip("torch.")`: `float32`, `bfloat16`, `float16`), `shape` (a list),
then for double quant `nested_blocksize` (256), `nested_dtype` (`"float32"`), `nested_offset`.
UTF-8 bytes as a U8 1-D tensor named `<weight>.quant_state.bitsandbytes__nf4` (or `__fp4`).
Example (`{dq[0]['name']}`): `{dq[0]['quant_state_json']}`

## transformers + bitsandbytes folder (`../models/tiny-llama-bnb-nf4/`)

transformers {manifest['versions']['transformers']} quantizes on CPU without complaint. Its
`model.safetensors` holds, for each of the 28 linear weights, exactly what `quantize_4bit(w_bf16,
blocksize=64, compress_statistics=True, quant_type="nf4")` returns (checked tensor by tensor: packed,
absmax U8, nested_absmax, nested_quant_map, quant_map, quant_state), and every other tensor unchanged
(embeddings, `lm_head`, norms stay bf16). Keys per weight `P.weight`: `P.weight` (U8 [(n+1)/2, 1]),
`P.weight.absmax`, `P.weight.nested_absmax`, `P.weight.nested_quant_map`, `P.weight.quant_map`,
`P.weight.quant_state.bitsandbytes__nf4`. `__metadata__` is `{{"format": "pt"}}`.

`config.json` gets this `quantization_config` (transformers writes every field, sorted):

```json
{json.dumps(findings['bnb']['quantization_config_written_by_transformers'], indent=2, sort_keys=True)}
```

A folder whose `quantization_config` has only DESIGN.md's keys
(`{json.dumps(findings['bnb']['design_md_keys_only'])}`) loads with identical logits:
{findings['bnb']['design_md_keys_only_loads_with_identical_logits']}.

Logits (`tiny_llama_logits.json`): max |nf4_dequantized_f32 − base_f32| =
{logits['max_abs_diff']['nf4_dequantized_f32_vs_base_f32']:.6g}; max |nf4_transformers_bnb −
nf4_dequantized_f32| = {logits['max_abs_diff']['nf4_transformers_bnb_vs_nf4_dequantized_f32']:.6g}
(bf16 compute). On CPUs with AVX512-BF16, `Linear4bit.forward` repacks the weight and runs a C++ kernel
with **bf16 absmax** ({cite(B, 'nn/modules.py', 'self.support_avx512bf16_for_cpu', 2)}); the recorded logits force
the portable path, `tools/check_quantized_loads.py` reports both. That repacking
(`_convert_weight_packed_for_cpu`) reshapes absmax to `[out, in // blocksize]` and raises when
`in_features % blocksize != 0` (seen with FP4, blocksize 128, on tiny-llama's 64-wide layers): a
bitsandbytes limitation on those CPUs only; the portable path loads such folders. `nf4_transformers_bnb` is the one
golden computed in bf16 (torch's CPU bf16 `linear`, MKL pinned by `MKL_CBWR=AVX2`); the others are
float32.

## int8, compressed-tensors layout (`../models/tiny-llama-ct-int8/`)

Written by `ref_int8_group` (DESIGN.md): per row, groups of 64 along the input dimension,
`scale = absmax / 127` (float32 division), `q = round-half-away(x / scale)` (float32 quotient),
clamped to [-127, 127]; a zero group gets scale 0 and q 0 (DESIGN.md does not say; tiny-llama
has none). Tensors per linear weight `P`:
`P.weight` **I8 [out, in]**, `P.weight_scale` **F32 [out, in/64]**. No `weight_zero_point`
(symmetric: compressed-tensors itself drops it when saving, `_remove_symmetric_zp`), no
`weight_shape`/`weight_packed` (those belong to `pack-quantized`). Everything else unchanged (bf16).

`config.json` → `quantization_config`, exactly as compressed-tensors'
`ModelCompressor.update_config` writes it for this scheme (it rewrites the whole config.json with
`indent=2, sort_keys=True`):

```json
{cfg_example}
```

Findings (`load_findings.json`, all with transformers {manifest['versions']['transformers']} +
compressed-tensors {compressed_tensors.__version__} on CPU, `dtype=torch.float32`):

* The folder loads with `CompressedTensorsConfig(run_compressed=False)` (deprecated alias of
  `dequantize=True`): {ct['fixture_folder']['dequantize=True (run_compressed=False)']}.
  And without it (compressed on load, decompressed by a hook on the first forward):
  {ct['fixture_folder']['default (decompress on first forward)']}.
  The dequantized weight is `q.to(scale.dtype) * scale` then `.to(model dtype)`: exactly `q * scale`
  in float32.
* **The per-group `"format": "int-quantized"` is required** for the default load: without it
  compressed-tensors infers the format per module, and for a weight-only int scheme it infers
  `pack-quantized` (`IntQuantizationCompressor.can_compress` requires input activations) and expects
  `weight_packed`/`weight_shape`: the I8 `weight` is reported UNEXPECTED, `weight_packed` MISSING,
  and the layers keep their random initialisation or fail on the first forward ("tensor column shape
  must be divisible by the given group_size 64 but got 1"): {ct['without_per_group_format']['default']}.
  With `dequantize=True` the global `format` is used and it loads:
  {ct['without_per_group_format']['dequantize=True']}.
* A minimal `quantization_config` (`quant_method`, `format`, `quantization_status: "compressed"`,
  `config_groups` with the per-group format, `ignore`) loads the same:
  {ct['minimal_config']['dequantize=True']['loads']} / {ct['minimal_config']['default']['loads']}.
* `weight_scale` in bf16 also loads, but the product is then computed in bf16:
  {ct['bf16_weight_scale']['dequantize=True, compared with bf16(q*scale)']}.
* A group size that does not divide the input dimension does not load:
  {ct['group_size_128_not_dividing_64_or_192']['dequantize=True']}.
* compressed-tensors' own compressor, given the same float32 scales, writes almost the same int8:
  {ct['compressed_tensors_own_compressor']['int8_elements_differing_from_round_half_away']} of
  {ct['compressed_tensors_own_compressor']['of']} differ, all of them
  ({ct['compressed_tensors_own_compressor']['differing_elements_that_are_exact_half_ties']}) exact .5 ties of
  `x/scale` (there are {ct['compressed_tensors_own_compressor']['exact_half_ties_in_x_over_scale']} ties: bf16
  weights have 8 significant bits, so ties are common). It rounds half to even (`torch.round`) and clamps to
  [-128, 127]; DESIGN.md's round-half-away therefore differs from llm-compressor output on ties. Its own observer would pick `scale = absmax / 127.5`, and it stores `weight_scale` in
  the weight's dtype, bf16 here, unless `scale_dtype` is set).
* vLLM (not installed here, read from its source): its compressed-tensors loader takes weight-only
  group/channel int schemes only with format `pack-quantized` (`CompressedTensorsWNA16`); an
  `int-quantized` weight-only scheme reaches no scheme and raises "No compressed-tensors compatible
  scheme was found" (vllm-project/vllm,
  `vllm/model_executor/layers/quantization/compressed_tensors/compressed_tensors.py`,
  `_get_scheme_from_parts`). DESIGN.md's "loadable by vLLM" should be checked before it is claimed.
"""
    fc.write_text(out / "quant" / "README.md", text)


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "fixtures", help="default: <repo>/fixtures")
    ap.add_argument("--only", default=None, help="make_fixtures.py's sections; runs only if 'models' is among them")
    args = ap.parse_args()
    if not fc.models_section_requested(args.only, "make_quant_goldens"):
        return
    fc.setup_libraries()
    out = args.out.resolve()
    src = out / "models" / "tiny-llama"
    if not (src / "model.safetensors").is_file() or not (out / "text" / "eval.txt").is_file():
        sys.exit(f"error: {src}/model.safetensors or {out}/text/eval.txt missing: run tools/make_fixtures.py first")
    start = time.monotonic()
    model_weights = safetensors.torch.load_file(str(src / "model.safetensors"))

    log("quant: quantize_4bit goldens")
    manifest = make_goldens(out, model_weights)
    log(f"  {len(manifest['cases'])} cases")
    log("quant: tiny-llama-bnb-nf4 (transformers + bitsandbytes)")
    bnb_info = make_bnb_folder(out, src)
    log("quant: tiny-llama-ct-int8")
    int8 = make_ct_int8_folder(out, src)
    log("quant: logits")
    logits = make_logits(out, src)
    log("quant: load findings")
    findings = {"bnb": {**bnb_load_findings(out, logits["token_ids"]), "folder": bnb_info},
                "ct_int8": ct_load_findings(out, src, int8)}
    fc.write_json(out / "quant" / "load_findings.json", findings)
    make_readme(out, manifest, logits, findings)
    fc.write_sums(out)
    log(f"make_quant_goldens: done in {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    main()
