#!/usr/bin/env python3
"""Golden cases for ckpt's GPTQ (Sources/CheckpointKit/Quantization/GPTQ.swift), made by
tools/gptq_reference.py, the plain torch float32 re-implementation of GPTQModel's GPTQ.quantize
(ModelCloud/GPTQModel @ f4c327a; the algorithm and its citations are in that file's docstring and
in docs/w4a16-formats-spec.md §2.5, §2.7, §4).

Writes (nothing else; fixtures/SHA256SUMS is not touched):
  fixtures/gptq/gptq_cases.safetensors   per case NN: caseNN.W, .H, .codes, .scales, .zeros, .g_idx, .Q
  fixtures/gptq/gptq_cases.json          parameters, results and diagnostics per case

Inputs: three bf16 weights of fixtures/models/tiny-llama widened to f32, and per case a Hessian
H = hessian([X[:half], X[half:]]) (two batches, the running average) of a deterministic correlated
calibration matrix X = f32((Z @ A) * colscale) computed in float64 with numpy's PCG64 (see
calibration()). The output is a pure function of this script, gptq_reference.py, the tiny-llama
weights and the pinned torch/numpy; two runs give the same bytes (checked with --check-twice).

For every case the script prints the relative weighted error trace((W−Q)H(W−Q)ᵀ)/trace(WHWᵀ) of
GPTQ and of round-to-nearest with the same quantizer (GPTQ must be lower, else it stops) and checks
that codes, scales, zeros and g_idx reproduce Q bit for bit.

Options: --out DIR (default <repo>/fixtures). --only SECTIONS as in the other golden scripts (runs
only when absent or naming 'models'). --check-twice: build everything twice in this process and
compare the bytes.
"""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

# First, before torch is imported: pins the environment for determinism (see fixture_common.py).
import fixture_common as fc  # noqa: E402
from fixture_common import f32_hex, log, sha256_bytes  # noqa: E402

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402

import gptq_reference as R  # noqa: E402

REPO = TOOLS.parent
Q_PROJ = "model.layers.0.self_attn.q_proj.weight"    # [64, 64]
DOWN = "model.layers.1.mlp.down_proj.weight"        # [64, 192]
K_PROJ = "model.layers.2.self_attn.k_proj.weight"   # [32, 64]
TOLS = (1e-6, 1e-5, 1e-4, 1e-3)
TIE_TOL = 1e-6
# A range search whose best error is within this of another trial's (relative) may choose the other
# under another summation order: ckpt sums f32 lanes of a polynomial |e|^mse (3e-7), torch its own way.
MSE_TIE_TOL = 1e-5


def calibration(K: int, tokens: int, seed: int, dead=()) -> torch.Tensor:
    """X [tokens, K] f32: rows Z @ A with Z ~ N(0,1) [tokens, K], A = I + 0.4·N(0,1)/sqrt(K) [K, K]
    (correlated columns), columns scaled by exp(0.5·N(0,1)) and columns 3 and K//2+1 by 6 more
    (outlier channels), all in float64 from numpy's PCG64(seed) (draw order: Z, A, colscale), then
    rounded to f32 once. Columns in `dead` are set to 0."""
    rng = np.random.Generator(np.random.PCG64(seed))
    Z = rng.standard_normal((tokens, K))
    A = np.eye(K) + 0.4 * rng.standard_normal((K, K)) / math.sqrt(K)
    colscale = np.exp(0.5 * rng.standard_normal(K))
    colscale[3] *= 6.0
    colscale[K // 2 + 1] *= 6.0
    X = ((Z @ A) * colscale).astype(np.float32)
    for d in dead:
        X[:, d] = 0.0
    return torch.from_numpy(X)


def build_cases(weights: dict) -> list:
    """(name, weight tensor name, W f32, calibration dict, gptq kwargs, description)."""
    q = weights[Q_PROJ].float()
    down = weights[DOWN].float()
    k = weights[K_PROJ].float()
    # W with the find_params edge cases: rows 0-3 made non-negative (symmetric 'xmin stays 0'
    # quirk), row 4 all zero (xmin = xmax = 0 -> -1, +1).
    k_quirk = k.clone()
    k_quirk[0:4] = k_quirk[0:4].abs()
    k_quirk[4] = 0.0
    down_zero_row = down.clone()
    down_zero_row[3] = 0.0  # an all-zero row: absmax 0 -> NF4 code 7 in every group
    std64 = {"tokens": 256, "batches": [128, 128], "seed": 20260901}
    std192 = {"tokens": 256, "batches": [128, 128], "seed": 20260902}
    d = dict(bits=4, group_size=32, sym=True, act_order=False, static_groups=False,
             damp_percent=0.01, damp_auto_increment=0.01, mode="int", mse=0.0)
    C = []

    def add(tensor, W, cal, desc, **kw):
        C.append({"tensor": tensor, "W": W, "calibration": cal, "params": {**d, **kw}, "description": desc})

    add(Q_PROJ, q, std64, "int4 symmetric, groups of 32")
    add(Q_PROJ, q, std64, "int4 asymmetric, groups of 32", sym=False)
    add(Q_PROJ, q, std64, "int4 symmetric, groups of 32, act-order (desc_act) with dynamic groups: "
        "g_idx non-monotonic", act_order=True)
    add(Q_PROJ, q, std64, "int4 symmetric, groups of 32, act-order + static_groups: groups fixed on "
        "the unpermuted W, g_idx = k // 32", act_order=True, static_groups=True)
    add(Q_PROJ, q, std64, "int4 symmetric, channel-wise (group_size -1): one group per row, its "
        "parameters from W before dead-column zeroing", group_size=-1)
    add(DOWN, down, std192, "int4 asymmetric, groups of 64, act-order with dynamic groups, K = 192: "
        "two lazy blocks (128 + 64); group 1 of block 0 is measured on W without in-block updates "
        "(GPTQModel's quirk)", sym=False, group_size=64, act_order=True)
    add(DOWN, down, std192, "nf4 (ckpt extension), groups of 64, dynamic (absmax measured when the "
        "loop reaches the group)", mode="nf4", group_size=64)
    add(K_PROJ, k, {**std64, "dead": [5]}, "int4 asymmetric, groups of 32, act-order, input column 5 "
        "dead (X[:, 5] = 0 so H row/column 5 is 0): H[5,5] := 1, W[:, 5] := 0, so Q[:, 5] = 0",
        sym=False, act_order=True)
    add(Q_PROJ, q, {**std64, "dead": [0, 33]}, "int4 symmetric, groups of 32, input columns 0 and 33 "
        "dead (no act-order)")
    add(K_PROJ, k, {"tokens": 16, "batches": [8, 8], "seed": 20260903},
        "int4 symmetric, groups of 32, rank-deficient H (16 tokens < K = 64) with damp_percent 1e-9: "
        "the Cholesky fails (H + λI is indefinite in f32 and in f64), damp_auto_increment 0.01 is "
        "added once and the second attempt succeeds (damp used 0.010000001)", damp_percent=1e-9)
    add(K_PROJ, k_quirk, std64, "int4 symmetric, groups of 32, static_groups without act-order, on "
        "k_proj with rows 0-3 replaced by |W| (symmetric find_params keeps xmin = 0: scale = xmax/15 "
        "with zero 8, codes 8..15 only) and row 4 all zero (xmin, xmax := -1, +1)", static_groups=True)
    add(DOWN, down_zero_row, std192, "nf4, groups of 64, act-order + static_groups (absmax on the "
        "unpermuted W), row 3 all zero (absmax 0 -> code 7, Q = 0)", mode="nf4", group_size=64,
        act_order=True, static_groups=True)
    add(K_PROJ, k, std64, "int8 asymmetric, channel-wise (group_size -1)", bits=8, sym=False, group_size=-1)
    # GPTQModel's mse range search (quantizer.py:141-182) with the norm its users pass; small
    # weights, as every trial is run in full here.
    add(Q_PROJ, q, std64, "int4 symmetric, groups of 32, mse 2.4: each group's range shrunk by the "
        "search (80 trials p = 1 .. 0.21, least sum |q - w|^2.4)", mse=2.4)
    add(K_PROJ, k, std64, "int4 asymmetric, groups of 32, act-order with dynamic groups, mse 2.4: the "
        "search on each group as the loop reaches it, zero points from the shrunk range", sym=False,
        act_order=True, mse=2.4)
    add(K_PROJ, k_quirk, std64, "int4 symmetric, groups of 32, static_groups, mse 2.4, on k_proj with rows "
        "0-3 non-negative (the shrink keeps xmin = 0) and row 4 all zero (every trial's error is 0: "
        "[-1, 1] kept)", static_groups=True, mse=2.4)
    add(K_PROJ, k_quirk, std64, "nf4 (ckpt extension), groups of 32, mse 2.4: the search over the "
        "absmax (trial absmax p·max|w|, nearest code), row 4 all zero (absmax 0 kept)", mode="nf4", mse=2.4)
    for i, c in enumerate(C):
        c["name"] = f"case{i:02d}"
    return C


def make_h(cal: dict, K: int):
    X = calibration(K, cal["tokens"], cal["seed"], cal.get("dead", ()))
    parts, s = [], 0
    for m in cal["batches"]:
        parts.append(X[s:s + m])
        s += m
    assert s == X.shape[0]
    H = R.hessian(parts)
    H_alt = R.hessian(parts, method="sum_then_scale")
    rel = ((H.double() - H_alt.double()).abs().max() / H.double().abs().max()).item()
    return H, rel


def tie_stats(margin: torch.Tensor) -> dict:
    out = {}
    for tol in TOLS:
        hit = margin <= tol
        out[f"{tol:g}"] = {"decisions": int(hit.sum()), "columns": int(hit.any(0).sum()),
                           "rows": int(hit.any(1).sum())}
    return out


def f64_cholesky_ok(A: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(A)
        return True
    except np.linalg.LinAlgError:
        return False


def variant_check(ref: R.GPTQOutput, W, H, p: dict, **kw) -> dict:
    """Runs the same algorithm in another precision and reports how many codes and groups differ:
    the order of magnitude by which an implementation with other rounding may legitimately differ."""
    o = R.gptq(W, H, **p, **kw)
    diff = o.codes.to(torch.float32) != ref.codes
    rows = sorted(set(torch.nonzero(diff)[:, 0].tolist()))
    sdiff = (o.scales.to(torch.float32) != ref.scales)
    srel = ((o.scales.double() - ref.scales.double()).abs() / ref.scales.double().abs().clamp(min=1e-30)).max().item()
    return {"code_mismatches": int(diff.sum()), "rows_with_code_mismatch": rows,
            "scale_mismatches": int(sdiff.sum()), "scale_max_rel_diff": srel,
            "zeros_mismatches": int((o.zeros.to(torch.float32) != ref.zeros).sum()),
            "Q_max_abs_diff": (o.Q.double() - ref.Q.double()).abs().max().item(),
            "damp": o.damp}


def run_case(case: dict, tensors: dict) -> dict:
    name, W, p = case["name"], case["W"], case["params"]
    N, K = W.shape
    H, h_methods_rel = make_h(case["calibration"], K)
    o = R.gptq(W, H, **p)

    # codes/scales/zeros/g_idx reproduce Q bit for bit
    Qd = R.dequantize(o.codes, o.scales, o.zeros, o.g_idx, p["mode"])
    if not torch.equal(Qd, o.Q):
        sys.exit(f"error: {name}: dequantize(codes, scales, zeros, g_idx) != Q")
    codes_u8 = o.codes.to(torch.uint8)
    if not torch.equal(codes_u8.to(torch.float32), o.codes):
        sys.exit(f"error: {name}: codes not in 0..255")
    if not torch.equal(o.zeros, torch.round(o.zeros)):
        sys.exit(f"error: {name}: zeros not integers")
    # GPTQModel's packer re-derives the codes from Q (pack_original: round((Q + z·s)/s)), here with f32 scales
    gi = o.g_idx.long()
    s, z = o.scales[:, gi], o.zeros[:, gi]
    repack = None
    if p["mode"] == "int":
        rc = torch.clamp(torch.round((o.Q + z * s) / s), 0, 2 ** p["bits"] - 1)
        repack = int((rc != o.codes).sum())

    # the error of GPTQ vs plain round-to-nearest, weighted by the stored H
    Qr = R.rtn(W, bits=p["bits"], group_size=p["group_size"], sym=p["sym"], mode=p["mode"], mse=p["mse"])
    e_gptq, e_rtn = R.weighted_error(W, o.Q, H), R.weighted_error(W, Qr, H)
    if not e_gptq < e_rtn:
        sys.exit(f"error: {name}: GPTQ error {e_gptq:.6g} is not below RTN {e_rtn:.6g}")

    # act-order: GPTQModel's torch.argsort(descending=True) is not stable; ours is
    perm_check = None
    if p["act_order"]:
        Hd = H.clone()
        dead = torch.diag(Hd) == 0
        Hd[dead, dead] = 1
        diag = torch.diag(Hd)
        unstable = torch.argsort(diag, descending=True).tolist()
        sd = diag[torch.tensor(o.perm)].double()
        rel_gaps = ((sd[:-1] - sd[1:]).abs() / sd[:-1].abs()).tolist()
        perm_check = {"unstable_argsort_equal": unstable == o.perm,
                      "exact_diag_ties": sum(1 for g in rel_gaps if g == 0),
                      "min_rel_gap_adjacent_diag": min(rel_gaps),
                      "near_ties_1e-6": sum(1 for g in rel_gaps if g <= TIE_TOL)}

    # the damping: f32 λ as added, and the same decision in f64 for the auto-increment case
    damp_info = {"damp_percent": p["damp_percent"], "damp_auto_increment": p["damp_auto_increment"],
                 "damp_used": o.damp, "attempts": o.attempts}
    if o.lam is not None:
        damp_info.update(lambda_f32=o.lam["lambda"], lambda_f32_hex=f32_hex(o.lam["lambda"]),
                         mean_diag_f32=o.lam["mean_diag"], mean_diag_f32_hex=f32_hex(o.lam["mean_diag"]))
    if len(o.attempts) > 1:
        Hd = H.double().numpy().copy()
        dead = np.diag(Hd) == 0
        Hd[dead, dead] = 1
        mean = np.mean(np.diag(Hd))
        f64 = []
        for a in o.attempts:
            A = Hd + a["damp"] * mean * np.eye(K)
            f64.append({"damp": a["damp"], "f64_cholesky_ok": f64_cholesky_ok(A),
                        "min_eigenvalue_f64": float(np.linalg.eigvalsh(A).min())})
        damp_info["f64_check"] = f64
        damp_info["eigenvalues_of_H_f64"] = {"min": float(np.linalg.eigvalsh(Hd).min()),
                                             "max": float(np.linalg.eigvalsh(Hd).max())}

    zm = torch.stack([m.reshape(-1) for m in o.zero_margin], 1) if o.zero_margin else None
    zhit = zm <= TIE_TOL
    zero_point = {"tol": TIE_TOL, "count": int(zhit.sum()), "exact": int((zm == 0).sum()),
                  "positions": [[int(r), int(g)] for r, g in torch.nonzero(zhit).tolist()],
                  "margins": [float(zm[r, g]) for r, g in torch.nonzero(zhit).tolist()]}
    hit = o.margin <= TIE_TOL
    positions = [[int(r), int(c)] for r, c in torch.nonzero(hit).tolist()]
    mse_ties = None
    if p["mse"] > 0:
        mm = torch.stack([m.reshape(-1) for m in o.mse_margin], 1)
        mhit = mm <= MSE_TIE_TOL
        mse_ties = {"tol": MSE_TIE_TOL, "count": int(mhit.sum()), "exact": int((mm == 0).sum()),
                    "min_margin": float(mm.min()),
                    "positions": [[int(r), int(g)] for r, g in torch.nonzero(mhit).tolist()],
                    "margins": [float(mm[r, g]) for r, g in torch.nonzero(mhit).tolist()]}

    ng = o.scales.shape[1]
    tensors[f"{name}.W"] = W.clone().contiguous()
    tensors[f"{name}.H"] = H.clone().contiguous()
    tensors[f"{name}.codes"] = codes_u8.contiguous()
    tensors[f"{name}.scales"] = o.scales.contiguous()
    tensors[f"{name}.zeros"] = o.zeros.contiguous()
    tensors[f"{name}.g_idx"] = o.g_idx.contiguous()
    tensors[f"{name}.Q"] = o.Q.contiguous()
    sha = {k.split(".", 1)[1]: sha256_bytes(v.contiguous().view(torch.uint8).numpy().tobytes())
           for k, v in tensors.items() if k.startswith(name + ".")}

    entry = {
        "name": name,
        "description": case["description"],
        "tensor": case["tensor"],
        "shape": [N, K],
        "num_groups": ng,
        "mode": p["mode"],
        "bits": p["bits"],
        "group_size": p["group_size"],
        "sym": p["sym"],
        "act_order": p["act_order"],
        "static_groups": p["static_groups"],
        "damp_percent": p["damp_percent"],
        "damp_auto_increment": p["damp_auto_increment"],
        "mse": p["mse"],
        "blocksize": 128,
        "damp_used": o.damp,
        "damping": damp_info,
        "calibration": {**case["calibration"],
                        "hessian": "running_average over the batches (gptq_reference.hessian)",
                        "max_rel_diff_vs_sum_then_scale": h_methods_rel},
        "dead_columns": o.dead,
        "perm": o.perm,
        "perm_check": perm_check,
        "near_ties": {"tol": TIE_TOL, "columns": int(hit.any(0).sum()), "decisions": int(hit.sum()),
                      "exact": int((o.margin == 0).sum()), "rows": sorted(set(r for r, _ in positions)),
                      "positions": positions, "margins": [float(o.margin[r, c]) for r, c in positions]},
        "near_ties_by_tol": tie_stats(o.margin),
        "zero_point_near_ties": zero_point,
        "mse_near_ties": mse_ties,
        "sym_xmin_zero_quirk_groups": o.quirk_groups,
        "all_zero_groups": o.all_zero_groups,
        "error": {"gptq": e_gptq, "rtn": e_rtn, "gptq_over_rtn": e_gptq / e_rtn},
        "loss_sum_f32": o.loss_sum,
        "repack_code_mismatches_f32_scales": repack,
        "variant_inverse_f64": variant_check(o, W, H, p, inverse_dtype=torch.float64),
        "variant_all_f64": variant_check(o, W, H, p, dtype=torch.float64),
        "sha256": sha,
    }
    print(f"{name} {case['tensor'].split('.', 2)[2]:<24} {p['mode']}{p['bits'] if p['mode'] == 'int' else ''} "
          f"{('sym ' if p['sym'] else 'asym') if p['mode'] == 'int' else '    '} G={p['group_size']:<3} ao={int(p['act_order'])} "
          f"st={int(p['static_groups'])} damp={o.damp:.9g}  err gptq={e_gptq:.6f} rtn={e_rtn:.6f} "
          f"ratio={e_gptq / e_rtn:.4f}  Q==deq(codes) ok  near-ties(1e-6)={entry['near_ties']['decisions']} "
          f"f64inv-mismatch={entry['variant_inverse_f64']['code_mismatches']}"
          + (f"  mse={p['mse']} near-ties({MSE_TIE_TOL:g})={mse_ties['count']} min-margin={mse_ties['min_margin']:.2e}" if mse_ties else ""))
    return entry


def outer_product_check() -> dict:
    """GPTQModel's in-block update W1[:, i:] -= e.unsqueeze(1).matmul(U[i, i:].unsqueeze(0)) is
    elementwise f32(W1 - f32(e·U)) (a K=1 matmul: one rounded product, no FMA with W1)."""
    g = torch.Generator().manual_seed(7)
    same = 0
    total = 0
    for n, m in ((64, 64), (64, 128), (32, 17), (48, 1)):
        W1 = torch.randn(n, m, generator=g)
        e = torch.randn(n, generator=g)
        u = torch.randn(m, generator=g)
        a = W1.clone()
        a -= e.unsqueeze(1).matmul(u.unsqueeze(0))
        b = (W1.numpy() - (e.numpy()[:, None] * u.numpy()[None, :]).astype(np.float32)).astype(np.float32)
        same += int((a.numpy().view(np.uint32) == b.view(np.uint32)).sum())
        total += a.numel()
    return {"elements": total, "equal_to_elementwise": same}


def build(weights: dict):
    nf4_fixture = safetensors.torch.load_file(str(REPO / "fixtures" / "quant" / "dynamic_map.safetensors"))["nf4"]
    if not torch.equal(nf4_fixture, R.nf4_table()):
        sys.exit("error: gptq_reference.NF4_TABLE differs from fixtures/quant/dynamic_map.safetensors 'nf4'")
    cases = build_cases(weights)
    tensors, entries = {}, []
    for case in cases:
        entries.append(run_case(case, tensors))
    manifest = {
        "generator": "tools/make_gptq_goldens.py (reference: tools/gptq_reference.py)",
        "gptqmodel": R.GPTQMODEL,
        "versions": {"torch": torch.__version__.split("+")[0], "numpy": np.__version__,
                     "safetensors": safetensors.__version__},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "weights": "fixtures/models/tiny-llama/model.safetensors (bf16), widened to f32",
        "nf4_table": R.NF4_TABLE,
        "in_block_update_check": outer_product_check(),
        "note": (
            "gptq_cases.safetensors holds, per case NN: caseNN.W (F32 [N,K], the weight given to GPTQ), "
            "caseNN.H (F32 [K,K], the Hessian given to GPTQ, before dead-column fixing and damping), "
            "caseNN.codes (U8 [N,K], unsigned codes u in the original column order; NF4 table indices "
            "for mode nf4), caseNN.scales (F32 [N,ng]; absmax for nf4), caseNN.zeros (F32 [N,ng], "
            "integer-valued, +0.0 for asym groups GPTQModel gives -0.0; all 0 for nf4), caseNN.g_idx "
            "(I32 [K], group of original column k as GPTQModel writes it), caseNN.Q (F32 [N,K], the "
            "fake-quantized weight before GPTQModel's cast to the module dtype). Q == scales[:, g_idx] * "
            "(codes - zeros[:, g_idx]) in f32 (nf4: nf4_table[codes] * scales[:, g_idx]), bit for bit. "
            "near_ties: code decisions (row, original column) whose value x/scale lies within "
            "tol·max(|x/scale|, 1) of a .5 tie between two codes that differ after the clamp (nf4: "
            "x/absmax within tol of a midpoint of neighbouring table entries); 'exact' counts margin 0 (an "
            "exact .5 tie, decided half-to-even; common because bf16 weights make exact ratios); "
            "zero_point_near_ties: the same test on -xmin/scale of asymmetric groups, positions [row, "
            "scale column]; mse_near_ties (cases with mse > 0): groups whose range search's best error "
            "is within tol (relative) of a trial with other parameters, positions [row, scale column]; "
            "rows are independent in "
            "GPTQ, so a flipped decision can change the later codes (in processing order) of its row "
            "only. variant_inverse_f64: the same algorithm with the damped inverse Cholesky factor "
            "computed in f64 (then rounded to f32); variant_all_f64: everything in f64. Their "
            "mismatch counts show how far an implementation with other rounding may legitimately "
            "drift from these f32 goldens."),
        "cases": entries,
    }
    return tensors, manifest


def serialize(tensors: dict, manifest: dict):
    blob = safetensors.torch.save(tensors, metadata={"format": "pt"})
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    return blob, text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "fixtures", help="default: <repo>/fixtures")
    ap.add_argument("--only", default=None, help="make_fixtures.py's sections; runs only if 'models' is among them")
    ap.add_argument("--check-twice", action="store_true", help="build twice and compare the bytes")
    args = ap.parse_args()
    if not fc.models_section_requested(args.only, "make_gptq_goldens"):
        return
    fc.setup_libraries()
    out = args.out.resolve()
    src = out / "models" / "tiny-llama" / "model.safetensors"
    if not src.is_file():
        sys.exit(f"error: {src} missing: run tools/make_fixtures.py first")
    weights = safetensors.torch.load_file(str(src))
    blob, text = serialize(*build(weights))
    if args.check_twice:
        blob2, text2 = serialize(*build(weights))
        if blob != blob2 or text != text2:
            sys.exit("error: two builds differ")
        log("make_gptq_goldens: two builds identical")
    d = out / "gptq"
    d.mkdir(parents=True, exist_ok=True)
    (d / "gptq_cases.safetensors").write_bytes(blob)
    fc.write_text(d / "gptq_cases.json", text)
    for f in ("gptq_cases.safetensors", "gptq_cases.json"):
        (d / f).chmod(0o644)
        log(f"{fc.sha256_file(d / f)}  gptq/{f}")
    # Last of tools/make_fixtures.sh: the sums cover every generator's files.
    fc.write_sums(out)


if __name__ == "__main__":
    main()
