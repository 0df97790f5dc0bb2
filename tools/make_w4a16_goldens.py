#!/usr/bin/env python3
"""Golden files for issue 14's W4A16 checkpoint formats: compressed-tensors `pack-quantized`,
GPTQ (v1 "gptq" and v2 "gptq_v2" zero points) and AutoAWQ GEMM. See docs/w4a16-formats-spec.md
for the formats themselves.

Needs fixtures/models/tiny-llama and fixtures/eval/eval_tokens_u32le.bin (tools/make_fixtures.py,
tools/make_eval_goldens.py). The output is a pure function of this script, the pinned wheels
(tools/requirements.txt: torch 2.15, transformers 5.24, compressed-tensors 0.20.0) and those
fixtures: fixed seeds, one thread, a second run rewrites every file byte for byte. It does NOT
rewrite fixtures/SHA256SUMS (fixture_common.write_sums does that for the whole tree).

Writes:
  fixtures/w4a16/packing.safetensors      bit-packing goldens (CT pack_to_int32, GPTQ, AWQ GEMM)
  fixtures/w4a16/<folder>.expected.safetensors   per model folder below: every quantized P.weight
                                          dequantized as the reference library does it (and, for
                                          the compressed-tensors folders, `logits` + `token_ids`)
  fixtures/w4a16/load_findings.json       what loading did, arithmetic probes, cross-checks
  fixtures/w4a16/README.md                what every file is, with source lines
  fixtures/models/tiny-llama-ct-w4a16/            made by compressed-tensors 0.20 itself
  fixtures/models/tiny-llama-ct-w4a16-asym/       (apply_quantization_config, calculate_qparams,
  fixtures/models/tiny-llama-ct-w8a16-channel/     ModelCompressor, transformers save_pretrained)
  fixtures/models/tiny-llama-gptq/                synthetic (GPTQModel is not installed): RTN
  fixtures/models/tiny-llama-gptq-v2-actorder/    codes by GPTQModel's find_params rule, packed
  fixtures/models/tiny-llama-awq/                 by the transcriptions below; AWQ: AutoAWQ's
                                                  pseudo_quantize_tensor + WQLinear_GEMM.from_linear

Transcribed library code (not installed here; read at the pinned commits):
  GM = ModelCloud/GPTQModel @ f4c327a17eb3 (version.py 7.3.4)
  AA = casper-hansen/AutoAWQ @ 88e4c76b2075 (final release)
Every transcription is checked against a second, independent form (a literal torch copy of the
library lines, the installed compressed-tensors functions where a cross-format identity holds,
compressed-tensors' own AutoAWQConverter) and against its inverse; the script stops on the
first byte that disagrees.

compressed-tensors 0.20 pack-quantized, exact arithmetic (the Swift writer must reproduce it;
every step below is recomputed in numpy and compared byte for byte with what CT wrote):
  * CT 0.20 has no observer classes (they live in llm-compressor). The weight min-max observer is
    `amin`/`amax` over each group of the bf16 weight (llm-compressor observers/min_max.py +
    helpers.py _flatten_weight do exactly this), then CT's own `calculate_qparams`. No
    calibration data is involved. Values are exact (min/max of bf16 values).
  * calculate_qparams (quantization/utils/helpers.py): min = min(min, 0), max = max(max, 0).
    Every op runs in the weight dtype, bf16, which torch's CPU kernels compute as a float32 op
    on the widened operands, rounded once to bf16 (round to nearest even):
      symmetric:  s = bf16(absmax / 7.5)            (int8: / 127.5; 7.5 and 127.5 exact in bf16)
      asymmetric: s = bf16(bf16(max - min) / 15)    (int8: / 255)
                  zp = round_half_even(clamp(bf16(-8 - bf16(min / s)), -8, 7)) -> int8
    Then s == 0 -> s = torch.finfo(bfloat16).eps = 2^-7 = 0.0078125 (after zp was computed).
    The scale is stored in the weight dtype, BF16 ([N, ng]; channel: [N, 1]).
    The zero point is a signed int8 in memory; the file stores zp + 8 (int4) nibbles packed
    along N, I32 [ceil(N*b/32), ng]. Symmetric: no zero point tensor (dropped on compress).
  * quantize (forward_helpers.py _quantize): t = bf16(x / s) (float32 quotient of the two bf16
    values rounded to bf16: the rounding to bf16 happens BEFORE rounding to an integer, so e.g.
    a quotient 5.49 becomes 5.5 and then 6), t = bf16(t + zp) (zp = 0 for symmetric), clamp to
    [-8, 7] (int8: [-128, 127]) and then torch.round (half to even) -> int8. Clamp and round
    commute here (integer bounds). The codes are packed by pack_to_int32 as q + 8 (q + 128).
  * all-zero group: symmetric: s = 2^-7, zp = 0, q = 0 (nibble 8), dequantizes to 0.
    asymmetric: s = 0 when zp is computed, so zp = -8 - (0/0) = NaN, clamp/round keep NaN and
    NaN.to(int8) gives 0 on this x86 CPU (implementation-defined); then s = 2^-7 and q = 0
    (0/2^-7 + 0), dequantized 0. Recorded in load_findings.json (`ct_arithmetic_probes`).
  * load (transformers 5.24 + CT 0.20, CompressedTensorsConfig(run_compressed=False), dtype
    bfloat16): W = bf16((q - zp) * s): the product is exact in float32 and rounded once to bf16.
    Loading with dtype=float32 gives the same values widened (the stored BF16 weight_scale keeps
    its dtype through decompression, so the product is still rounded to bf16): see
    load_findings.json.

Options: --out DIR (default <repo>/fixtures). --only SECTIONS as in make_fixtures.py: runs only
when absent or when it names 'models'.
"""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

# First, before torch is imported: pins the environment for determinism (see fixture_common.py).
import fixture_common as fc  # noqa: E402
from fixture_common import cite, log  # noqa: E402

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import compressed_tensors  # noqa: E402
from compressed_tensors.compressors import ModelCompressor  # noqa: E402
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32, unpack_from_int32  # noqa: E402
from compressed_tensors.entrypoints.convert.converters.autoawq import AutoAWQConverter  # noqa: E402
from compressed_tensors.quantization import (  # noqa: E402
    QuantizationArgs,
    QuantizationConfig,
    QuantizationScheme,
    QuantizationStatus,
    apply_quantization_config,
)
from compressed_tensors.quantization.lifecycle.forward import dequantize as ct_dequantize  # noqa: E402
from compressed_tensors.quantization.lifecycle.forward import quantize as ct_quantize  # noqa: E402
from compressed_tensors.quantization.utils import calculate_qparams  # noqa: E402
from loguru import logger as _loguru  # noqa: E402

_loguru.disable("compressed_tensors")  # per-module warnings and progress noise

REPO = TOOLS.parent
F32, F16 = np.float32, np.float16
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
N_TOKENS = 32
GM = "ModelCloud/GPTQModel @ f4c327a17eb3e24524d5a97a3d682e3696ae6a28 (version.py 7.3.4, 2026-08-23)"
AA = "casper-hansen/AutoAWQ @ 88e4c76b20755db275574e6a03c83c84ba3bece5 (2025-05-11, final)"
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # AA awq/utils/packing_utils.py L4, gemm.py from_linear L222
AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]  # AA awq/utils/packing_utils.py L5

CT_FOLDERS = {
    "tiny-llama-ct-w4a16": dict(num_bits=4, symmetric=True, strategy="group", group_size=32),
    "tiny-llama-ct-w4a16-asym": dict(num_bits=4, symmetric=False, strategy="group", group_size=64),
    "tiny-llama-ct-w8a16-channel": dict(num_bits=8, symmetric=True, strategy="channel", group_size=None),
}
GPTQ_FOLDERS = {
    "tiny-llama-gptq": dict(sym=True, group_size=32, desc_act=False, checkpoint_format="gptq"),
    "tiny-llama-gptq-v2-actorder": dict(sym=False, group_size=32, desc_act=True, checkpoint_format="gptq_v2"),
}
AWQ_FOLDER = "tiny-llama-awq"
AWQ_GROUP = 32


def rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


@contextlib.contextmanager
def quiet():
    """transformers prints load reports and deprecation warnings; keep the log readable."""
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def must(cond, msg):
    if not cond:
        sys.exit(f"error: {msg}")


def same(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    must(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(),
         f"{what}: the two computations disagree ({a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)})")


def np_of(t: torch.Tensor) -> np.ndarray:
    """A torch tensor as numpy; bf16/f16 are widened to float32 (exactly)."""
    t = t.detach().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.float().numpy()
    return t.numpy()


# ---------------------------------------------------------------------------
# numpy float helpers: torch's CPU bf16/f16 element-wise ops compute in float32 and round the
# result once to the narrow type (round to nearest even). bf16() and f16() are that rounding.


def bf16(x) -> np.ndarray:
    """Round float32 values to bfloat16 (nearest even); returned as float32 values."""
    a = np.ascontiguousarray(np.asarray(x, dtype=F32))
    must(np.isfinite(a).all(), "bf16(): non-finite input")
    u = a.view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    out = u.astype(np.uint32).view(F32).reshape(a.shape)
    must(np.isfinite(out).all(), "bf16(): overflow")
    return out


def f16(x) -> np.ndarray:
    """Round float32 values to float16 (nearest even)."""
    return np.asarray(x, dtype=F32).astype(F16)


def torch_bf16(a: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=F32)).to(torch.bfloat16)
    must(torch.equal(t.float(), torch.from_numpy(np.ascontiguousarray(a, dtype=F32))), "value not representable in bf16")
    return t


# ---------------------------------------------------------------------------
# compressed-tensors reference (numpy). CT = compressed_tensors 0.20.0 as installed.


def ref_ct_pack(q: np.ndarray, bits: int, packed_dim: int = 1) -> np.ndarray:
    """pack_to_int32 (compressors/pack_quantized/helpers.py): u = q + 2^(b-1); element k of a row
    at global bit k*b (dense, LSB first); rows padded with raw 0 to 32 elements; ceil(C*b/32) words."""
    u = q.astype(np.int64) + (1 << (bits - 1))
    must(((u >= 0) & (u < (1 << bits))).all(), "ref_ct_pack: code out of range")
    if packed_dim == 0:
        u = u.T
    rows, cols = u.shape
    words = np.zeros((rows, -(-cols * bits // 32)), dtype=np.uint64)
    for k in range(cols):
        bit = k * bits
        w, off = bit // 32, bit % 32
        words[:, w] |= (u[:, k].astype(np.uint64) << np.uint64(off)) & np.uint64(0xFFFFFFFF)
        if off + bits > 32:
            words[:, w + 1] |= u[:, k].astype(np.uint64) >> np.uint64(32 - off)
    out = words.astype(np.uint32).view(np.int32)
    return np.ascontiguousarray(out.T if packed_dim == 0 else out)


def ref_ct_unpack(words: np.ndarray, bits: int, shape, packed_dim: int = 1) -> np.ndarray:
    w = words.T if packed_dim == 0 else words
    w = np.ascontiguousarray(w).view(np.uint32).astype(np.uint64)
    cols = int(shape[packed_dim])
    out = np.zeros((w.shape[0], cols), dtype=np.int64)
    for k in range(cols):
        bit = k * bits
        i, off = bit // 32, bit % 32
        v = w[:, i] >> np.uint64(off)
        if off + bits > 32:
            v |= w[:, i + 1] << np.uint64(32 - off)
        out[:, k] = (v & np.uint64((1 << bits) - 1)).astype(np.int64)
    out = (out - (1 << (bits - 1))).astype(np.int8)
    return np.ascontiguousarray(out.T if packed_dim == 0 else out)


def ct_group(spec: dict, k: int) -> int:
    return k if spec["strategy"] == "channel" else spec["group_size"]


def ref_ct_qparams(w: np.ndarray, spec: dict):
    """calculate_qparams on the min-max of each group, in bf16 (see the module docstring).
    w: float32 values of the bf16 weight [N, K]. Returns (scale f32-of-bf16 [N, ng], zp int8 [N, ng])."""
    n, k = w.shape
    g = ct_group(spec, k)
    grp = w.reshape(n, k // g, g)
    mn = np.minimum(grp.min(-1), F32(0))
    mx = np.maximum(grp.max(-1), F32(0))
    b = spec["num_bits"]
    qmin, qmax = -(1 << (b - 1)), (1 << (b - 1)) - 1
    bit_range = F32(qmax - qmin)
    if spec["symmetric"]:
        half = bf16(bit_range / F32(2))  # bit_range.to(bf16) / 2
        s = bf16(np.maximum(np.abs(mn), mx) / half)
        zp = np.zeros_like(s)
    else:
        s = bf16(bf16(mx - mn) / bit_range)
        must((s > 0).all(), "ref_ct_qparams: zero scale in asymmetric data (the NaN zero-point case)")
        zp = bf16(F32(qmin) - bf16(mn / s))
        zp = np.round(np.clip(zp, qmin, qmax))
    s = np.where(s == 0, F32(2.0 ** -7), s).astype(F32)  # finfo(bfloat16).eps
    return s, zp.astype(np.int8)


def ref_ct_quantize(w: np.ndarray, s: np.ndarray, zp: np.ndarray, spec: dict, bf16_division: bool = True):
    b = spec["num_bits"]
    qmin, qmax = -(1 << (b - 1)), (1 << (b - 1)) - 1
    g = ct_group(spec, w.shape[1])
    srep = np.repeat(s, g, axis=1)
    zrep = np.repeat(zp, g, axis=1).astype(F32)
    if bf16_division:
        t = bf16(bf16(w / srep) + zrep)
    else:  # what a float32 implementation would do; only for the findings
        t = (w / srep).astype(F32) + zrep
    return np.round(np.clip(t, qmin, qmax)).astype(np.int8)


def ref_ct_dequantize(q: np.ndarray, s: np.ndarray, zp: np.ndarray, g: int) -> np.ndarray:
    d = (q.astype(F32) - np.repeat(zp, g, axis=1).astype(F32))
    return bf16(d * np.repeat(s, g, axis=1))  # exact float32 product, one rounding to bf16


# ---------------------------------------------------------------------------
# GPTQModel transcriptions (GM = ModelCloud/GPTQModel @ f4c327a, see GM above)


def gm_find_params(x: np.ndarray, bits: int, sym: bool):
    """GM gptqmodel/quantization/quantizer.py Quantizer.find_params L95-140 (perchannel=True,
    weight=True, mse=0): per row of x (float32)."""
    maxq = F32((1 << bits) - 1)
    xmin = np.minimum(x.min(1), F32(0))
    xmax = np.maximum(x.max(1), F32(0))
    if sym:
        xmax = np.maximum(np.abs(xmin), xmax)
        xmin = np.where(xmin < 0, -xmax, xmin)  # L120-122: only rows with a negative value
    both0 = (xmin == 0) & (xmax == 0)
    xmin = np.where(both0, F32(-1), xmin).astype(F32)
    xmax = np.where(both0, F32(1), xmax).astype(F32)
    scale = ((xmax - xmin).astype(F32) / maxq).astype(F32)
    if sym:
        zero = np.full_like(scale, (maxq + 1) / 2)  # L137
    else:
        zero = np.round((-xmin / scale).astype(F32)).astype(F32)  # L139
    return scale, zero


def gm_quantize_codes(x: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int) -> np.ndarray:
    """GM quantizer.py quantize L26: the integer q = clamp(round(x/scale) + zero, 0, maxq)."""
    q = np.round((x / scale[:, None]).astype(F32)) + zero[:, None]
    return np.clip(q, 0, (1 << bits) - 1).astype(F32)


def gm_rtn(w: np.ndarray, bits: int, group_size: int, sym: bool, g_idx: np.ndarray):
    """Round-to-nearest with GPTQModel's per-group parameters: group j = the columns with
    g_idx == j (for desc_act these are perm[j*G:(j+1)*G], GM gptq.py L1229-1235 on the permuted W).
    Returns codes u (uint8 [K, N], the GPTQ orientation), scales (f32 [ng, N]), zeros (f32 [ng, N])."""
    n, k = w.shape
    ng = int(g_idx.max()) + 1
    u = np.zeros((n, k), dtype=F32)
    scales = np.zeros((ng, n), dtype=F32)
    zeros = np.zeros((ng, n), dtype=F32)
    for j in range(ng):
        cols = np.nonzero(g_idx == j)[0]
        must(cols.size == group_size, "gm_rtn: every group must have exactly G members")
        s, z = gm_find_params(w[:, cols], bits, sym)
        u[:, cols] = gm_quantize_codes(w[:, cols], s, z, bits)
        scales[j], zeros[j] = s, z
    return u.T.astype(np.uint8), scales, zeros


def gm_fake_quant(u_kn: np.ndarray, scales: np.ndarray, zeros: np.ndarray, g_idx: np.ndarray) -> np.ndarray:
    """GM quantize() L27: scale * (q - zero), float32, in nn.Linear orientation [N, K]."""
    g = g_idx.astype(np.int64)
    return (scales[g].T * (u_kn.T.astype(F32) - zeros[g].T)).astype(F32)


def gm_pack_int_weight(W: np.ndarray, scales_nk: np.ndarray, zeros_nk: np.ndarray, g_idx: np.ndarray, bits: int):
    """GM nn_modules/qlinear/__init__.py pack_original L1516-1531: re-derives the integer codes
    from the (fake-quantized, module-dtype) weight W [N, K] and the float32 scales/zeros [N, ng]:
    int_weight = clamp(round((W + (z*s)[g_idx].T) / s[g_idx].T), 0, maxq), transposed to [K, N]."""
    scales = np.ascontiguousarray(scales_nk.T)
    zeros = np.ascontiguousarray(zeros_nk.T)
    scale_zeros = (zeros * scales).astype(F32)
    g = g_idx.astype(np.int64)
    iw = np.round(((W + scale_zeros[g].T).astype(F32) / scales[g].T).astype(F32))
    iw = np.clip(iw, 0, (1 << bits) - 1)
    return np.ascontiguousarray(iw.astype(np.int32).T).astype(np.uint32)


def gm_pack_words(int_weight: np.ndarray, zeros: np.ndarray, bits: int = 4):
    """GM pack_original L1533-1539 (qweight) and L1578-1583 (qzeros), numpy uint32 math
    (pack_np_math_dtype), stored as int32 (pack_np_dtype): qweight[r] |= iw[r*pf + j] << (b*j);
    qzeros[:, c] |= z[:, c*pf + j] << (b*j)."""
    pf = 32 // bits
    iw = int_weight.astype(np.uint32)
    z = zeros.astype(np.uint32)
    qweight = np.zeros((-(-iw.shape[0] * bits // 32), iw.shape[1]), dtype=np.uint32)
    for row in range(qweight.shape[0]):
        for j in range(pf):
            qweight[row] |= iw[row * pf + j] << np.uint32(bits * j)
    qzeros = np.zeros((z.shape[0], -(-z.shape[1] * bits // 32)), dtype=np.uint32)
    for col in range(qzeros.shape[1]):
        for j in range(pf):
            qzeros[:, col] |= z[:, col * pf + j] << np.uint32(bits * j)
    return qweight.view(np.int32), qzeros.view(np.int32)


def gm_v2_to_v1(qzeros: np.ndarray) -> np.ndarray:
    """GM utils/model.py convert_gptq_v2_to_v1_format_module L929 (bits 4): qzeros -= 0x11111111,
    word-wise on int32 (wraps)."""
    return (qzeros.view(np.uint32) - np.uint32(0x11111111)).view(np.int32)


def gm_v1_to_v2(qzeros: np.ndarray) -> np.ndarray:
    """GM utils/model.py convert_gptq_v1_to_v2_format_module L818 (bits 4, int32): += 0x11111111."""
    return (qzeros.view(np.uint32) + np.uint32(0x11111111)).view(np.int32)


def gm_unpack(qweight: np.ndarray, qzeros: np.ndarray, n: int, bits: int = 4):
    """GM qlinear/__init__.py PackableQuantLinear.dequantize_weight L963-975 (bits in 2/4/8):
    arithmetic right shift of the int32 word by wf = [0, 4, ..., 28], .to(int8), & maxq.
    Returns u [K, N] and z [ng, N] (int8)."""
    maxq = (1 << bits) - 1
    wf = np.arange(0, 32, bits, dtype=np.int32)
    z = (qzeros[:, :, None] >> wf[None, None, :]).astype(np.int8) & np.int8(maxq)
    z = z.reshape(qzeros.shape[0], n)
    u = (qweight[:, None, :] >> wf[None, :, None]).astype(np.int8) & np.int8(maxq)
    u = u.reshape(qweight.shape[0] * wf.size, qweight.shape[1])
    return u, z


def gm_dequantize(qweight, qzeros_v2, scales_f16, g_idx, bits: int = 4) -> np.ndarray:
    """GM dequantize_weight + _dequantize_from_codes L1001-1006 (num_itr=1):
    scales[g_idx] * (weight - zeros[g_idx]); int8 difference times F16 scale -> F16 (the float32
    product is exact, one rounding to f16). Returned in nn.Linear orientation [N, K]."""
    u, z = gm_unpack(qweight, qzeros_v2, scales_f16.shape[1], bits)
    g = g_idx.astype(np.int64)
    d = (u.astype(np.int16) - z[g].astype(np.int16)).astype(F32)
    w = f16(scales_f16[g].astype(F32) * d)
    # the library expression itself, in torch (F16 * int8 tensor)
    wt = torch.from_numpy(scales_f16)[torch.from_numpy(g)] * (torch.from_numpy(u) - torch.from_numpy(z)[torch.from_numpy(g)])
    must(wt.dtype == torch.float16, "gm_dequantize: torch result is not F16")
    same(w, wt.numpy(), "GPTQ dequantize numpy vs torch")
    return np.ascontiguousarray(w.T)


def ct_crosscheck_gptq(u_kn, zeros_ng_n, qweight, qzeros_v2):
    """Cross-format identities (spec section 1, 'Cross-format identities'), with the installed CT
    pack_to_int32: qweight == pack_to_int32(u.T - 8, 4).T as bits, qzeros_v2 ==
    pack_to_int32(z.T - 8, 4, packed_dim=0).T."""
    if u_kn.shape[0] % 8 == 0:
        ct = pack_to_int32(torch.from_numpy((u_kn.T.astype(np.int16) - 8).astype(np.int8)), 4).numpy()
        same(np.ascontiguousarray(ct.T), qweight, "GPTQ qweight vs CT pack_to_int32(u - 8).T")
    ctz = pack_to_int32(torch.from_numpy((zeros_ng_n.T.astype(np.int16) - 8).astype(np.int8)), 4, packed_dim=0).numpy()
    same(np.ascontiguousarray(ctz.T), qzeros_v2, "GPTQ v2 qzeros vs CT pack_to_int32(z - 8, packed_dim=0).T")


# ---------------------------------------------------------------------------
# AutoAWQ transcriptions (AA = casper-hansen/AutoAWQ @ 88e4c76)


def aa_pseudo_quantize_torch(w: torch.Tensor, group_size: int, w_bit: int = 4):
    """AA awq/quantize/quantizer.py pseudo_quantize_tensor L74-109, zero_point=True, verbatim on a
    torch f16 tensor (AA casts the linear to half first: _apply_quant L230)."""
    org_w_shape = w.shape
    assert org_w_shape[-1] % group_size == 0
    w = w.reshape(-1, group_size)
    max_val = w.amax(dim=1, keepdim=True)
    min_val = w.amin(dim=1, keepdim=True)
    max_int = 2 ** w_bit - 1
    min_int = 0
    scales = (max_val - min_val).clamp(min=1e-5) / max_int
    zeros = (-torch.round(min_val / scales)).clamp_(min_int, max_int)
    w = (torch.clamp(torch.round(w / scales) + zeros, min_int, max_int) - zeros) * scales
    zeros = zeros.view(org_w_shape[0], -1)
    scales = scales.view(org_w_shape[0], -1)
    w = w.reshape(org_w_shape)
    return w, scales, zeros


def aa_pseudo_quantize_np(w16: np.ndarray, group_size: int, w_bit: int = 4):
    """The same in numpy, every f16 op as a float32 op rounded to f16. Also returns the codes
    clamp(round(w/s) + z, 0, 15) (uint8 [N, K])."""
    n, k = w16.shape
    w = w16.astype(F32).reshape(-1, group_size)
    mx, mn = w.max(1, keepdims=True), w.min(1, keepdims=True)
    max_int = (1 << w_bit) - 1
    rngv = f16(mx - mn).astype(F32)
    rngv = np.maximum(rngv, F16(1e-5).astype(F32))  # clamp(min=1e-5) on an f16 tensor
    scales = f16(rngv / F32(max_int)).astype(F32)
    zeros = np.clip(-np.round(f16(mn / scales).astype(F32)), 0, max_int).astype(F32)
    q = np.clip(np.round(f16(w / scales).astype(F32)) + zeros, 0, max_int)
    wq = f16(f16(q - zeros).astype(F32) * scales)
    return (wq.reshape(n, k), f16(scales.reshape(n, -1)), f16(zeros.reshape(n, -1)),
            q.reshape(n, k).astype(np.uint8))


def aa_from_linear_torch(weight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group_size: int, w_bit: int = 4):
    """AA awq/modules/linear/gemm.py WQLinear_GEMM.from_linear L186-249, verbatim (weight = the
    fake-quantized f16 linear weight [N, K]; scales, zeros [ng, N] as _apply_quant L237-239 passes
    them). Returns (qweight [K, N/8], qzeros [ng, N/8], scales f16 [ng, N], intweight [K, N])."""
    in_features = weight.shape[1]
    scale_zeros = zeros * scales
    awq_scales = scales.clone().half()
    pack_num = 32 // w_bit
    intweight = []
    for idx in range(in_features):
        intweight.append(torch.round((weight[:, idx] + scale_zeros[idx // group_size])
                                     / awq_scales[idx // group_size]).to(torch.int)[:, None])
    intweight = torch.cat(intweight, dim=1)
    intweight = intweight.t().contiguous()
    intweight = intweight.to(dtype=torch.int32)
    qweight = torch.zeros((intweight.shape[0], intweight.shape[1] // 32 * w_bit), dtype=torch.int32)
    for col in range(intweight.shape[1] // pack_num):
        order_map = [0, 2, 4, 6, 1, 3, 5, 7]
        for i in range(pack_num):
            qweight_col = intweight[:, col * pack_num + order_map[i]]
            qweight[:, col] |= qweight_col << (i * w_bit)
    zeros = zeros.to(dtype=torch.int32)
    qzeros = torch.zeros((zeros.shape[0], zeros.shape[1] // 32 * w_bit), dtype=torch.int32)
    for col in range(zeros.shape[1] // pack_num):
        order_map = [0, 2, 4, 6, 1, 3, 5, 7]
        for i in range(pack_num):
            qzero_col = zeros[:, col * pack_num + order_map[i]]
            qzeros[:, col] |= qzero_col << (i * w_bit)
    return qweight, qzeros, awq_scales, intweight


def aa_pack_np(u_kn: np.ndarray, z_gn: np.ndarray, bits: int = 4):
    """The GEMM packing loops in numpy uint32: word c of row k holds column 8c + AWQ_ORDER[i] in
    nibble i."""
    pf = 32 // bits

    def pack(a):
        a = a.astype(np.uint32)
        out = np.zeros((a.shape[0], a.shape[1] // pf), dtype=np.uint32)
        for col in range(out.shape[1]):
            for i in range(pf):
                out[:, col] |= a[:, col * pf + AWQ_ORDER[i]] << np.uint32(i * bits)
        return out.view(np.int32)

    return pack(u_kn), pack(z_gn)


def aa_unpack(qweight: np.ndarray, qzeros: np.ndarray, bits: int = 4):
    """AA awq/utils/packing_utils.py unpack_awq L8-26 + reverse_awq_order L29-43 + the masks of
    dequantize_gemm L94-95: u [K, N], z [ng, N] (int8)."""
    shifts = np.arange(0, 32, bits, dtype=np.int32)

    def unpack(q):
        i = (q[:, :, None] >> shifts[None, None, :]).astype(np.int8)
        i = i.reshape(i.shape[0], -1)
        order = np.arange(i.shape[-1], dtype=np.int64).reshape(-1, 32 // bits)[:, AWQ_REVERSE_ORDER].reshape(-1)
        return i[:, order] & np.int8((1 << bits) - 1)

    return unpack(qweight), unpack(qzeros)


def aa_dequantize_gemm(qweight, qzeros, scales_f16, group_size, bits: int = 4) -> np.ndarray:
    """AA packing_utils.py dequantize_gemm L87-102: (iweight - izeros) * scales (int8 times F16 ->
    F16). Returned in nn.Linear orientation [N, K]."""
    u, z = aa_unpack(qweight, qzeros, bits)
    zr = np.repeat(z, group_size, axis=0)
    sr = np.repeat(scales_f16, group_size, axis=0)
    w = f16(sr.astype(F32) * (u.astype(np.int16) - zr.astype(np.int16)).astype(F32))
    wt = (torch.from_numpy(u) - torch.from_numpy(zr)) * torch.from_numpy(sr)
    must(wt.dtype == torch.float16, "aa_dequantize_gemm: torch result is not F16")
    same(w, wt.numpy(), "AWQ dequantize_gemm numpy vs torch")
    return np.ascontiguousarray(w.T)


def ct_crosscheck_awq(qweight, qzeros, scales_f16, u_kn, z_gn):
    """compressed-tensors 0.20's own AutoAWQ GEMM decoder (entrypoints/convert/converters/
    autoawq.py AutoAWQConverter._convert_gemm_module) must read back the same codes."""
    conv = AutoAWQConverter(bits=4, group_size=u_kn.shape[0] // z_gn.shape[0], zero_point=True, version="gemm")
    qw, sc, zp = conv._convert_gemm_module(torch.from_numpy(qweight), torch.from_numpy(scales_f16), torch.from_numpy(qzeros))
    same(qw.numpy().astype(np.int16), u_kn.T.astype(np.int16) - 8, "AWQ codes vs CT AutoAWQConverter")
    same(zp.numpy().astype(np.int16), z_gn.T.astype(np.int16) - 8, "AWQ zeros vs CT AutoAWQConverter")
    same(sc.numpy(), np.ascontiguousarray(scales_f16.T), "AWQ scales vs CT AutoAWQConverter")


# ---------------------------------------------------------------------------
# 1. packing.safetensors


def make_packing(d: Path) -> dict:
    t = {}
    info = {}
    r = rng(1401)

    # compressed-tensors pack_to_int32, int4 and int8, packed_dim 1 and 0
    c4 = r.integers(-8, 8, size=(24, 44)).astype(np.int8)
    c4[0, 0], c4[0, 1], c4[5, 43], c4[23, 40] = -8, 7, 7, -8
    c8 = r.integers(-128, 128, size=(24, 44)).astype(np.int8)
    c8[0, 0], c8[0, 1], c8[7, 43] = -128, 127, -128
    zp = r.integers(-8, 8, size=(24, 3)).astype(np.int8)
    zp[0, 0], zp[1, 0], zp[23, 2] = -8, 7, 7
    p4 = pack_to_int32(torch.from_numpy(c4), 4)
    p8 = pack_to_int32(torch.from_numpy(c8), 8)
    pz = pack_to_int32(torch.from_numpy(zp), 4, packed_dim=0)
    must(tuple(p4.shape) == (24, 6) and tuple(p8.shape) == (24, 11) and tuple(pz.shape) == (3, 3),
         f"pack_to_int32 shapes {tuple(p4.shape)} {tuple(p8.shape)} {tuple(pz.shape)}")
    same(p4.numpy(), ref_ct_pack(c4, 4), "int4.ct_packed vs numpy reference")
    same(p8.numpy(), ref_ct_pack(c8, 8), "int8.ct_packed vs numpy reference")
    same(pz.numpy(), ref_ct_pack(zp, 4, 0), "int4.ct_zero_packed vs numpy reference")
    same(unpack_from_int32(p4, 4, torch.Size([24, 44])).numpy(), c4, "CT unpack_from_int32 int4")
    same(unpack_from_int32(p8, 8, torch.Size([24, 44])).numpy(), c8, "CT unpack_from_int32 int8")
    same(unpack_from_int32(pz, 4, torch.Size([24, 3]), packed_dim=0).numpy(), zp, "CT unpack_from_int32 zero points")
    same(ref_ct_unpack(p4.numpy(), 4, (24, 44)), c4, "numpy unpack int4")
    same(ref_ct_unpack(p8.numpy(), 8, (24, 44)), c8, "numpy unpack int8")
    same(ref_ct_unpack(pz.numpy(), 4, (24, 3), 0), zp, "numpy unpack zero points")
    # spec section 1.2 worked example
    ex = pack_to_int32(torch.tensor([[-8, -3, 0, 1, 7, -1, 2, 5]], dtype=torch.int8), 4)
    must(int(ex.view(torch.int32)[0, 0]) == -629172144, "spec 1.2 worked example 0xDA7F9850")
    t.update({"int4.codes": c4, "int4.ct_packed": p4.numpy(), "int8.codes": c8, "int8.ct_packed": p8.numpy(),
              "int4.zero_points": zp, "int4.ct_zero_packed": pz.numpy()})

    # GPTQ: K=48, N=32, G=16, act-order g_idx
    K, N, G = 48, 32, 16
    ng = K // G
    r = rng(1402)
    codes = r.integers(0, 16, size=(K, N)).astype(np.uint8)
    codes[0, 0], codes[1, 0], codes[47, 31] = 0, 15, 15
    zeros = r.integers(1, 16, size=(ng, N)).astype(np.uint8)
    zeros[0, 0], zeros[0, 1], zeros[2, 31] = 1, 15, 8
    scales = f16(r.uniform(0.002, 0.05, size=(ng, N)).astype(F32))
    perm = r.permutation(K)
    g_idx = np.zeros(K, dtype=np.int32)
    g_idx[perm] = np.arange(K) // G  # g_idx[perm[i]] = i // G
    must(not np.all(np.diff(g_idx) >= 0), "g_idx must be non-monotonic")
    # pack_original's int_weight derivation from the fake-quantized weight (module dtype bf16)
    # must give back the codes; GM scales/zeros reach the packer as float32 [N, ng]
    s32, z32 = scales.astype(F32), zeros.astype(F32)
    W = bf16(gm_fake_quant(codes, s32, z32, g_idx))
    same(gm_pack_int_weight(W, s32.T, z32.T, g_idx, 4), codes.astype(np.uint32), "GPTQ pack_original int_weight")
    qweight, qzeros_v2 = gm_pack_words(codes, zeros)
    qzeros_v1 = gm_v2_to_v1(qzeros_v2)
    same(gm_v1_to_v2(qzeros_v1), qzeros_v2, "GPTQ v1 -> v2")
    u, z = gm_unpack(qweight, qzeros_v2, N)
    same(u.astype(np.uint8), codes, "GPTQ unpack(pack(codes))")
    same(z.astype(np.uint8), zeros, "GPTQ unpack(pack(zeros))")
    # v1 nibble = z - 1 per nibble (no borrow: every z in [1, 15])
    _, z1 = gm_unpack(qweight, qzeros_v1, N)
    same(z1.astype(np.int16), zeros.astype(np.int16) - 1, "GPTQ v1 nibbles = z - 1")
    ct_crosscheck_gptq(codes, zeros, qweight, qzeros_v2)
    deq = gm_dequantize(qweight, qzeros_v2, scales, g_idx)
    same(deq, f16((s32[g_idx.astype(np.int64)] * (codes.astype(F32) - z32[g_idx.astype(np.int64)])).T),
         "GPTQ dequantized = f16(s * (u - z))")
    ex = gm_pack_words(np.arange(1, 9, dtype=np.uint32)[:, None], np.full((1, 8), 8, np.uint32))
    must(int(ex[0][0, 0]) == -2023406815 and int(ex[1][0, 0]) == -2004318072
         and int(gm_v2_to_v1(ex[1])[0, 0]) == 2004318071, "spec 2.2 worked example")
    t.update({"gptq.codes": codes, "gptq.zeros": zeros, "gptq.scales": scales, "gptq.g_idx": g_idx,
              "gptq.qweight": qweight, "gptq.qzeros_v2": qzeros_v2, "gptq.qzeros_v1": qzeros_v1,
              "gptq.dequantized": deq})
    info["gptq_perm"] = perm.tolist()

    # AWQ GEMM: K=48, N=32, G=16
    r = rng(1403)
    acodes = r.integers(0, 16, size=(K, N)).astype(np.uint8)
    acodes[0, 0], acodes[0, 1], acodes[47, 31] = 0, 15, 15
    azeros = r.integers(0, 16, size=(ng, N)).astype(np.uint8)
    azeros[0, 0], azeros[0, 1], azeros[2, 31] = 0, 15, 0
    ascales = f16(r.uniform(0.002, 0.05, size=(ng, N)).astype(F32))
    gi = np.arange(K) // G
    # the fake-quantized f16 weight pseudo_quantize_tensor returns, [N, K]
    wq = f16((acodes.astype(F32) - azeros[gi].astype(F32)) * ascales[gi].astype(F32)).T
    tq, tz, ts, iw = aa_from_linear_torch(torch.from_numpy(np.ascontiguousarray(wq)), torch.from_numpy(ascales),
                                          torch.from_numpy(azeros.astype(F16)), G)
    same(iw.numpy(), acodes.astype(np.int32), "AWQ from_linear intweight = codes")
    aq, az = aa_pack_np(acodes, azeros)
    same(aq, tq.numpy(), "AWQ qweight numpy vs from_linear (torch)")
    same(az, tz.numpy(), "AWQ qzeros numpy vs from_linear (torch)")
    same(ts.numpy(), ascales, "AWQ scales")
    uu, zz = aa_unpack(aq, az)
    same(uu.astype(np.uint8), acodes, "AWQ unpack(pack(codes))")
    same(zz.astype(np.uint8), azeros, "AWQ unpack(pack(zeros))")
    ct_crosscheck_awq(aq, az, ascales, acodes, azeros)
    adeq = aa_dequantize_gemm(aq, az, ascales, G)
    ex = aa_pack_np(np.arange(1, 9, dtype=np.uint32)[None, :], np.zeros((1, 8), np.uint32))[0]
    must(int(ex[0, 0]) == -2042464975, "spec 3.2 worked example 0x86427531")
    t.update({"awq.codes": acodes, "awq.zeros": azeros, "awq.scales": ascales, "awq.qweight": aq, "awq.qzeros": az,
              "awq.dequantized": adeq})

    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in t.items()}
    safetensors.torch.save_file(tensors, str(d / "packing.safetensors"), metadata={"format": "pt"})
    info["tensors"] = {k: [str(v.dtype).replace("torch.", ""), list(v.shape)] for k, v in sorted(tensors.items())}
    return info


# ---------------------------------------------------------------------------
# model folders


def linear_names(sd: dict) -> list:
    return sorted(k[: -len(".weight")] for k in sd
                  if k.endswith(".weight") and k.split(".")[-2] in LINEAR)


def copy_side_files(src: Path, dst: Path, generation_config: bool = True):
    names = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    if generation_config:
        names.append("generation_config.json")
    for f in names:
        shutil.copyfile(src / f, dst / f)


def write_config(src: Path, dst: Path, qcfg: dict):
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"] = qcfg
    # what transformers' save_pretrained writes: indent 2, sorted keys, trailing newline
    fc.write_text(dst / "config.json", json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def save_tensors(path: Path, tensors: dict):
    tensors = {k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v.contiguous())
               for k, v in tensors.items()}
    safetensors.torch.save_file(tensors, str(path), metadata={"format": "pt"})


def eval_ids(out: Path) -> list:
    ids = np.fromfile(out / "eval" / "eval_tokens_u32le.bin", dtype="<u4")[:N_TOKENS].astype(np.int64).tolist()
    manifest = json.loads((out / "eval" / "manifest.json").read_text())
    must(manifest["logits"]["token_ids"][:N_TOKENS] == ids, "eval token ids disagree with fixtures/eval/manifest.json")
    return ids


@torch.no_grad()
def logits_of(model, ids: list) -> torch.Tensor:
    return model(input_ids=torch.tensor([ids])).logits[0].float()


def ct_args(spec: dict) -> QuantizationArgs:
    kw = dict(num_bits=spec["num_bits"], type="int", symmetric=spec["symmetric"], strategy=spec["strategy"],
              dynamic=False)
    if spec["group_size"] is not None:
        kw["group_size"] = spec["group_size"]
    return QuantizationArgs(**kw)


def make_ct_folder(out: Path, src: Path, name: str, spec: dict) -> dict:
    """Quantize tiny-llama with compressed-tensors 0.20 itself and save it the way llm-compressor
    does (ModelCompressor.from_pretrained_model, compress_model, save_pretrained, update_config)."""
    d = fc.fresh_dir(out / "models" / name)
    with quiet():
        model = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
    qconfig = QuantizationConfig(config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=ct_args(spec))},
                                 ignore=["lm_head"])
    apply_quantization_config(model, qconfig, show_progress=False)
    base = safetensors.torch.load_file(str(src / "model.safetensors"))
    ref = {}
    for mname, mod in model.named_modules():
        if getattr(mod, "quantization_scheme", None) is None:
            continue
        a = mod.quantization_scheme.weights
        w = mod.weight.data
        must(w.dtype == torch.bfloat16, f"{mname}: weight is not bf16")
        # the min-max observer: amin/amax of each group (llm-compressor observers/min_max.py)
        if a.strategy == "group":
            obs = w.unflatten(-1, (-1, a.group_size))
            mn, mx = obs.amin(dim=-1), obs.amax(dim=-1)
        else:
            mn, mx = w.amin(dim=-1, keepdim=True), w.amax(dim=-1, keepdim=True)
        s, z = calculate_qparams(mn, mx, a)
        must(s.dtype == torch.bfloat16 and z.dtype == torch.int8 and s.shape == mod.weight_scale.shape
             and mod.weight_scale.dtype == torch.bfloat16, f"{mname}: qparams {s.dtype} {z.dtype} {tuple(s.shape)}")
        mod.weight_scale.data.copy_(s)
        mod.weight_zero_point.data.copy_(z)
        mod.quantization_status = QuantizationStatus.FROZEN
        wn = np_of(w)
        rs, rz = ref_ct_qparams(wn, spec)
        same(rs, np_of(s), f"{name} {mname}: weight_scale vs numpy reference")
        same(rz, z.numpy(), f"{name} {mname}: zero point vs numpy reference")
        ref[mname] = (wn, rs, rz)
    must(sorted(ref) == linear_names(base), f"{name}: quantized modules {sorted(ref)}")
    comp = ModelCompressor.from_pretrained_model(model)
    must(comp.quantization_config.format == "pack-quantized", f"{name}: inferred format {comp.quantization_config.format}")
    with quiet():
        comp.compress_model(model)
        model.save_pretrained(d)
    comp.update_config(str(d))
    must(sorted(os.listdir(d)) == ["config.json", "generation_config.json", "model.safetensors"],
         f"{name}: save_pretrained wrote {sorted(os.listdir(d))}")
    must((d / "generation_config.json").read_bytes() == (src / "generation_config.json").read_bytes(),
         f"{name}: generation_config.json differs from the base")
    copy_side_files(src, d, generation_config=False)

    # every byte CT wrote against the numpy reference
    saved = safetensors.torch.load_file(str(d / "model.safetensors"))
    b = spec["num_bits"]
    stats = {"codes": 0, "codes_differing_if_x_over_s_were_float32": 0, "x_over_s_ties_after_bf16": 0}
    expected_keys = set()
    for mname, (wn, rs, rz) in ref.items():
        q = ref_ct_quantize(wn, rs, rz, spec)
        qf = ref_ct_quantize(wn, rs, rz, spec, bf16_division=False)
        g = ct_group(spec, wn.shape[1])
        t = bf16(bf16(wn / np.repeat(rs, g, 1)) + np.repeat(rz, g, 1).astype(F32))
        stats["codes"] += q.size
        stats["codes_differing_if_x_over_s_were_float32"] += int((q != qf).sum())
        stats["x_over_s_ties_after_bf16"] += int((np.abs(t - np.trunc(t)) == 0.5).sum())
        same(saved[mname + ".weight_packed"].numpy(), ref_ct_pack(q, b), f"{name} {mname}.weight_packed")
        same(np_of(saved[mname + ".weight_scale"]), rs, f"{name} {mname}.weight_scale")
        must(saved[mname + ".weight_scale"].dtype == torch.bfloat16, f"{name}: weight_scale dtype")
        same(saved[mname + ".weight_shape"].numpy(), np.array(wn.shape, dtype=np.int64), f"{name} {mname}.weight_shape")
        expected_keys |= {mname + ".weight_packed", mname + ".weight_scale", mname + ".weight_shape"}
        if not spec["symmetric"]:
            same(saved[mname + ".weight_zero_point"].numpy(), ref_ct_pack(rz, b, 0), f"{name} {mname}.weight_zero_point")
            expected_keys.add(mname + ".weight_zero_point")
        # and the library's own quantize() (not via the compressor) agrees too
        args = ct_args(spec)
        cq = ct_quantize(torch_bf16(wn), torch_bf16(rs), torch.from_numpy(rz), args, dtype=torch.int8)
        same(cq.numpy(), q, f"{name} {mname}: CT quantize()")
    for k, v in base.items():
        if k[: -len(".weight")] not in ref:
            same(np_of(saved[k]), np_of(v), f"{name}: {k} changed")
            must(saved[k].dtype == v.dtype, f"{name}: {k} dtype changed")
            expected_keys.add(k)
    must(set(saved) == expected_keys, f"{name}: unexpected tensor set {sorted(set(saved) ^ expected_keys)}")
    cfg = json.loads((d / "config.json").read_text())
    return {"ref": ref, "stats": stats, "quantization_config": cfg["quantization_config"]}


def ct_load_and_expected(out: Path, src: Path, name: str, spec: dict, made: dict, ids: list) -> dict:
    d = out / "models" / name
    finding = {"folder": f"fixtures/models/{name}",
               "load": "AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, attn_implementation='eager', "
                       "quantization_config=CompressedTensorsConfig(run_compressed=False))"}
    try:
        with quiet():
            lm = transformers.AutoModelForCausalLM.from_pretrained(
                d, dtype=torch.bfloat16, attn_implementation="eager",
                quantization_config=transformers.CompressedTensorsConfig(run_compressed=False))
    except Exception as e:  # noqa: BLE001 - the error itself is the finding
        finding.update(loads=False, error=f"{type(e).__name__}: {e}")
        return finding
    finding["loads"] = True
    lm.eval()
    tensors = {}
    base = safetensors.torch.load_file(str(src / "model.safetensors"))
    g_of = {}
    for mname, (wn, rs, rz) in made["ref"].items():
        w = lm.get_submodule(mname).weight.data
        must(w.dtype == torch.bfloat16, f"{name} {mname}: loaded weight dtype {w.dtype}")
        g = ct_group(spec, wn.shape[1])
        g_of[mname] = g
        q = ref_ct_quantize(wn, rs, rz, spec)
        same(np_of(w), ref_ct_dequantize(q, rs, rz, g), f"{name} {mname}: loaded weight vs bf16((q - zp) * s)")
        tensors[mname + ".weight"] = w.clone()
    lsd = lm.state_dict()
    for k, v in base.items():
        if k[: -len(".weight")] not in made["ref"]:
            must(torch.equal(lsd[k], v), f"{name}: loaded {k} differs from the base")
    finding["loaded_weight_dtype"] = "bfloat16"
    finding["loaded_weights_equal_reference"] = "bf16((q - zp) * s) for every quantized linear (checked)"
    lm = lm.float()
    logits = logits_of(lm, ids)
    # the same logits from a plain float32 LlamaForCausalLM given the dequantized weights
    with quiet():
        plain = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, attn_implementation="eager")
    plain.load_state_dict({**{k: v.float() for k, v in base.items()},
                           **{k: v.float() for k, v in tensors.items()}}, strict=False)
    plain.eval()
    pl = logits_of(plain, ids)
    finding["logits_equal_plain_float32_model_with_these_weights"] = bool(torch.equal(pl, logits))
    must(torch.equal(pl, logits), f"{name}: logits of the loaded model differ from the plain model's")
    tensors["logits"] = logits
    tensors["token_ids"] = torch.tensor(ids, dtype=torch.int32)
    save_tensors(out / "w4a16" / f"{name}.expected.safetensors", tensors)

    # finding: what a float32 load does to the dequantization
    with quiet():
        l32 = transformers.AutoModelForCausalLM.from_pretrained(
            d, dtype=torch.float32, attn_implementation="eager",
            quantization_config=transformers.CompressedTensorsConfig(run_compressed=False))
    differ = total = 0
    exact = True
    for mname, (wn, rs, rz) in made["ref"].items():
        w32 = l32.get_submodule(mname).weight.data
        g = g_of[mname]
        q = ref_ct_quantize(wn, rs, rz, spec)
        ex = (q.astype(F32) - np.repeat(rz, g, 1).astype(F32)) * np.repeat(rs, g, 1)
        exact &= bool(w32.dtype == torch.float32 and np.array_equal(w32.numpy(), ex))
        differ += int((w32.numpy() != np_of(tensors[mname + ".weight"])).sum())
        total += ex.size
    l32.eval()
    finding["dtype_float32_load"] = {
        "loaded_weight_dtype": "float32",
        "weights_equal_the_bf16_load_widened": differ == 0,
        "weights_equal_exact_float32_product_without_bf16_rounding": exact,
        "elements_differing_from_the_bf16_load": differ, "of": total,
        "logits_max_abs_diff_vs_expected": float((logits_of(l32, ids) - logits).abs().max()),
    }
    finding["expected_file"] = f"fixtures/w4a16/{name}.expected.safetensors"
    return finding


def gptq_quantization_config(spec: dict) -> dict:
    """GM quantization/config.py to_dict L3051-3116 + GPTQConfig._update_output_payload L3300-3302
    key order; meta as models/writer.py L580-650 fills it (quantizer names this generator, not
    GPTQModel, since the folder is synthetic; GM's runtime-only meta keys are left out)."""
    fmt = spec["checkpoint_format"]
    return {
        "bits": 4,
        "group_size": spec["group_size"],
        "desc_act": spec["desc_act"],
        "lm_head": False,
        "method": "gptq",
        "quant_method": "gptq",
        "format": fmt,
        "checkpoint_format": fmt,
        "pack_dtype": "int32",
        "meta": {
            "quantizer": ["ckpt-fixtures:make_w4a16_goldens"],
            "uri": "https://github.com/modelcloud/gptqmodel",
            "damp_percent": 0.05,
            "damp_auto_increment": 0.01,
            "static_groups": False,
            "true_sequential": True,
            "mse": 0.0,
            "gptaq": None,
            "foem": None,
            "act_group_aware": False,
        },
        "sym": spec["sym"],
    }


def act_order_diags(layers: int) -> dict:
    """Fixed random positive 'diag(H)' vectors, one per distinct linear input: q/k/v share the
    attention input, gate/up the MLP input (as they share one H in GPTQ)."""
    r = rng(1404)
    out = {}
    for i in range(layers):
        for key, k in (("attn_in", 64), ("o_in", 64), ("mlp_in", 64), ("down_in", 192)):
            out[(i, key)] = r.uniform(0.05, 4.0, size=k).astype(F32)
    return out


def input_key(mname: str):
    parts = mname.split(".")
    layer, proj = int(parts[2]), parts[-1]
    return layer, {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "o_proj": "o_in",
                   "gate_proj": "mlp_in", "up_proj": "mlp_in", "down_proj": "down_in"}[proj]


def make_gptq_folder(out: Path, src: Path, name: str, spec: dict) -> dict:
    d = fc.fresh_dir(out / "models" / name)
    base = safetensors.torch.load_file(str(src / "model.safetensors"))
    names = linear_names(base)
    diags = act_order_diags(4)
    G = spec["group_size"]
    tensors, expected = {}, {}
    z_values = set()
    for k, v in base.items():
        if k[: -len(".weight")] not in names:
            tensors[k] = v
    for mname in names:
        w = np_of(base[mname + ".weight"])
        n, k = w.shape
        if spec["desc_act"]:
            diag = diags[input_key(mname)]
            perm = np.argsort(-diag, kind="stable")  # decreasing diag(H), ties by index (GM gptq.py L1037)
            g_idx = np.zeros(k, dtype=np.int32)
            g_idx[perm] = np.arange(k) // G  # GM gptq.py L1289-1301: g_idx = (i // G)[invperm]
        else:
            g_idx = (np.arange(k) // G).astype(np.int32)
        u, scales32, zeros32 = gm_rtn(w, 4, G, spec["sym"], g_idx)
        z_values |= set(np.unique(zeros32).astype(int).tolist())
        # GM writes Q.to(module dtype) (gptq.py L1320-1323) and pack_original re-derives the codes
        W = bf16(gm_fake_quant(u, scales32, zeros32, g_idx))
        same(gm_pack_int_weight(W, scales32.T, zeros32.T, g_idx, 4), u.astype(np.uint32), f"{name} {mname}: pack_original int_weight")
        zeros = zeros32.astype(np.uint8)
        qweight, qzeros_v2 = gm_pack_words(u, zeros)
        ct_crosscheck_gptq(u, zeros, qweight, qzeros_v2)
        scales = f16(scales32)  # pack_original L1520: scales.to(float16)
        if spec["checkpoint_format"] == "gptq":
            must(zeros.min() >= 1, f"{name}: a zero point 0 cannot be written as v1")
            qzeros = gm_v2_to_v1(qzeros_v2)
            must(not spec["sym"] or (qzeros.view(np.uint32) == 0x77777777).all(), f"{name}: v1 symmetric words")
            loaded_qzeros = gm_v1_to_v2(qzeros)  # what GM's loader hands the v2 kernels
        else:
            qzeros = qzeros_v2
            loaded_qzeros = qzeros
        same(gm_unpack(qweight, loaded_qzeros, n)[0].astype(np.uint8), u, f"{name} {mname}: unpack")
        tensors[mname + ".qweight"] = qweight
        tensors[mname + ".qzeros"] = qzeros
        tensors[mname + ".scales"] = scales
        tensors[mname + ".g_idx"] = g_idx
        expected[mname + ".weight"] = gm_dequantize(qweight, loaded_qzeros, scales, g_idx)
    save_tensors(d / "model.safetensors", tensors)
    qc = gptq_quantization_config(spec)
    write_config(src, d, qc)
    fc.write_text(d / "quantize_config.json", json.dumps(qc, indent=2))  # GM config.py save_pretrained L2816-2821
    copy_side_files(src, d)
    save_tensors(out / "w4a16" / f"{name}.expected.safetensors", expected)
    return {"zero_points_used": sorted(z_values), "linears": len(names)}


def make_awq_folder(out: Path, src: Path) -> dict:
    name = AWQ_FOLDER
    d = fc.fresh_dir(out / "models" / name)
    base = safetensors.torch.load_file(str(src / "model.safetensors"))
    names = linear_names(base)
    G = AWQ_GROUP
    tensors, expected = {}, {}
    stats = {"zeros_min": 99, "zeros_max": -1}
    for k, v in base.items():
        if k[: -len(".weight")] not in names:
            tensors[k] = v
    for mname in names:
        w16 = base[mname + ".weight"].half()  # AA _apply_quant L230: linear_layer.half()
        wq_t, s_t, z_t = aa_pseudo_quantize_torch(w16, G)
        wq_n, s_n, z_n, codes = aa_pseudo_quantize_np(w16.numpy(), G)
        same(wq_t.numpy(), wq_n, f"{name} {mname}: pseudo_quantize w")
        same(s_t.numpy(), s_n, f"{name} {mname}: pseudo_quantize scales")
        same(z_t.numpy(), z_n, f"{name} {mname}: pseudo_quantize zeros")
        scales = s_t.t().contiguous()  # _apply_quant L237-239 (version gemm)
        zeros = z_t.t().contiguous()
        qweight, qzeros, awq_scales, intweight = aa_from_linear_torch(wq_t, scales, zeros, G)
        same(intweight.numpy(), codes.T.astype(np.int32), f"{name} {mname}: from_linear intweight = codes")
        nq, nz = aa_pack_np(codes.T, zeros.numpy().astype(np.uint8))
        same(nq, qweight.numpy(), f"{name} {mname}: qweight numpy vs from_linear")
        same(nz, qzeros.numpy(), f"{name} {mname}: qzeros numpy vs from_linear")
        u, z = aa_unpack(nq, nz)
        same(u.astype(np.uint8), np.ascontiguousarray(codes.T), f"{name} {mname}: unpack codes")
        ct_crosscheck_awq(nq, nz, awq_scales.numpy(), np.ascontiguousarray(codes.T), zeros.numpy().astype(np.uint8))
        stats["zeros_min"] = min(stats["zeros_min"], int(zeros.min()))
        stats["zeros_max"] = max(stats["zeros_max"], int(zeros.max()))
        tensors[mname + ".qweight"] = nq
        tensors[mname + ".qzeros"] = nz
        tensors[mname + ".scales"] = awq_scales.numpy()
        deq = aa_dequantize_gemm(nq, nz, awq_scales.numpy(), G)
        same(deq, wq_n, f"{name} {mname}: dequantize_gemm = pseudo-quantized weight")
        expected[mname + ".weight"] = deq
    save_tensors(d / "model.safetensors", tensors)
    qc = {"quant_method": "awq", "zero_point": True, "group_size": G, "bits": 4, "version": "gemm",
          "modules_to_not_convert": None}  # AA awq/models/_config.py to_transformers_dict L84-92
    write_config(src, d, qc)
    copy_side_files(src, d)
    save_tensors(out / "w4a16" / f"{name}.expected.safetensors", expected)
    return stats


def awq_ct_roundtrip(out: Path) -> dict:
    """End-to-end check of the AWQ folder with other people's code: compressed-tensors' own
    convert_checkpoint + AutoAWQConverter turn it into a pack-quantized (asymmetric) checkpoint in a
    temporary folder, transformers loads that with CompressedTensorsConfig(run_compressed=False), and
    the float16 load must give exactly the expected F16 weights (the bf16 load: those cast to bf16)."""
    import tempfile
    from compressed_tensors.entrypoints.convert.convert_checkpoint import convert_checkpoint
    folder = out / "models" / AWQ_FOLDER
    expected = safetensors.torch.load_file(str(out / "w4a16" / f"{AWQ_FOLDER}.expected.safetensors"))
    res = {"how": "compressed_tensors.entrypoints.convert.convert_checkpoint(folder, tmp, "
                  "AutoAWQConverter.from_pretrained(folder)), then from_pretrained(tmp, dtype=..., "
                  "quantization_config=CompressedTensorsConfig(run_compressed=False))"}
    with tempfile.TemporaryDirectory() as tmp, quiet():
        convert_checkpoint(str(folder), tmp, AutoAWQConverter.from_pretrained(str(folder)), max_workers=1, device="cpu")
        for dt in (torch.float16, torch.bfloat16):
            m = transformers.AutoModelForCausalLM.from_pretrained(
                tmp, dtype=dt, quantization_config=transformers.CompressedTensorsConfig(run_compressed=False))
            sd = m.state_dict()
            differ = sum(int(not torch.equal(sd[k], v.to(dt))) for k, v in expected.items())
            res[str(dt).replace("torch.", "") + "_load_tensors_differing_from_expected"] = differ
    must(res["float16_load_tensors_differing_from_expected"] == 0 and res["bfloat16_load_tensors_differing_from_expected"] == 0,
         f"AWQ folder via CT convert_checkpoint: {res}")
    return res


# ---------------------------------------------------------------------------
# compressed-tensors arithmetic probes


def ct_probes() -> dict:
    """calculate_qparams / quantize / dequantize of CT 0.20 on small bf16 tensors with an all-zero
    group and a group without negative values."""
    out = {}
    w = torch.tensor([[0.0] * 8 + [0.5, -0.25, 0.125, 0.75, -1.0, 0.0625, 0.3, -0.6],
                      [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8] + [0.0] * 8], dtype=torch.bfloat16)
    for sym in (True, False):
        args = QuantizationArgs(num_bits=4, type="int", symmetric=sym, strategy="group", group_size=8)
        g = w.unflatten(-1, (-1, 8))
        s, z = calculate_qparams(g.amin(-1), g.amax(-1), args)
        q = ct_quantize(w, s, z, args, dtype=torch.int8)
        dq = ct_dequantize(q, s, z, args)
        # the all-zero group (row 0, group 0) and what the README says about it
        must(float(s[0, 0]) == 2.0 ** -7 and int(z[0, 0]) == 0 and not q[0, :8].any() and not dq[0, :8].any(),
             f"all-zero group probe (symmetric={sym}): scale {float(s[0, 0])}, zp {int(z[0, 0])}")
        out["symmetric" if sym else "asymmetric"] = {
            "weight": np_of(w).tolist(), "group_size": 8,
            "scale_bf16": np_of(s).tolist(), "zero_point_int8": z.numpy().tolist(),
            "codes_int8": q.numpy().tolist(), "dequantized_bf16": np_of(dq).tolist(),
        }
    with torch.no_grad():
        zero = torch.zeros(1, dtype=torch.bfloat16)
        nan_zp = (torch.tensor(-8.0) - (zero / zero)).clamp(-8, 7)
    out["asymmetric_all_zero_group_zero_point"] = (
        "scale is 0 when the zero point is computed: zp = -8 - 0/0 = NaN, clamp and round keep NaN, "
        f"NaN.to(int8) = {int(torch.round(nan_zp).to(torch.int8)[0])} here (implementation-defined); "
        "only then is the scale replaced by finfo(bfloat16).eps = 2^-7")
    out["eps_for_zero_scale"] = float(torch.finfo(torch.bfloat16).eps)
    return out


# ---------------------------------------------------------------------------
# README


def make_readme(out: Path, packing: dict, ct_made: dict, findings: dict, gptq_info: dict, awq_info: dict):
    C = compressed_tensors
    w4 = out / "w4a16"
    pk = "\n".join(f"| `{k}` | {v[0]} | {v[1]} |" for k, v in packing["tensors"].items())
    cfg_json = {n: json.dumps(m["quantization_config"], indent=2, sort_keys=True) for n, m in ct_made.items()}
    st = {n: m["stats"] for n, m in ct_made.items()}
    ctl = findings["compressed_tensors_folders"]
    gq = {n: gptq_quantization_config(s) for n, s in GPTQ_FOLDERS.items()}
    f32load = {n: ctl[n].get("dtype_float32_load", {}) for n in CT_FOLDERS}
    probes = findings["ct_arithmetic_probes"]
    if all(f.get("weights_equal_the_bf16_load_widened") for f in f32load.values()):
        f32_text = ("Loading with `dtype=torch.float32` instead gives the same values widened to float32 (0 elements "
                    "differ in every folder; logits max abs diff "
                    + ", ".join(f"{f32load[n]['logits_max_abs_diff_vs_expected']:.3g}" for n in CT_FOLDERS)
                    + "): the stored BF16 `weight_scale` keeps its dtype through decompression, so the product is "
                    "still rounded to bf16 and only then cast to float32.")
    else:
        f32_text = ("Loading with `dtype=torch.float32` gives different weights (elements differing from the bf16 "
                    "load: " + ", ".join(f"{n}: {f32load[n].get('elements_differing_from_the_bf16_load')}/"
                                         f"{f32load[n].get('of')}" for n in CT_FOLDERS) + ").")
    text = f"""# W4A16 format goldens (issue 14)

Made by `tools/make_w4a16_goldens.py` with torch {torch.__version__.split('+')[0]}, transformers
{transformers.__version__}, compressed-tensors {C.__version__}, safetensors {safetensors.__version__},
numpy {np.__version__}, on CPU, one thread, `ATEN_CPU_CAPABILITY=avx2`. A second run rewrites every
file byte for byte. The formats are specified in `docs/w4a16-formats-spec.md`; the transcribed
libraries are pinned as there:

* GM = {GM}
* AA = {AA}
* CT = compressed-tensors {C.__version__} as installed in `.venv` (line numbers below are of the installed files)

Every golden is computed twice (library function or a literal torch copy of the library lines, and a
numpy reference) and the generator stops on the first byte that differs. Unpackers are checked to invert
the packers, and the GPTQ/AWQ layouts are cross-checked against the installed compressed-tensors:
GPTQ `qweight` equals `pack_to_int32(u - 8, 4)` transposed, GPTQ v2 `qzeros` equals
`pack_to_int32(z - 8, 4, packed_dim=0)` transposed, and compressed-tensors' own AutoAWQ GEMM decoder
(`AutoAWQConverter._convert_gemm_module`, {cite(C, 'entrypoints/convert/converters/autoawq.py', 'def _convert_gemm_module')})
reads back exactly the AWQ codes, zeros and scales.

## `packing.safetensors`

| tensor | dtype | shape |
|---|---|---|
{pk}

* `int4.*`, `int8.*`: `int4.codes`/`int8.codes` are random signed codes (seeded; -8/7 and -128/127 occur),
  `*.ct_packed` = `pack_to_int32(codes, bits)` (packed_dim 1) by the installed library
  ({cite(C, 'compressors/pack_quantized/helpers.py', 'def pack_to_int32')}). K = 44 is not a multiple of 8:
  the last int4 word holds 4 codes and 4 zero padding nibbles (6 words = ceil(44*4/32)); int8: 11 words.
  `int4.ct_zero_packed` = `pack_to_int32(zero_points, 4, packed_dim=0)`: 24 rows packed along dim 0 -> [3, 3].
  `unpack_from_int32` ({cite(C, 'compressors/pack_quantized/helpers.py', 'def unpack_from_int32')}) returns the codes.
* `gptq.*` (K = 48, N = 32, group 16, ng = 3): `codes` U8 [K, N] (the GPTQ orientation), `zeros` U8 [ng, N]
  in [1, 15], `scales` F16, `g_idx` I32 [K] = act-order groups of a random permutation `perm`
  (`g_idx[perm[i]] = i // 16`; perm = {packing['gptq_perm']}).
  `qweight` I32 [K/8, N]: GM `nn_modules/qlinear/__init__.py` `pack_original` L1533-1539
  (`qweight[r] |= u[8r + j] << 4j`, numpy uint32, stored int32). `qzeros_v2` I32 [ng, N/8]: L1578-1583
  (`qzeros[:, c] |= z[:, 8c + j] << 4j`). `qzeros_v1` = `qzeros_v2 - 0x11111111` word-wise (GM
  `utils/model.py` `convert_gptq_v2_to_v1_format_module` L929; every z >= 1, so no borrow and each v1
  nibble is z - 1). Also checked: pack_original's own code derivation (L1529-1531:
  `clamp(round((W + z*s)/s), 0, 15)` from the fake-quantized weight cast to bf16) returns `codes`.
  `dequantized` F16 [N, K] = GM `dequantize_weight` L963-975 (shift, `.to(int8)`, `& 15`) and
  `_dequantize_from_codes` L1001-1006: `scales[g_idx] * (u - z[g_idx])`, an int8 difference times an F16
  scale, so F16 (the float32 product is exact; one rounding to f16), transposed to nn.Linear orientation.
* `awq.*` (K = 48, N = 32, group 16): `codes` U8 [K, N], `zeros` U8 [ng, N] in [0, 15], `scales` F16,
  `qweight` I32 [K, N/8], `qzeros` I32 [ng, N/8] by AA `awq/modules/linear/gemm.py`
  `WQLinear_GEMM.from_linear` L186-249 (nibble i of word c = column `8c + [0,2,4,6,1,3,5,7][i]`; the
  codes are re-derived there as `round((W + z*s) / s)` in f16 from the fake-quantized weight and checked).
  `dequantized` F16 [N, K] = AA `awq/utils/packing_utils.py` `dequantize_gemm` L87-102 (`unpack_awq`
  L8-26, `reverse_awq_order` L29-43 with `[0,4,1,5,2,6,3,7]`, `& 15`, `(u - z) * scales` in F16), transposed.

## compressed-tensors `pack-quantized` folders (made by compressed-tensors {C.__version__} itself)

| folder | scheme | tensors per quantized linear `P` |
|---|---|---|
| `models/tiny-llama-ct-w4a16/` | int4, symmetric, group 32 | `P.weight_packed` I32 [N, K/8], `P.weight_scale` BF16 [N, K/32], `P.weight_shape` I64 [2] |
| `models/tiny-llama-ct-w4a16-asym/` | int4, asymmetric, group 64 | + `P.weight_zero_point` I32 [N/8, K/64] (one group for K = 64, three for down_proj's K = 192) |
| `models/tiny-llama-ct-w8a16-channel/` | int8, symmetric, channel | `P.weight_packed` I32 [N, K/4], `P.weight_scale` BF16 [N, 1], `P.weight_shape` I64 [2] |

All 28 Linear layers except `lm_head` are quantized; `model.embed_tokens`, the norms and `lm_head` are
unchanged bf16. How they were made (no llm-compressor, no calibration data):
1. `AutoModelForCausalLM.from_pretrained(tiny-llama, dtype=bfloat16)`;
   `apply_quantization_config(model, QuantizationConfig(config_groups={{"group_0": QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(...))}}, ignore=["lm_head"]))`
   ({cite(C, 'quantization/lifecycle/apply.py', 'def apply_quantization_config')}): registers `weight_scale` (bf16, the
   weight dtype: {cite(C, 'quantization/lifecycle/initialize.py', 'scale_dtype = observed_dtype')}) and an int8 `weight_zero_point`.
2. The min-max observer: CT 0.20 ships no observers (they are llm-compressor's); its `minmax` observer
   takes `amin`/`amax` over each group of the weight (llm-compressor `observers/min_max.py`,
   `helpers.py _flatten_weight`), which is what the generator does, then calls CT's
   `calculate_qparams` ({cite(C, 'quantization/utils/helpers.py', 'def calculate_qparams')}) and copies the result into
   `weight_scale`/`weight_zero_point`; status FROZEN.
3. `ModelCompressor.from_pretrained_model(model)` (format inferred: `pack-quantized`),
   `compress_model(model)` ({cite(C, 'compressors/model_compressors/model_compressor.py', 'def compress_model')}, per module
   `PackedQuantizationCompressor.compress`, {cite(C, 'compressors/pack_quantized/base.py', 'def compress(')}),
   `model.save_pretrained(folder)`, `update_config(folder)` ({cite(C, 'compressors/model_compressors/model_compressor.py', 'def update_config')}:
   rewrites config.json with `indent=2, sort_keys=True`, no trailing newline). Tokenizer files are copied from the base.

### Exact arithmetic (all recomputed in numpy and compared byte for byte)

Torch's CPU bf16 element-wise ops compute a float32 result from the widened operands and round it once
to bf16 (nearest even). Every step below is such an op unless it says otherwise.

* Observer: `mn = min(group)`, `mx = max(group)` (exact), then in `calculate_qparams`
  ({cite(C, 'quantization/utils/helpers.py', 'min_vals = torch.min(min_vals')}):
  `mn = min(mn, 0)`, `mx = max(mx, 0)`.
* Symmetric: `s = bf16(max(|mn|, mx) / 7.5)` (int8 channel: `/ 127.5`; `bit_range.to(bf16) / 2`, exact)
  ({cite(C, 'quantization/utils/helpers.py', 'scales = max_val_pos / (bit_range')}). Zero point 0 (not written).
* Asymmetric: `s = bf16(bf16(mx - mn) / 15)` ({cite(C, 'quantization/utils/helpers.py', 'scales = (max_vals - min_vals)')});
  `zp = bf16(-8 - bf16(mn / s))` (the 0-d float32 `bit_min` does not promote the bf16 tensor), clamped to
  [-8, 7], `torch.round` (half to even), `.to(int8)` ({cite(C, 'quantization/utils/helpers.py', 'zero_points = round_to_quantized_type_dtype')}).
* Zero scale: after the zero point, `s == 0` becomes `torch.finfo(bfloat16).eps` = 2^-7 = {probes['eps_for_zero_scale']}
  ({cite(C, 'quantization/utils/helpers.py', 'scales == 0,')}). tiny-llama has no all-zero group; the probes
  in `load_findings.json` show what one gives: symmetric scale 2^-7, zp 0, codes 0; asymmetric:
  {probes['asymmetric_all_zero_group_zero_point']}. So both give scale 2^-7, zero point 0 (an asymmetric
  file stores the zero-point nibble 8, not 0 = -8 as `min = 0` would suggest), codes 0, dequantized 0
  (checked by the generator).
* Scale stored BF16 (the weight dtype), `[N, ng]`, channel `[N, 1]`; zero point int8 in memory,
  stored as `zp + 8` nibbles packed along N (dim 0) by `pack_to_int32(zp, 4, packed_dim=0)`.
* Quantize ({cite(C, 'quantization/lifecycle/forward_helpers.py', 'def _quantize(')}, eager torch path: the Triton
  backend requires a GPU): `t = bf16(x / s)`, `t = bf16(t + zp)` (zp = 0 for symmetric: the compressor
  still passes the all-zero int8 `weight_zero_point`), clamp to [q_min, q_max] and then `torch.round`
  (half to even) ({cite(C, 'quantization/quant_args.py', 'def round_to_quantized_type_args')}), `.to(int8)`.
  **The quotient is rounded to bf16 before it is rounded to an integer**: with a float32 quotient,
  {sum(s['codes_differing_if_x_over_s_were_float32'] for s in st.values())} of {sum(s['codes'] for s in st.values())} codes over the three
  folders would differ (per folder: {', '.join(f"{n}: {s['codes_differing_if_x_over_s_were_float32']}/{s['codes']}" for n, s in st.items())}).
  After the bf16 rounding, {', '.join(f"{n}: {s['x_over_s_ties_after_bf16']}" for n, s in st.items())} quotients are exact .5 ties (half to even decides them).
* Pack: `pack_to_int32(q, bits)` stores `q + 8` (int4) / `q + 128` (int8), K-major, lowest k in the
  lowest bits; `weight_shape` = `torch.tensor(weight.shape)`, I64.

### quantization_config written by CT {C.__version__} (`update_config`)

`tiny-llama-ct-w4a16`:
```json
{cfg_json['tiny-llama-ct-w4a16']}
```
`tiny-llama-ct-w4a16-asym` differs only in `"group_size": 64, "symmetric": false`;
`tiny-llama-ct-w8a16-channel` in `"group_size": null, "num_bits": 8, "strategy": "channel"`.
Note the key set of CT 0.20: no `observer`/`observer_kwargs`/`actorder`/`block_structure`/`zp_dtype`
(omitted unless set explicitly), and `moe_sparsity_config: null` at top level.

### Expected values: `<folder>.expected.safetensors`

For each of the three folders: `P.weight` BF16 [N, K] for each of the 28 quantized linears, exactly as
`AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, quantization_config=CompressedTensorsConfig(run_compressed=False))`
loads them (transformers {transformers.__version__}: `run_compressed=False` is the deprecated spelling of
`dequantize=True`); they equal `bf16((q - zp) * s)` (the float32 product is exact, one rounding to bf16;
{cite(C, 'quantization/lifecycle/forward_helpers.py', 'def _dequantize(')}). `logits` F32 [{N_TOKENS}, 512]: that loaded model
cast to float32 (`model.float()`), eager attention, on `token_ids` (I32 [{N_TOKENS}]: the first {N_TOKENS} tokens of
`fixtures/eval/eval_tokens_u32le.bin`, no BOS); a plain float32 LlamaForCausalLM given the base weights and these
`P.weight` produces identical logits (checked). All three folders load.

{f32_text}
The goldens use the bf16 load (the checkpoint's dtype).

## GPTQ and AWQ folders (synthetic: GPTQModel and AutoAWQ are not installed)

| folder | scheme | tensors per quantized linear `P` |
|---|---|---|
| `models/tiny-llama-gptq/` | int4, sym, group 32, `desc_act: false`, `checkpoint_format: "gptq"` (v1) | `P.qweight` I32 [K/8, N], `P.qzeros` I32 [K/32, N/8] (every word `0x77777777`), `P.scales` F16 [K/32, N], `P.g_idx` I32 [K] = k // 32 |
| `models/tiny-llama-gptq-v2-actorder/` | int4, asym, group 32, `desc_act: true`, `checkpoint_format: "gptq_v2"` | same names; `g_idx` non-monotonic; v2 zeros (zero points used: {gptq_info['tiny-llama-gptq-v2-actorder']['zero_points_used']}) |
| `models/tiny-llama-awq/` | int4, group 32, zero_point, GEMM | `P.qweight` I32 [K, N/8], `P.qzeros` I32 [K/32, N/8], `P.scales` F16 [K/32, N] |

No `P.bias` (tiny-llama has none). `model.embed_tokens`, norms and `lm_head` are copied unchanged (bf16).
`config.json` = the base config plus `quantization_config` (indent 2, sorted keys, as transformers writes it);
the GPTQ folders also have `quantize_config.json` (the same dict, GM's key order, `json.dumps(indent=2)`,
no trailing newline: GM `quantization/config.py` `save_pretrained` L2816-2821).

* GPTQ codes: round to nearest with GPTQModel's parameter rule (GM `quantization/quantizer.py`
  `find_params` L95-140, perchannel, mse 0; `quantize` L26): per output row and group, on the bf16
  weight widened to float32: `xmin = min(min, 0)`, `xmax = max(max, 0)`; sym: `xmax = max(|xmin|, xmax)`,
  `xmin = -xmax` if `xmin < 0`; both 0 -> -1/+1; `scale = (xmax - xmin) / 15` (float32);
  `zero = 8` (sym) or `round(-xmin / scale)`; `u = clamp(round(w / scale) + zero, 0, 15)`, all float32,
  round half to even. Codes use the float32 scale (as GM does); `scales` stores it as F16 (GM
  `pack_original` L1520). The act-order folder: for each distinct linear input (q/k/v share one, gate/up
  share one) a fixed random positive `diag(H)` vector (seed 1404, uniform [0.05, 4)); `perm` = columns
  by decreasing diag (stable), `g_idx[perm[i]] = i // 32` (GM `gptq.py` L1037, L1289-1301); group j's
  parameters come from the columns `perm[32j:32j+32]` and `scales`/`qzeros` row j is that group.
  pack_original's re-derivation of the codes from the fake-quantized weight cast to bf16 (what GM packs)
  gives the same codes (checked).
* GPTQ `quantization_config`/`quantize_config.json` (GM `to_dict` L3051-3116 top-level keys and order,
  `sym` added by `_update_output_payload` L3300-3302; `meta` as GM `models/writer.py` L580-650 fills it,
  except `quantizer` = `["ckpt-fixtures:make_w4a16_goldens"]` and GM's runtime-only meta keys such as
  `offload_to_disk`, `pack_impl`, `fallback` left out):
```json
{json.dumps(gq['tiny-llama-gptq'], indent=2)}
```
  The v2 folder: `"desc_act": true`, `"format"`/`"checkpoint_format": "gptq_v2"`, `"sym": false`.
* AWQ codes: AA `awq/quantize/quantizer.py` `pseudo_quantize_tensor` L74-109 (zero_point) on the weight
  cast to F16 (`_apply_quant` L230), every op in f16: `s = clamp(max - min, 1e-5) / 15` over each group of
  32 (min/max NOT widened to include 0), `z = clamp(-round(min / s), 0, 15)`,
  `u = clamp(round(w / s) + z, 0, 15)`; then `from_linear` re-derives `round((W + z*s) / s)` from the
  fake-quantized f16 weight (checked equal) and packs (zero points used: {awq_info['zeros_min']}..{awq_info['zeros_max']}).
  `quantization_config` = AA `awq/models/_config.py` `to_transformers_dict` L84-92:
  `{{"quant_method": "awq", "zero_point": true, "group_size": 32, "bits": 4, "version": "gemm", "modules_to_not_convert": null}}`.

Expected values (`<folder>.expected.safetensors`): `P.weight` F16 [N, K] for the 28 linears, the library's
own dequantizer in its dtype, transposed to nn.Linear orientation: GPTQ = GM `dequantize_weight` +
`_dequantize_from_codes` (for the v1 folder after GM's load-time `convert_gptq_v1_to_v2_format_module`,
`qzeros += 0x11111111`, L818); AWQ = AA `dequantize_gemm`. Both are `f16(s * (u - z))`, exact product,
one rounding. No logits (not requested; the weights determine them). transformers cannot load these
folders directly here (it needs gptqmodel/optimum or autoawq, not installed). The AWQ folder is checked
end to end anyway: compressed-tensors' own `convert_checkpoint` + `AutoAWQConverter` turn it into a
pack-quantized checkpoint (in a temporary folder), and transformers loads that, with
`dtype=torch.float16`, with exactly the expected F16 weights (bf16 load: the same cast to bf16).

## `load_findings.json`

Per compressed-tensors folder: whether it loads (all do), the checks made, and the float32-load
comparison; `ct_arithmetic_probes`: `calculate_qparams`/`quantize`/`dequantize` on a bf16 tensor with
an all-zero group and an all-positive group, symmetric and asymmetric (int4, group 8); the cross-checks.
"""
    fc.write_text(w4 / "README.md", text)


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "fixtures", help="default: <repo>/fixtures")
    ap.add_argument("--only", default=None, help="make_fixtures.py's sections; runs only if 'models' is among them")
    args = ap.parse_args()
    if not fc.models_section_requested(args.only, "make_w4a16_goldens"):
        return
    fc.setup_libraries()
    out = args.out.resolve()
    src = out / "models" / "tiny-llama"
    if not (src / "model.safetensors").is_file() or not (out / "eval" / "eval_tokens_u32le.bin").is_file():
        sys.exit(f"error: {src}/model.safetensors or {out}/eval/eval_tokens_u32le.bin missing")
    from compressed_tensors.utils.triton import triton_req
    must(not triton_req(torch.zeros(1)), "the Triton quantize backend would be used; the goldens assume the eager one")
    start = time.monotonic()
    w4 = fc.fresh_dir(out / "w4a16")
    ids = eval_ids(out)

    log("w4a16: packing goldens")
    packing = make_packing(w4)
    ct_made, findings = {}, {
        "generator": "tools/make_w4a16_goldens.py",
        "versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                     "compressed_tensors": compressed_tensors.__version__, "safetensors": safetensors.__version__,
                     "numpy": np.__version__},
        "compressed_tensors_folders": {},
    }
    for name, spec in CT_FOLDERS.items():
        log(f"w4a16: {name} (compressed-tensors)")
        ct_made[name] = make_ct_folder(out, src, name, spec)
        f = ct_load_and_expected(out, src, name, spec, ct_made[name], ids)
        f["quantization_stats"] = ct_made[name]["stats"]
        findings["compressed_tensors_folders"][name] = f
    gptq_info = {}
    for name, spec in GPTQ_FOLDERS.items():
        log(f"w4a16: {name}")
        gptq_info[name] = make_gptq_folder(out, src, name, spec)
    log(f"w4a16: {AWQ_FOLDER}")
    awq_info = make_awq_folder(out, src)
    awq_info["ct_convert_checkpoint_roundtrip"] = awq_ct_roundtrip(out)
    findings["ct_arithmetic_probes"] = ct_probes()
    findings["cross_checks"] = {
        "gptq_qweight_vs_ct_pack_to_int32_transposed": "equal (packing golden and every linear of both GPTQ folders)",
        "gptq_v2_qzeros_vs_ct_pack_to_int32_packed_dim0_transposed": "equal",
        "awq_vs_ct_AutoAWQConverter": "codes, zero points and scales equal (packing golden and every AWQ linear); "
                                      "the whole folder converted by CT's convert_checkpoint loads in transformers "
                                      "with exactly the expected weights (awq_folder.ct_convert_checkpoint_roundtrip)",
        "gptq_awq_transformers_load": "not attempted: transformers needs gptqmodel/optimum (GPTQ) or autoawq (AWQ), "
                                      "not installed in the reference venv",
    }
    findings["gptq_folders"] = gptq_info
    findings["awq_folder"] = awq_info
    fc.write_json(w4 / "load_findings.json", findings)
    make_readme(out, packing, ct_made, findings, gptq_info, awq_info)
    for p in sorted(w4.iterdir()):
        p.chmod(0o644)
    for name in list(CT_FOLDERS) + list(GPTQ_FOLDERS) + [AWQ_FOLDER]:
        for p in (out / "models" / name).iterdir():
            p.chmod(0o644)  # transformers writes weights 0600
    log(f"make_w4a16_goldens: done in {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    main()
