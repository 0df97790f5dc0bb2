#!/usr/bin/env python3
"""Dev-time check that quantized model folders written by ckpt load in their ecosystems.

    .venv/bin/python tools/check_quantized_loads.py OUT_NF4 OUT_INT8 [--record fixtures/quant/load_check.json]

OUT_NF4: a bitsandbytes-layout folder (e.g. `ckpt-quantize fixtures/models/tiny-llama OUT_NF4
--scheme nf4 --double-quant`). Checks:
  * transformers `from_pretrained` loads it with bitsandbytes on CPU (Linear4bit layers) and gives
    logits on the fixed input (the 32 token ids of fixtures/quant/tiny_llama_logits.json), both on
    bitsandbytes' portable path and on its default path for this CPU (an AVX512-BF16 kernel when
    the CPU has it);
  * the folder's NF4/FP4 tensors dequantized by bitsandbytes' `dequantize_4bit` into a plain model:
    in bf16 (what Linear4bit computes: the logits must equal the transformers ones) and in float32
    (what ckpt's own forward computes: compared with the golden logits when the source is tiny-llama);
  * with --source (default fixtures/models/tiny-llama, when the shapes match): every quantized weight
    requantized by bitsandbytes `quantize_4bit` with the folder's own parameters, compared byte for
    byte (packed, absmax, nested tensors, quant_state JSON; the nested offset in ulps), and every
    other tensor compared with the source.
OUT_INT8: a compressed-tensors int8 folder (`--scheme int8`). Checks:
  * transformers + compressed-tensors load it, with `CompressedTensorsConfig(run_compressed=False)`
    and without (decompressed on the first forward); each linear weight must equal q*scale
    (computed in the scale's dtype, as compressed-tensors does) exactly;
  * logits of that model against a plain model holding q*scale, and against the source model;
  * with --source: q and scale against the DESIGN.md reference quantizer (round-half-away).

Prints a summary on stderr and the full report as JSON on stdout (or into --record; a record
inside fixtures/ also refreshes fixtures/SHA256SUMS). Every file in both folders is listed with its
sha256. Exit status 0 when every check passes, 1 otherwise.
"""

import os
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import make_quant_goldens as g  # noqa: E402  (sets the same environment pins before torch loads)

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402

import numpy as np  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import bitsandbytes  # noqa: E402
import bitsandbytes.functional as bnbF  # noqa: E402
import compressed_tensors  # noqa: E402

REPO = TOOLS.parent
QS_SUFFIXES = (".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".quant_state.")
LOGIT_TOLERANCE_SAME_MATH = 1e-5  # two computations that should be the same arithmetic


def shown(p: Path) -> str:
    """A path relative to the repository when inside it (keeps recorded reports machine-neutral)."""
    p = Path(p).resolve()
    try:
        return p.relative_to(REPO).as_posix()
    except ValueError:
        return str(p)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sha256_files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def load_tensors(folder: Path) -> dict:
    """All tensors of a folder: model.safetensors, or the shards an index names, or every *.safetensors."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        files = sorted(p.name for p in folder.glob("*.safetensors"))
    out = {}
    for f in files:
        part = safetensors.torch.load_file(str(folder / f))
        dup = set(out) & set(part)
        if dup:
            raise ValueError(f"{f}: tensors also in another shard: {sorted(dup)[:3]}")
        out.update(part)
    return out


def split_bnb(tensors: dict):
    """(plain tensors, {weight name: {suffix: tensor}}) for bitsandbytes 4-bit groups."""
    plain, groups = {}, {}
    for k, v in tensors.items():
        hit = next((s for s in QS_SUFFIXES if s in k), None)
        if hit is None:
            plain[k] = v
        else:
            base = k[: k.index(hit)]
            groups.setdefault(base, {})[k[len(base) + 1:]] = v
    return plain, groups


def quant_state_of(group: dict) -> bnbF.QuantState:
    return bnbF.QuantState.from_dict(dict(group), device=torch.device("cpu"))


def plain_model(folder: Path, weights: dict, dtype: torch.dtype):
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("quantization_config", None)
    config = transformers.AutoConfig.for_model(**cfg)
    with g.quiet():
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # tied embeddings may be absent from the file; nothing else may be
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    bad_missing = [m for m in missing if m not in tied and "rotary" not in m]
    if unexpected or bad_missing:
        raise ValueError(f"plain model: unexpected {unexpected[:3]}, missing {bad_missing[:3]}")
    return model.eval()


def dequantized_weights(tensors: dict, dtype: torch.dtype) -> dict:
    plain, groups = split_bnb(tensors)
    out = {}
    for k, v in plain.items():
        if k in groups:
            qs = quant_state_of(groups[k])
            qs.dtype = dtype
            out[k] = bnbF.dequantize_4bit(v, qs).reshape(tuple(qs.shape))
        else:
            out[k] = v.to(dtype)
    return out, sorted(groups)


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def token_ids(args) -> list:
    golden = REPO / "fixtures" / "quant" / "tiny_llama_logits.json"
    return json.loads(golden.read_text())["token_ids"]


# ---------------------------------------------------------------------------


def check_nf4(folder: Path, source: Path | None, ids: list) -> dict:
    rep = {"folder": shown(folder), "files": sha256_files(folder), "checks": {}}
    cfg = json.loads((folder / "config.json").read_text())
    rep["quantization_config"] = cfg.get("quantization_config")
    tensors = load_tensors(folder)
    plain, groups = split_bnb(tensors)
    rep["quantized_weights"] = len(groups)
    rep["quant_states"] = {}
    for name in sorted(groups):
        key = next(k for k in groups[name] if k.startswith("quant_state."))
        rep["quant_states"][name] = bytes(groups[name][key].tolist()).decode("utf-8")
    checks = rep["checks"]
    checks["has_quantized_weights"] = len(groups) > 0

    # transformers + bitsandbytes: the portable path (dequantize_4bit + torch linear) must work; the
    # default path on this CPU (a repacked AVX512-BF16 kernel when the CPU has it) is reported only:
    # bitsandbytes' repacking fails by itself when in_features is not a multiple of the blocksize
    L = {}
    try:
        with g.quiet():
            portable = g.portable_bnb(transformers.AutoModelForCausalLM.from_pretrained(folder).eval())
        n4 = sum(isinstance(m, bitsandbytes.nn.Linear4bit) for m in portable.modules())
        rep["transformers_linear4bit_modules"] = n4
        checks["transformers_loads_with_linear4bit"] = n4 == len(groups)
        L["transformers_bnb_portable_path"] = g.logits_of(portable, ids)
        checks["transformers_bnb_portable_forward"] = True
    except Exception as e:
        rep["transformers_error"] = f"{type(e).__name__}: {e}"
        checks.setdefault("transformers_loads_with_linear4bit", False)
        checks["transformers_bnb_portable_forward"] = False
    try:
        with g.quiet():
            native = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
            L["transformers_bnb_default_path"] = g.logits_of(native, ids)
        rep["transformers_bnb_default_path"] = {"ok": True}
    except Exception as e:
        rep["transformers_bnb_default_path"] = {"ok": False, "error": f"{type(e).__name__}: {e}",
                                                "note": "reported, not a failed check: on AVX512-BF16 CPUs "
                                                        "bitsandbytes repacks each weight and needs "
                                                        "in_features % blocksize == 0"}
    rep["transformers_bnb_default_path"]["avx512bf16_kernel"] = bool(bnbF.has_avx512bf16())

    # plain models from bitsandbytes' dequantize_4bit
    w16, _ = dequantized_weights(tensors, torch.bfloat16)
    L["dequantized_bf16"] = g.logits_of(plain_model(folder, w16, torch.bfloat16), ids)
    w32, _ = dequantized_weights(tensors, torch.float32)
    L["dequantized_f32"] = g.logits_of(plain_model(folder, w32, torch.float32), ids)

    diffs = rep["max_abs_logit_diff"] = {}
    if "transformers_bnb_portable_path" in L:
        diffs["transformers_bnb_portable_vs_dequantized_bf16"] = max_abs(L["transformers_bnb_portable_path"],
                                                                        L["dequantized_bf16"])
        if "transformers_bnb_default_path" in L:
            diffs["transformers_bnb_default_vs_dequantized_bf16"] = max_abs(L["transformers_bnb_default_path"],
                                                                           L["dequantized_bf16"])
        diffs["transformers_bnb_portable_vs_dequantized_f32"] = max_abs(L["transformers_bnb_portable_path"],
                                                                       L["dequantized_f32"])
        checks["transformers_bnb_equals_dequantized_bf16_model"] = (
            diffs["transformers_bnb_portable_vs_dequantized_bf16"] <= LOGIT_TOLERANCE_SAME_MATH)
    golden_file = REPO / "fixtures" / "quant" / "tiny_llama_logits.safetensors"
    same_model = source is not None and source == (REPO / "fixtures" / "models" / "tiny-llama").resolve()
    if golden_file.is_file() and same_model and L["dequantized_f32"].shape == (len(ids), 512):
        golden = safetensors.torch.load_file(str(golden_file))
        diffs["dequantized_f32_vs_golden_base_f32"] = max_abs(L["dequantized_f32"], golden["base_f32"])
        states = [json.loads(v) for v in rep["quant_states"].values()]
        golden_scheme = all(q["quant_type"] == "nf4" and q["blocksize"] == 64 and "nested_offset" in q
                            for q in states)  # what tiny_llama_logits.safetensors was made with
        if golden_scheme:
            diffs["dequantized_f32_vs_golden_nf4_dequantized_f32"] = max_abs(L["dequantized_f32"],
                                                                            golden["nf4_dequantized_f32"])
        if golden_scheme and "transformers_bnb_portable_path" in L:
            diffs["transformers_bnb_portable_vs_golden_nf4_transformers_bnb"] = max_abs(
                L["transformers_bnb_portable_path"], golden["nf4_transformers_bnb"])

    if source is not None:
        rep["against_bitsandbytes"] = compare_with_bnb(source, plain, groups)
        checks["bytes_identical_to_bitsandbytes"] = rep["against_bitsandbytes"]["all_identical"]
        checks["other_tensors_unchanged"] = rep["against_bitsandbytes"]["other_tensors_unchanged"]
    return rep


def compare_with_bnb(source: Path, plain: dict, groups: dict) -> dict:
    src = load_tensors(source)
    res = {"source": shown(source), "weights": {}, "all_identical": True}
    for name in sorted(groups):
        if name not in src:
            res["weights"][name] = {"error": "not in source"}
            res["all_identical"] = False
            continue
        qs_json = json.loads(bytes(groups[name][next(k for k in groups[name] if k.startswith("quant_state."))]
                                   .tolist()).decode("utf-8"))
        w = src[name]
        packed, qs = bnbF.quantize_4bit(w, blocksize=qs_json["blocksize"], quant_type=qs_json["quant_type"],
                                        compress_statistics="nested_offset" in qs_json,
                                        quant_storage=torch.uint8)
        ref = {"": packed, **qs.as_dict(packed=True)}
        row = {}
        for k, v in ref.items():
            got = plain.get(name) if k == "" else groups[name].get(k)
            row[k or "packed"] = bool(got is not None and got.dtype == v.dtype and got.shape == v.shape
                                      and torch.equal(got, v))
        if "nested_offset" in qs_json:
            mine, theirs = np.float32(qs_json["nested_offset"]), np.float32(qs.offset.item())
            row["nested_offset_ulps"] = g.ulps_apart(mine, theirs)
        row["identical"] = all(v for k, v in row.items() if k != "nested_offset_ulps")
        res["all_identical"] &= row["identical"]
        res["weights"][name] = row
    others = [k for k in plain if k not in groups]
    changed = [k for k in others if k not in src or not torch.equal(plain[k], src[k])]
    res["other_tensors_unchanged"] = not changed
    res["other_tensors_changed"] = changed
    res["identical_weights"] = sum(1 for r in res["weights"].values() if r.get("identical"))
    return res


# ---------------------------------------------------------------------------


def int8_pairs(tensors: dict) -> dict:
    return {k[: -len("_scale")]: k for k in tensors if k.endswith(".weight_scale")}


def q_times_scale(q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """compressed-tensors' dequantize: q.to(scale.dtype) * scale, groups along the input dimension."""
    gsize = -(-q.shape[1] // s.shape[1])
    return q.to(s.dtype) * s.repeat_interleave(gsize, 1)[:, : q.shape[1]]


def check_int8(folder: Path, source: Path | None, ids: list) -> dict:
    rep = {"folder": shown(folder), "files": sha256_files(folder), "checks": {}}
    cfg = json.loads((folder / "config.json").read_text())
    rep["quantization_config"] = cfg.get("quantization_config")
    tensors = load_tensors(folder)
    pairs = int8_pairs(tensors)
    rep["quantized_weights"] = len(pairs)
    checks = rep["checks"]
    checks["has_quantized_weights"] = len(pairs) > 0
    checks["weights_are_int8"] = all(tensors[w].dtype == torch.int8 for w in pairs)
    rep["scale_dtypes"] = sorted({str(tensors[s].dtype).replace("torch.", "") for s in pairs.values()})
    expected = {w: q_times_scale(tensors[w], tensors[s]).float() for w, s in pairs.items()}

    L = {}
    for label, kw in (("dequantize_true", {"quantization_config":
                                            transformers.CompressedTensorsConfig(run_compressed=False)}),
                      ("default_decompress_on_forward", {})):
        try:
            with g.quiet():
                m = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw).eval()
                L[label] = g.logits_of(m, ids)  # the default mode decompresses in this first forward
            sd = m.state_dict()
            worst = max(max_abs(sd[w], e) for w, e in expected.items())
            rep[f"load_{label}"] = {"loads": True, "max_abs_weight_minus_q_times_scale": worst}
            checks[f"compressed_tensors_{label}_weights_equal_q_times_scale"] = worst == 0.0
        except Exception as e:
            rep[f"load_{label}"] = {"loads": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
            checks[f"compressed_tensors_{label}_weights_equal_q_times_scale"] = False

    weights = {k: (expected[k] if k in expected else v.float()) for k, v in tensors.items()
               if not k.endswith(".weight_scale")}
    L["plain_f32_q_times_scale"] = g.logits_of(plain_model(folder, weights, torch.float32), ids)
    diffs = rep["max_abs_logit_diff"] = {}
    for label in ("dequantize_true", "default_decompress_on_forward"):
        if label in L:
            diffs[f"{label}_vs_plain_f32_q_times_scale"] = max_abs(L[label], L["plain_f32_q_times_scale"])
            checks[f"{label}_logits_equal_plain_model"] = diffs[f"{label}_vs_plain_f32_q_times_scale"] <= \
                LOGIT_TOLERANCE_SAME_MATH
    golden_file = REPO / "fixtures" / "quant" / "tiny_llama_logits.safetensors"
    same_model = source is not None and source == (REPO / "fixtures" / "models" / "tiny-llama").resolve()
    if golden_file.is_file() and same_model and L["plain_f32_q_times_scale"].shape == (len(ids), 512):
        golden = safetensors.torch.load_file(str(golden_file))
        diffs["plain_f32_q_times_scale_vs_golden_base_f32"] = max_abs(L["plain_f32_q_times_scale"],
                                                                     golden["base_f32"])

    if source is not None:
        src = load_tensors(source)
        res = {"source": shown(source), "weights": {}}
        total_diff = 0
        scales_equal = True
        for w, s in sorted(pairs.items()):
            if w not in src:
                res["weights"][w] = {"error": "not in source"}
                scales_equal = False
                continue
            gsize = -(-tensors[w].shape[1] // tensors[s].shape[1])
            q, sc = g.ref_int8_group(src[w].float().numpy(), gsize)
            d = int((torch.from_numpy(q) != tensors[w]).sum())
            se = tensors[s].dtype == torch.float32 and np.array_equal(sc, tensors[s].numpy())
            res["weights"][w] = {"group_size": gsize, "int8_differing": d, "scale_identical_f32": bool(se)}
            total_diff += d
            scales_equal &= se
        others = [k for k in tensors if k not in pairs and k not in pairs.values()]
        res["other_tensors_changed"] = [k for k in others if k not in src or not torch.equal(tensors[k], src[k])]
        res["int8_elements_differing_from_reference"] = total_diff
        res["scales_identical_to_reference"] = bool(scales_equal)
        rep["against_reference"] = res
        checks["int8_identical_to_reference"] = total_diff == 0 and scales_equal
        checks["other_tensors_unchanged"] = not res["other_tensors_changed"]
    return rep


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nf4", type=Path, help="bitsandbytes-layout folder (NF4/FP4)")
    ap.add_argument("int8", type=Path, help="compressed-tensors int8 folder")
    ap.add_argument("--record", type=Path, help="write the JSON report here (e.g. fixtures/quant/load_check.json)")
    ap.add_argument("--source", type=Path, default=REPO / "fixtures" / "models" / "tiny-llama",
                    help="the unquantized model both folders came from (default: fixtures/models/tiny-llama); "
                         "'none' to skip the byte comparisons")
    args = ap.parse_args()
    source = None if str(args.source) == "none" else args.source.resolve()
    for p in (args.nf4, args.int8):
        if not (p / "config.json").is_file():
            ap.error(f"{p}: not a model folder (no config.json)")
    torch.set_num_threads(1)
    ids = token_ids(args)
    report = {
        "generator": "tools/check_quantized_loads.py",
        "versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                     "bitsandbytes": bitsandbytes.__version__, "compressed_tensors": compressed_tensors.__version__},
        "machine": {"python": platform.python_version(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "cpu_has_avx512bf16": bool(bnbF.has_avx512bf16())},
        "token_ids": ids,
        "nf4": check_nf4(args.nf4.resolve(), source, ids),
        "int8": check_int8(args.int8.resolve(), source, ids),
    }
    failed = [f"{part}.{k}" for part in ("nf4", "int8") for k, v in report[part]["checks"].items() if not v]
    report["all_checks_passed"] = not failed
    report["failed_checks"] = failed
    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    if args.record:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(text)
        fixtures = REPO / "fixtures"
        if args.record.resolve().is_relative_to(fixtures) and (fixtures / "SHA256SUMS").is_file():
            g.mf.write_sums(fixtures)  # keep `sha256sum -c SHA256SUMS` green with the new record
    else:
        sys.stdout.write(text)
    for part in ("nf4", "int8"):
        for k, v in report[part]["checks"].items():
            log(f"{'ok  ' if v else 'FAIL'} {part}: {k}")
        for k, v in report[part].get("max_abs_logit_diff", {}).items():
            log(f"     {part}: max |logit diff| {k} = {v:.3g}")
    sys.exit(0 if not failed else 1)


if __name__ == "__main__":
    main()
