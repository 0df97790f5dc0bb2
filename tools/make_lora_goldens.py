#!/usr/bin/env python3
"""Golden files for ckpt-merge-lora: small PEFT adapters for the fixture models, and what PEFT's
`merge_and_unload` makes of them, made by the pinned reference stack (tools/requirements.txt).

Run by tools/make_fixtures.sh after tools/make_fixtures.py (it needs fixtures/models/tiny-llama and
fixtures/models/tiny-gpt2) and reads the two real adapters in ../shared/assets/lora. The output is a
pure function of this script, the pinned wheels, those two fixture models and those two adapters:
a second run rewrites every file byte for byte. At the end it rewrites fixtures/SHA256SUMS the way
make_fixtures.py does, so the sums cover these files too.

Writes (under fixtures/lora/):
  adapters/<name>/                    adapter_config.json + adapter_model.safetensors, written by PEFT's
                                      save_pretrained (base_model_name_or_path rewritten to a repo path)
  goldens/<case>.safetensors          merged tensors, only those the adapter changes, under the base
                                      checkpoint's names, in the base's dtype
  goldens/real-<adapter>.safetensors  the real adapters merged into generated bases: 256 sampled values
                                      per merged tensor
  goldens/manifest.json               every adapter, case, module (r, alpha, scaling), real-adapter
                                      summary and measured PEFT behaviour
  README.md                           how PEFT merges, exactly, with source line numbers

The f32 llama cases use tiny-llama widened exactly to float32, made in a temporary folder (not
committed: 1 MB). Every golden is also recomputed by the torch reference implementation below
(`ref_merge`), which is what fixtures/lora/README.md describes; the script stops if the two
disagree on a single byte.

Options: --out DIR (default <repo>/fixtures). --only SECTIONS is accepted so that
tools/make_fixtures.sh can pass its own arguments through: this script runs only when --only is
absent or names the 'models' section (the goldens are derived from the models).
"""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

# First, before torch is imported: pins the environment for determinism (see fixture_common.py).
import fixture_common as fc  # noqa: E402
from fixture_common import cite, f32_hex, log, sha256_bytes  # noqa: E402,F401

# PEFT writes target_modules as list(set(...)), i.e. in string-hash order, and string hashes are
# randomised per process: pin them (re-executing once) so that every run sees the same orders.
fc.pin_hash_seed()

import argparse
import json
import math
import shutil
import struct
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np  # noqa: E402
import peft  # noqa: E402
import safetensors  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402
from peft.utils import load_peft_weights, set_peft_model_state_dict  # noqa: E402
from peft.utils.other import ModulesToSaveWrapper  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    OPTConfig,
    OPTForCausalLM,
)

REPO = TOOLS.parent
SHARED_LORA = REPO / ".." / "shared" / "assets" / "lora"
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
ST_DTYPE = {"float32": "F32", "bfloat16": "BF16"}

# Paths below are relative to the fixtures folder (as in SHA256SUMS).
LLAMA = "models/tiny-llama"
GPT2 = "models/tiny-gpt2"
LLAMA_F32 = "models/tiny-llama@f32"  # tiny-llama widened to f32, in a temporary folder (not committed)
F32_DIR: Path | None = None  # set by main()
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
N_SAMPLES = 256
FRAGILE_ULPS = 2  # a bf16 result is "fragile" when moving its f32 pre-rounding value by <= 2 ulps changes it
FRAGILE_LIST_MAX = 64

# ---------------------------------------------------------------------------
# the adapters (every one: init_lora_weights=False, lora_dropout=0, task_type CAUSAL_LM, then every
# adapter parameter overwritten from numpy's default_rng(seed), see perturb())

ADAPTERS = [
    dict(name="llama-lora-all-linear", base=LLAMA, seed=101, sigma_b=0.05,
         note="plain LoRA r=8 alpha=16 on all seven linear layers of all four blocks",
         config=dict(r=8, lora_alpha=16, target_modules=LINEAR)),
    dict(name="llama-rslora-patterns", base=LLAMA, seed=102, sigma_b=0.02,
         note="rsLoRA (alpha/sqrt(r)); rank_pattern and alpha_pattern with overlapping keys, a regex and a "
              "^-anchored key: the first key in file order (PEFT writes them sorted) whose "
              "re.match(r'(.*\\.)?(KEY)$', module) succeeds wins",
         config=dict(r=8, lora_alpha=16, use_rslora=True, target_modules=["q_proj", "v_proj", "o_proj"],
                     rank_pattern={r"^model\.layers\.2\.self_attn\.q_proj": 2, "layers.1.self_attn.o_proj": 16,
                                   "q_proj": 4},
                     alpha_pattern={r"layers\.3\..*_proj": 32, "v_proj": 8})),
    dict(name="llama-dora", base=LLAMA, seed=103, sigma_b=0.05,
         note="DoRA r=8 alpha=16 on q_proj (64x64) and v_proj (32x64, not square); magnitudes are the base "
              "row norms times (1 + 0.1 N(0,1)), so they differ from |W + delta|",
         config=dict(r=8, lora_alpha=16, use_dora=True, target_modules=["q_proj", "v_proj"])),
    dict(name="llama-embedding-lora", base=LLAMA, seed=104, sigma_b=0.1,
         note="LoRA on embed_tokens (lora_embedding_A/B) + modules_to_save=['lm_head'] with a perturbed copy; "
              "PEFT also saves the embedding layers (save_embedding_layers='auto'): see the manifest",
         config=dict(r=8, lora_alpha=16, target_modules=["embed_tokens"], modules_to_save=["lm_head"])),
    dict(name="llama-lora-second", base=LLAMA, seed=105, sigma_b=0.05,
         note="second plain adapter r=4 alpha=4 (scaling 1) on q_proj, k_proj, v_proj, for the weighted case "
              "with llama-rslora-patterns (q, v, o): q and v get both deltas, k and o one each",
         config=dict(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj"])),
    dict(name="gpt2-conv1d", base=GPT2, seed=106, sigma_b=0.05,
         note="GPT-2 Conv1D (weights stored [in, out]) with fan_in_fan_out=True; 'c_proj' matches both "
              "attn.c_proj and mlp.c_proj",
         config=dict(r=8, lora_alpha=16, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True)),
    dict(name="gpt2-lora-bias", base=GPT2, seed=107, sigma_b=0.05,
         note="lora_bias=True (lora_B has a bias) on GPT-2 c_attn of block 0 only (layers_to_transform=[0]), "
              "whose base has a bias; tiny-llama's linear layers have no bias, where PEFT cannot merge lora_bias "
              "(see findings)",
         config=dict(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True, lora_bias=True,
                     layers_to_transform=[0])),
]
ADAPTER_BY_NAME = {a["name"]: a for a in ADAPTERS}

# (case, base folder, base dtype, [(adapter, weight)]). weight None: PEFT's own merge_and_unload.
CASES = [
    ("llama-lora-all-linear-bf16", LLAMA, "bfloat16", [("llama-lora-all-linear", None)]),
    ("llama-rslora-patterns-bf16", LLAMA, "bfloat16", [("llama-rslora-patterns", None)]),
    ("llama-rslora-patterns-f32", LLAMA_F32, "float32", [("llama-rslora-patterns", None)]),
    ("llama-dora-bf16", LLAMA, "bfloat16", [("llama-dora", None)]),
    ("llama-dora-f32", LLAMA_F32, "float32", [("llama-dora", None)]),
    ("llama-embedding-lora-bf16", LLAMA, "bfloat16", [("llama-embedding-lora", None)]),
    ("llama-two-adapters-bf16", LLAMA, "bfloat16", [("llama-rslora-patterns", 0.7), ("llama-lora-second", 0.3)]),
    ("gpt2-conv1d-f32", GPT2, "float32", [("gpt2-conv1d", None)]),
    ("gpt2-lora-bias-f32", GPT2, "float32", [("gpt2-lora-bias", None)]),
]

REAL = [
    dict(name="gpt2-tigrinya-lora", arch="gpt2", dtype="float32",
         note="GPT-2 small (GPT2Config() defaults), Conv1D, fan_in_fan_out=True, F32 adapter"),
    dict(name="opt125m-dpo-lora", arch="opt", dtype="bfloat16",
         note="OPT-125m (OPTConfig() defaults = facebook/opt-125m's shapes), base in bfloat16, BF16 adapter"),
]


def tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def bits_hex(t: torch.Tensor) -> list[str]:
    t = t.detach().contiguous().reshape(-1)
    if t.dtype == torch.bfloat16:
        return [f"{v & 0xFFFF:04x}" for v in t.view(torch.int16).tolist()]
    return [f"{v & 0xFFFFFFFF:08x}" for v in t.view(torch.int32).tolist()]


def dtype_name(t: torch.Tensor) -> str:
    return {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[t.dtype]


def sanitize(text: str) -> str:
    """Warnings and errors may carry absolute paths; keep the committed files machine-independent."""
    for p, r in ((str(REPO.resolve()), "<repo>"), (str(SHARED_LORA.resolve()), "<shared>/assets/lora"),
                 (tempfile.gettempdir(), "<tmp>")):
        text = text.replace(p, r)
    return " ".join(text.split())


class Recorder:
    """Collects the warnings PEFT and transformers raise, as sanitized text (deprecation noise dropped)."""

    def __enter__(self):
        self._cm = warnings.catch_warnings(record=True)
        self._list = self._cm.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        return False

    @property
    def messages(self) -> list[str]:
        out = []
        for w in self._list:
            msg = sanitize(str(w.message))
            if "is_gradient_checkpointing" in msg:
                continue
            if msg not in out:
                out.append(msg)
        return out


def compact_json(obj, indent: int = 0) -> str:
    """json with indent 2, but lists of scalars on one line (shapes, indices, key lists)."""
    pad, pad2 = " " * indent, " " * (indent + 2)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        flat = json.dumps(obj, ensure_ascii=False)
        if len(flat) <= 400 and all(not isinstance(v, (dict, list)) or
                                    (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v))
                                    for v in obj.values()):
            return flat
        items = [f"{pad2}{json.dumps(k, ensure_ascii=False)}: {compact_json(v, indent + 2)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(pad2 + compact_json(v, indent + 2) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def base_path(out: Path, base: str) -> Path:
    return F32_DIR if base == LLAMA_F32 else out / base


def load_base(out: Path, base: str, dtype: str):
    return AutoModelForCausalLM.from_pretrained(base_path(out, base), dtype=TORCH_DTYPES[dtype])


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(path))


def header_of(path: Path) -> dict:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


# ---------------------------------------------------------------------------
# f32 copy of tiny-llama (1 MB: made in a temporary folder, not committed; tests widen tiny-llama the same way)


def make_f32_base(out: Path, dst: Path) -> dict:
    src = out / LLAMA
    tensors = read_checkpoint(src / "model.safetensors")
    wide = {k: v.to(torch.float32) for k, v in tensors.items()}  # bf16 -> f32 is exact
    safetensors.torch.save_file(wide, str(dst / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((src / "config.json").read_text())
    cfg["dtype"] = "float32"
    # transformers writes config.json with indent 2, sorted keys, and a trailing newline
    (dst / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return {"source": LLAMA, "committed": False, "tensors": len(wide),
            "note": "the *-f32 llama cases merge into tiny-llama with every tensor widened exactly from bfloat16 to "
                    "float32 (same names); config.json with dtype float32. Made in a temporary folder and not "
                    "committed (1 MB, fixtures/ budget): widen models/tiny-llama to get it back",
            "sha256_of_widened_model_safetensors": sha256_bytes((dst / "model.safetensors").read_bytes())}


# ---------------------------------------------------------------------------
# adapters


def perturb(pm, spec: dict) -> list[str]:
    """Overwrites every adapter parameter (sorted by name) from numpy's default_rng(seed):
    lora_A ~ U(-1/sqrt(in), 1/sqrt(in)); lora_B ~ N(0, sigma_b); lora_B bias ~ N(0, 0.02);
    lora_embedding_A/B ~ N(0, sigma_b); DoRA magnitude = |W row|_2 * (1 + 0.1 N(0,1));
    modules_to_save copy = W + N(0, 0.02) (rounded to its dtype)."""
    rng = np.random.default_rng(spec["seed"])
    sb = spec["sigma_b"]
    modules = dict(pm.named_modules())
    done = []
    with torch.no_grad():
        for name, p in sorted(pm.named_parameters()):
            if not p.requires_grad:
                continue
            shape = tuple(p.shape)
            if ".lora_A." in name:
                bound = 1.0 / math.sqrt(shape[1])
                v = rng.uniform(-bound, bound, shape)
            elif ".lora_B." in name and name.endswith(".bias"):
                v = rng.standard_normal(shape) * 0.02
            elif ".lora_B." in name:
                v = rng.standard_normal(shape) * sb
            elif ".lora_embedding_A." in name or ".lora_embedding_B." in name:
                v = rng.standard_normal(shape) * sb
            elif ".lora_magnitude_vector." in name:
                layer = modules[name.split(".lora_magnitude_vector.")[0]]
                w = layer.get_base_layer().weight.detach().to(torch.float64)
                if layer.fan_in_fan_out:
                    w = w.T
                v = w.norm(dim=1).numpy() * (1.0 + 0.1 * rng.standard_normal(shape))
            elif ".modules_to_save." in name:
                v = p.detach().to(torch.float64).numpy() + rng.standard_normal(shape) * 0.02
            else:
                sys.exit(f"error: unexpected trainable parameter {name}")
            p.copy_(torch.from_numpy(np.asarray(v, dtype=np.float32)).to(p.dtype))
            done.append(name)
    return done


def make_adapters(out: Path) -> dict:
    root = fc.fresh_dir(out / "lora" / "adapters")
    info = {}
    for spec in ADAPTERS:
        name = spec["name"]
        base_dtype = "bfloat16" if spec["base"] == LLAMA else "float32"
        model = load_base(out, spec["base"], base_dtype)
        cfg = LoraConfig(init_lora_weights=False, lora_dropout=0.0, task_type="CAUSAL_LM", **spec["config"])
        for pat in ("rank_pattern", "alpha_pattern"):
            keys = list(spec["config"].get(pat, {}))
            assert keys == sorted(keys), f"{name}: {pat} keys must be sorted (PEFT saves them sorted)"
        with Recorder() as rec_make:
            pm = get_peft_model(model, cfg)
        perturb(pm, spec)
        d = root / name
        d.mkdir()
        with tempfile.TemporaryDirectory() as tmp, Recorder() as rec_save:
            pm.save_pretrained(tmp)
            text = (Path(tmp) / "adapter_config.json").read_text()
            obj = json.loads(text)
            # PEFT writes json.dumps(indent=2, sort_keys=True) with no trailing newline; keep its bytes,
            # only make the base path repo-relative.
            assert json.dumps(obj, indent=2, sort_keys=True) == text, "PEFT's adapter_config.json format changed"
            obj["base_model_name_or_path"] = f"fixtures/{spec['base']}"
            # list(set) in hash order: sort, so the file does not depend on the interpreter's hashing
            if isinstance(obj.get("target_modules"), list):
                obj["target_modules"] = sorted(obj["target_modules"])
            (d / "adapter_config.json").write_text(json.dumps(obj, indent=2, sort_keys=True))
            shutil.copyfile(Path(tmp) / "adapter_model.safetensors", d / "adapter_model.safetensors")
            written = sorted(p.name for p in Path(tmp).iterdir())
        hdr = header_of(d / "adapter_model.safetensors")
        info[name] = {
            "path": f"lora/adapters/{name}",
            "created_on": spec["base"],
            "created_on_dtype": base_dtype,
            "seed": spec["seed"],
            "sigma_b": spec["sigma_b"],
            "note": spec["note"],
            "config": {k: obj[k] for k in ("r", "lora_alpha", "use_rslora", "use_dora", "fan_in_fan_out",
                                           "lora_bias", "target_modules", "modules_to_save", "rank_pattern",
                                           "alpha_pattern", "layers_to_transform")},
            "files_written_by_peft": written,
            "kept": ["adapter_config.json", "adapter_model.safetensors"],
            "config_edits": "base_model_name_or_path made repo-relative; target_modules sorted (PEFT writes "
                            "list(set), in hash order)",
            "tensor_count": len(hdr) - ("__metadata__" in hdr),
            "tensor_dtypes": sorted({v["dtype"] for k, v in hdr.items() if k != "__metadata__"}),
            "key_forms": sorted({".".join("N" if x.isdigit() else x for x in k.split("."))
                                 for k in hdr if k != "__metadata__"}),
            "metadata": hdr.get("__metadata__"),
            "peft_warnings_get_peft_model": rec_make.messages,
            "peft_warnings_save_pretrained": rec_save.messages,
        }
        log(f"  adapter {name}: {info[name]['tensor_count']} tensors, "
            f"{(d / 'adapter_model.safetensors').stat().st_size} bytes")
    return info


# ---------------------------------------------------------------------------
# reference merge (torch, every step explicit; what README.md describes)


def collect_modules(pm, adapter_names: list[str]) -> list[dict]:
    """Every module an adapter touches, with the tensors PEFT holds after loading."""
    mods = []
    for name, mod in pm.base_model.model.named_modules():
        if isinstance(mod, ModulesToSaveWrapper):
            for ad in adapter_names:
                if ad in mod.modules_to_save:
                    mods.append({"module": name, "kind": "modules_to_save", "adapter": ad,
                                 "tensors": {k: v.detach().clone() for k, v in mod.modules_to_save[ad].state_dict().items()}})
            continue
        if not isinstance(mod, LoraLayer):
            continue
        for ad in adapter_names:
            if ad in mod.lora_A:
                a = mod.lora_A[ad].weight.detach().clone()
                b = mod.lora_B[ad].weight.detach().clone()
                bias = mod.lora_B[ad].bias.detach().clone() if mod.lora_B[ad].bias is not None else None
                emb = False
            elif ad in mod.lora_embedding_A:
                a = mod.lora_embedding_A[ad].detach().clone()
                b = mod.lora_embedding_B[ad].detach().clone()
                bias, emb = None, True
            else:
                continue
            mag = None
            if ad in getattr(mod, "lora_magnitude_vector", {}):
                mag = mod.lora_magnitude_vector[ad].weight.detach().clone()
            fifo = bool(getattr(mod, "fan_in_fan_out", False)) and not emb
            kind = "embedding" if emb else ("dora" if mag is not None else ("conv1d" if fifo else "linear"))
            mods.append({"module": name, "kind": kind, "adapter": ad, "A": a, "B": b, "bias": bias,
                         "magnitude": mag, "fan_in_fan_out": fifo, "r": int(mod.r[ad]),
                         "lora_alpha": mod.lora_alpha[ad], "scaling": float(mod.scaling[ad]),
                         "use_rslora": bool(mod.use_rslora[ad]), "param_dtype": dtype_name(a),
                         "base_weight_in_peft": mod.get_base_layer().weight.detach().clone()})
    return mods


def ref_delta(m: dict, weight, f64: bool = False) -> torch.Tensor:
    """PEFT's get_delta_weight: (B @ A) in f32 (transposed for Conv1D and embeddings), times the
    scaling (a Python float, which torch rounds to f32 first), times the adapter weight if any."""
    a, b = m["A"].float(), m["B"].float()
    p = (b.double() @ a.double()).float() if f64 else b @ a
    if m["fan_in_fan_out"] or m["kind"] == "embedding":
        p = p.T
    d = p * m["scaling"]
    if weight is not None:
        d = d * weight
    return d


def ref_merge(mods: list[dict], ckpt: dict, weights: dict, dtype: torch.dtype, f64: bool = False) -> dict:
    """Returns {tensor name: (merged tensor in dtype, [f32 values that were rounded to dtype])}."""
    by_tensor: dict[str, list[dict]] = {}
    res = {}
    for m in mods:
        if m["kind"] == "modules_to_save":
            for k, v in m["tensors"].items():
                res[f"{m['module']}.{k}"] = (v.to(dtype), [])
            continue
        by_tensor.setdefault(f"{m['module']}.weight", []).append(m)
    for tname, ms in by_tensor.items():
        w = ckpt[tname]
        if len(ms) > 1 or weights[ms[0]["adapter"]] is not None:
            # weighted sum of several adapters: plain LoRA only
            assert all(m["kind"] in ("linear", "conv1d") for m in ms)
            acc = w.float()
            for m in ms:
                acc = acc + ref_delta(m, weights[m["adapter"]], f64)
            res[tname] = (acc.to(dtype), [acc])
            continue
        m = ms[0]
        d = ref_delta(m, None, f64)
        if m["kind"] in ("linear", "conv1d"):
            pre = w.float() + d  # torch: bf16 += f32 computes in f32, rounds once
            res[tname] = (pre.to(dtype), [pre])
        elif m["kind"] == "embedding":
            dq = d.to(dtype)  # Embedding.merge rounds the delta to the base dtype first
            pre = w.float() + dq.float()
            # only the delta's rounding can depend on summation order: the sum of two bf16 values is
            # computed exactly the same way by anyone (f32 add, then round)
            res[tname] = (pre.to(dtype), [d])
        elif m["kind"] == "dora":
            wf = w.float()
            wt, dt = (wf.T, d.T) if m["fan_in_fan_out"] else (wf, d)
            norm = torch.linalg.norm(wt + dt, dim=1)  # f32, per output feature
            factor = (m["magnitude"].float() / norm).view(-1, 1)
            if m["fan_in_fan_out"]:
                factor = factor.T
            pre = factor * (wf + d)
            res[tname] = (pre.to(dtype), [pre])
        if m["bias"] is not None:
            bname = f"{m['module']}.bias"
            pre = ckpt[bname].float() + m["bias"].float() * m["scaling"]
            res[bname] = (pre.to(dtype), [pre])
    return res


def fragile(pres: list[torch.Tensor], dtype: torch.dtype) -> list[int]:
    """Flat indices whose rounding to dtype changes when the f32 value before any of its roundings
    moves by up to FRAGILE_ULPS ulps (what a different summation order could do)."""
    if dtype == torch.float32:
        return []
    flags = None
    for pre in pres:
        x = pre.detach().contiguous().reshape(-1).numpy().astype(np.float32)
        ref = torch.from_numpy(x).to(dtype).view(torch.int16).numpy()
        f = np.zeros(x.size, dtype=bool)
        up, dn = x.copy(), x.copy()
        for _ in range(FRAGILE_ULPS):
            up = np.nextafter(up, np.float32(np.inf))
            dn = np.nextafter(dn, np.float32(-np.inf))
            for y in (up, dn):
                f |= torch.from_numpy(y).to(dtype).view(torch.int16).numpy() != ref
        flags = f if flags is None else flags | f
    if flags is None:  # nothing rounded (a modules_to_save copy)
        return []
    return [int(i) for i in np.nonzero(flags)[0]]


def module_record(m: dict, tensor_names: list[str]) -> dict:
    if m["kind"] == "modules_to_save":
        return {"module": m["module"], "adapter": m["adapter"], "kind": "modules_to_save",
                "tensors": [f"{m['module']}.{k}" for k in m["tensors"]]}
    rec = {"module": m["module"], "adapter": m["adapter"], "kind": m["kind"], "tensors": tensor_names,
           "r": m["r"], "lora_alpha": m["lora_alpha"], "use_rslora": m["use_rslora"],
           "scaling": m["scaling"], "scaling_f32_hex": f32_hex(m["scaling"]),
           "fan_in_fan_out": m["fan_in_fan_out"], "A_shape": list(m["A"].shape), "B_shape": list(m["B"].shape),
           "adapter_param_dtype_after_load": m["param_dtype"]}
    if m["magnitude"] is not None:
        rec["magnitude_shape"] = list(m["magnitude"].shape)
    if m["bias"] is not None:
        rec["lora_B_bias_shape"] = list(m["bias"].shape)
    return rec


# ---------------------------------------------------------------------------
# goldens on the fixture models


def make_case(out: Path, case, adapters_info: dict) -> tuple[dict, dict]:
    cname, base, dtype_s, ads = case
    dtype = TORCH_DTYPES[dtype_s]
    ckpt = read_checkpoint(base_path(out, base) / "model.safetensors")
    model = load_base(out, base, dtype_s)
    names = [a for a, _ in ads]
    weighted = ads[0][1] is not None
    with Recorder() as rec:
        if not weighted:
            pm = PeftModel.from_pretrained(model, out / "lora" / "adapters" / names[0])
            peft_names = ["default"]
        else:
            pm = PeftModel.from_pretrained(model, out / "lora" / "adapters" / names[0], adapter_name=names[0])
            for n in names[1:]:
                pm.load_adapter(out / "lora" / "adapters" / n, adapter_name=n)
            peft_names = names
    mods = collect_modules(pm, peft_names)
    for m in mods:
        if m["kind"] != "modules_to_save":
            # the weights PEFT merged into are the checkpoint's (an adapter could override them, see findings)
            assert torch.equal(m["base_weight_in_peft"], ckpt[f"{m['module']}.weight"].to(dtype)), m["module"]
    wmap = {pn: w for pn, (_, w) in zip(peft_names, ads)}
    ref = ref_merge(mods, ckpt, wmap, dtype)
    alt = ref_merge(mods, ckpt, wmap, dtype, f64=True)

    if not weighted:
        method = "PeftModel.from_pretrained(base, adapter).merge_and_unload()"
        with Recorder() as rec_merge:
            merged = pm.merge_and_unload().state_dict()
        golden = {}
        for name, t in ckpt.items():
            if name in ref or not torch.equal(merged[name], t.to(dtype)):
                golden[name] = merged[name].detach().clone().contiguous()
        extra = sorted(set(golden) - set(ref))
        if extra:
            sys.exit(f"error: {cname}: PEFT changed tensors the reference does not touch: {extra}")
    else:
        method = ("definition: W + sum_i w_i * delta_i, delta_i = PEFT's own LoraLayer.get_delta_weight(adapter_i) "
                  "(f32), accumulated in f32 in adapter order as acc = acc + delta_i * w_i, rounded once to the base dtype")
        rec_merge = rec
        golden = {}
        layers = {n: mod for n, mod in pm.base_model.model.named_modules() if isinstance(mod, LoraLayer)}
        for name, mod in layers.items():
            acc = ckpt[f"{name}.weight"].float()
            for pn, w in wmap.items():
                if pn in mod.lora_A:
                    acc = acc + mod.get_delta_weight(pn) * w
            golden[f"{name}.weight"] = acc.to(dtype).contiguous()

    for name, (t, _) in ref.items():
        if name not in golden or tensor_bytes(golden[name]) != tensor_bytes(t):
            sys.exit(f"error: {cname}: {name}: the reference implementation disagrees with PEFT")

    frag = {}
    alt_mismatch = {}
    for name, (t, pres) in ref.items():
        idx = fragile(pres, dtype)
        if idx:
            frag[name] = {"count": len(idx), "indices": idx[:FRAGILE_LIST_MAX]}
        diff = int((t.reshape(-1).view(torch.int16 if dtype == torch.bfloat16 else torch.int32)
                    != alt[name][0].reshape(-1).view(torch.int16 if dtype == torch.bfloat16 else torch.int32)).sum())
        if diff:
            alt_mismatch[name] = diff

    gpath = out / "lora" / "goldens" / f"{cname}.safetensors"
    safetensors.torch.save_file(dict(sorted(golden.items())), str(gpath), metadata={"format": "pt"})

    tensors_of = {}
    for name in golden:
        tensors_of.setdefault(name.rsplit(".", 1)[0], []).append(name)
    changed = {name: not torch.equal(golden[name], ckpt[name].to(dtype)) for name in golden}
    entry = {
        "case": cname,
        "golden": f"lora/goldens/{cname}.safetensors",
        "base": LLAMA if base == LLAMA_F32 else base,
        "base_dtype": dtype_s,
        "base_widened_to_f32": base == LLAMA_F32,
        "adapters": [{"name": n, "path": adapters_info[n]["path"], "weight": 1.0 if w is None else w}
                     for n, w in ads],
        "method": method,
        "tensors": sorted(golden),
        "tensors_unchanged_by_merge": sorted(n for n, c in changed.items() if not c),
        "elements": sum(t.numel() for t in golden.values()),
        "modules": [module_record(m, sorted(tensors_of.get(m["module"], []))) for m in mods],
        "bf16_fragile": {"within_f32_ulps": FRAGILE_ULPS, "count": sum(v["count"] for v in frag.values()),
                         "by_tensor": frag} if dtype == torch.bfloat16 else None,
        "mismatches_if_BA_summed_exactly": {"count": sum(alt_mismatch.values()), "by_tensor": alt_mismatch},
        "peft_warnings": rec.messages + [m for m in rec_merge.messages if m not in rec.messages],
    }
    return entry, golden


# ---------------------------------------------------------------------------
# real adapters on generated bases

GAMMA = 0x9E3779B97F4A7C15
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def fnv1a64(s: str) -> int:
    h = FNV_OFFSET
    for byte in s.encode("utf-8"):
        h ^= byte
        h = (h * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def splitmix_values(seed: int, n: int) -> np.ndarray:
    """value_k = f32(((z_k >> 40) / 2^24 - 0.5) * 0.1), z_k = mix(seed + (k+1) * GAMMA mod 2^64), in f64."""
    k = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (k + np.uint64(1)) * np.uint64(GAMMA)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64)
    return ((u / 16777216.0 - 0.5) * 0.1).astype(np.float32)


def splitmix_selfcheck() -> dict:
    """Scalar Python (exact integers) against the vectorised numpy version."""
    seed = fnv1a64("transformer.h.0.attn.c_attn.weight")
    scalar = []
    for k in range(8):
        z = (seed + (k + 1) * GAMMA) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        z ^= z >> 31
        scalar.append(float(np.float32(((z >> 40) / 16777216.0 - 0.5) * 0.1)))
    vec = [float(v) for v in splitmix_values(seed, 8)]
    assert scalar == vec, (scalar, vec)
    return {"name": "transformer.h.0.attn.c_attn.weight", "seed_hex": f"{seed:016x}",
            "first_8_values": vec, "first_8_f32_hex": [f32_hex(v) for v in vec],
            "fnv1a64_of_empty_string_hex": f"{fnv1a64(''):016x}", "fnv1a64_of_a_hex": f"{fnv1a64('a'):016x}"}


def sample_positions(n: int) -> list[int]:
    return [((2 * j + 1) * n) // (2 * N_SAMPLES) for j in range(N_SAMPLES)]


def real_model(arch: str, dtype: torch.dtype):
    with torch.device("meta"):
        model = GPT2LMHeadModel(GPT2Config()) if arch == "gpt2" else OPTForCausalLM(OPTConfig())
    model = model.to_empty(device="cpu")
    model.tie_weights()  # to_empty gives tied parameters separate storage; tie them again, as from_pretrained does
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    model.eval()
    return model.to(dtype)


def make_real(out: Path, spec: dict, summaries_out: dict) -> dict:
    name = spec["name"]
    adir = SHARED_LORA / name
    dtype = TORCH_DTYPES[spec["dtype"]]
    cfg = json.loads((adir / "adapter_config.json").read_text())
    hdr = header_of(adir / "adapter_model.safetensors")
    keys = sorted(k for k in hdr if k != "__metadata__")
    prefix = "base_model.model."
    modules = sorted({k[len(prefix):].rsplit(".lora_", 1)[0] for k in keys if k.startswith(prefix)})
    targets = [f"{m}.weight" for m in modules]

    model = real_model(spec["arch"], dtype)
    sd = model.state_dict()
    gen, base_info = {}, {}
    for t in targets:
        shape = tuple(sd[t].shape)
        seed = fnv1a64(t)
        v = torch.from_numpy(splitmix_values(seed, int(np.prod(shape))).reshape(shape)).to(dtype)
        gen[t] = v
        base_info[t] = {"shape": list(shape), "dtype": spec["dtype"], "seed_hex": f"{seed:016x}",
                        "sha256": sha256_bytes(tensor_bytes(v))}

    def fresh():
        m = real_model(spec["arch"], dtype)
        with torch.no_grad():
            s = m.state_dict()
            for t, v in gen.items():
                s[t].copy_(v)
        return m

    with Recorder() as rec:
        pm = PeftModel.from_pretrained(fresh(), adir)
    # load again through set_peft_model_state_dict to see PEFT's own missing/unexpected bookkeeping
    res = set_peft_model_state_dict(pm, load_peft_weights(str(adir)), adapter_name="default")
    mods = collect_modules(pm, ["default"])
    ref = ref_merge(mods, gen, {"default": None}, dtype)
    alt = ref_merge(mods, gen, {"default": None}, dtype, f64=True)
    with Recorder() as rec_merge:
        merged = pm.merge_and_unload().state_dict()
    samples = {}
    rows = []
    frag_total = 0
    for t in targets:
        mt = merged[t].detach().contiguous()
        if tensor_bytes(mt) != tensor_bytes(ref[t][0]):
            sys.exit(f"error: {name}: {t}: the reference implementation disagrees with PEFT")
        flat = mt.reshape(-1)
        pos = torch.tensor(sample_positions(flat.numel()))
        samples[t] = flat[pos].contiguous()
        x = mt.double().numpy()
        fr = fragile(ref[t][1], dtype)
        frag_total += len(fr)
        ivt = torch.int16 if dtype == torch.bfloat16 else torch.int32
        m = next(mm for mm in mods if f"{mm['module']}.weight" == t)
        rows.append({
            "tensor": t, **base_info[t],
            "merged_sha256": sha256_bytes(tensor_bytes(mt)),
            "merged_sum": float(np.sum(x)), "merged_sum_of_squares": float(np.sum(x * x)),
            "changed_elements": int((mt.reshape(-1).view(ivt) != gen[t].reshape(-1).view(ivt)).sum()),
            "module": m["module"], "r": m["r"], "lora_alpha": m["lora_alpha"], "scaling": m["scaling"],
            "fan_in_fan_out": m["fan_in_fan_out"],
            "bf16_fragile": len(fr) if dtype == torch.bfloat16 else None,
            "mismatches_if_BA_summed_exactly": int((mt.reshape(-1).view(ivt) != alt[t][0].reshape(-1).view(ivt)).sum()),
        })
    safetensors.torch.save_file(dict(sorted(samples.items())),
                                str(out / "lora" / "goldens" / f"real-{name}.safetensors"), metadata={"format": "pt"})

    behaviour = {
        "all_keys_start_with_base_model_model": all(k.startswith(prefix) for k in keys),
        "key_suffixes": sorted({"lora_" + k.rsplit(".lora_", 1)[1] for k in keys}),
        "adapter_tensor_dtypes": sorted({hdr[k]["dtype"] for k in keys}),
        "adapter_param_dtype_after_load": sorted({m["param_dtype"] for m in mods}),
        "unexpected_keys": sorted(res.unexpected_keys),
        "missing_adapter_keys": sorted(k for k in res.missing_keys if "lora_" in k),
        "warnings": rec.messages + rec_merge.messages,
    }
    if dtype != torch.float32:
        with Recorder():
            pm2 = PeftModel.from_pretrained(fresh(), adir, autocast_adapter_dtype=False)
            merged2 = pm2.merge_and_unload().state_dict()
        ivt = torch.int16
        behaviour["autocast_adapter_dtype_false"] = {
            "adapter_param_dtype_after_load": "bfloat16",
            "merged_elements_differing_from_default": sum(
                int((merged2[t].reshape(-1).view(ivt) != merged[t].reshape(-1).view(ivt)).sum()) for t in targets),
            "note": "with autocast_adapter_dtype=False, lora_A/B stay bf16, get_delta_weight computes B@A in f32, "
                    "rounds the delta to bf16, and bf16 += bf16 rounds again; the default (True) upcasts A/B "
                    "to f32 at load and rounds once",
        }
    summaries_out[name] = {
        "adapter": f"../shared/assets/lora/{name}",
        "adapter_files_sha256": {f: sha256_bytes((adir / f).read_bytes()) for f in
                                 ("adapter_config.json", "adapter_model.safetensors")},
        "note": spec["note"],
        "base_model_name_or_path": cfg.get("base_model_name_or_path"),
        "peft_version_in_config": cfg.get("peft_version"),
        "config": {k: cfg.get(k) for k in ("r", "lora_alpha", "use_rslora", "use_dora", "fan_in_fan_out",
                                           "lora_bias", "target_modules", "modules_to_save", "rank_pattern",
                                           "alpha_pattern", "bias", "lora_dropout")},
        "model": ("GPT2LMHeadModel(GPT2Config())" if spec["arch"] == "gpt2" else "OPTForCausalLM(OPTConfig())")
                 + f", all parameters zero, then the generated tensors; dtype {spec['dtype']}",
        "base_dtype": spec["dtype"],
        "merged_dtype": spec["dtype"],
        "samples_file": f"lora/goldens/real-{name}.safetensors",
        "samples_layout": f"'<tensor>' = merged values, {spec['dtype']} [{N_SAMPLES}], at flat row-major positions "
                          f"((2j+1)*n) div {2 * N_SAMPLES}, j = 0..{N_SAMPLES - 1}",
        "method": "PeftModel.from_pretrained(model, adapter).merge_and_unload() (autocast_adapter_dtype=True, the default)",
        "bf16_fragile_total": frag_total if dtype == torch.bfloat16 else None,
        "peft_behaviour": behaviour,
        "tensors": rows,
    }
    log(f"  real {name}: {len(targets)} tensors merged")
    return summaries_out[name]


# ---------------------------------------------------------------------------
# measured PEFT behaviour (small experiments on the fixture models; nothing of them is committed
# except these findings)


def first_line(e: BaseException) -> str:
    """The exception's first two lines (torch puts the useful part of load errors on the second)."""
    text = " ".join(str(e).strip().splitlines()[:2])
    return sanitize(f"{type(e).__name__}: {text}")[:400]


def findings(out: Path) -> dict:
    f = {}
    lora_dir = out / "lora" / "adapters"

    # torch's scalar multiply: a Python float is rounded to f32 first
    p = torch.from_numpy(np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32))
    s = 16 / math.sqrt(8)
    f["scalar_multiply"] = {
        "tensor_f32_times_python_float_equals_times_f32_scalar": bool(torch.equal(p * s, p * torch.tensor(s, dtype=torch.float32))),
        "equals_f64_product_rounded": bool(torch.equal(p * s, (p.double() * s).float())),
    }

    # rank_pattern: first match in dict order; PEFT saves the config with sorted keys
    with Recorder(), tempfile.TemporaryDirectory() as tmp:
        m = load_base(out, LLAMA, "bfloat16")
        cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj"], init_lora_weights=False, task_type="CAUSAL_LM",
                         rank_pattern={"q_proj": 4, "model.layers.2.self_attn.q_proj": 2})
        pm = get_peft_model(m, cfg)
        r_created = int(pm.base_model.model.model.layers[2].self_attn.q_proj.r["default"])
        pm.save_pretrained(tmp)
        saved_order = list(json.loads((Path(tmp) / "adapter_config.json").read_text())["rank_pattern"])
        try:
            PeftModel.from_pretrained(load_base(out, LLAMA, "bfloat16"), tmp)
            reload = "loaded"
        except Exception as e:  # noqa: BLE001
            reload = first_line(e)
    f["rank_pattern_order"] = {
        "given": {"q_proj": 4, "model.layers.2.self_attn.q_proj": 2},
        "r_of_layers.2.q_proj_when_created": r_created,
        "key_order_in_saved_adapter_config": saved_order,
        "reload_from_saved_folder": reload,
        "conclusion": "get_pattern_key returns the first matching key in iteration order; at load time that is the "
                      "order in adapter_config.json, which PEFT writes with sort_keys=True. Match in file order.",
    }

    # lora_bias where the base layer has no bias (tiny-llama)
    with Recorder() as rec:
        m = load_base(out, LLAMA, "bfloat16")
        pm = get_peft_model(m, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], lora_bias=True,
                                          init_lora_weights=False, task_type="CAUSAL_LM"))
        try:
            pm.merge_and_unload()
            merge = "merged"
        except Exception as e:  # noqa: BLE001
            merge = first_line(e)
    f["lora_bias_without_base_bias"] = {"warnings": rec.messages, "merge_and_unload": merge}

    # embedding adapters carry the embedding layers; does the saved base_layer copy override the base?
    with Recorder(), tempfile.TemporaryDirectory() as tmp:
        src = lora_dir / "llama-embedding-lora"
        shutil.copyfile(src / "adapter_config.json", Path(tmp) / "adapter_config.json")
        sd = safetensors.torch.load_file(str(src / "adapter_model.safetensors"))
        key = "base_model.model.model.embed_tokens.base_layer.weight"
        sd[key] = (sd[key].float() + 0.5).to(sd[key].dtype)
        safetensors.torch.save_file(sd, str(Path(tmp) / "adapter_model.safetensors"), metadata={"format": "pt"})
        m = load_base(out, LLAMA, "bfloat16")
        base_embed = m.model.embed_tokens.weight.detach().clone()
        pm = PeftModel.from_pretrained(m, tmp)
        emb = pm.base_model.model.model.embed_tokens
        used = torch.equal(emb.base_layer.weight.detach(), sd[key])
        d = emb.get_delta_weight("default").to(torch.bfloat16)
        expect_copy = (sd[key].float() + d.float()).to(torch.bfloat16)
        expect_ckpt = (base_embed.float() + d.float()).to(torch.bfloat16)
        merged = pm.merge_and_unload().model.embed_tokens.weight.detach()
    f["embedding_base_layer_key"] = {
        "adapter_keys": ["base_model.model.model.embed_tokens.base_layer.weight", "base_model.model.lm_head.weight"],
        "why": "save_pretrained(save_embedding_layers='auto') saves the input and output embedding layers whenever "
               "target_modules names one of EMBEDDING_LAYER_NAMES = ['embed_tokens', 'lm_head']; lm_head.weight is "
               "the modules_to_save copy (the same key modules_to_save uses)",
        "experiment": "base_layer.weight in the adapter replaced by base + 0.5",
        "peft_loads_it_into_the_base_layer": bool(used),
        "merged_equals_copy_plus_delta": bool(torch.equal(merged, expect_copy)),
        "merged_equals_checkpoint_embedding_plus_delta": bool(torch.equal(merged, expect_ckpt)),
        "in_committed_adapter": "equal, byte for byte, to fixtures/models/tiny-llama's model.embed_tokens.weight",
    }

    # tied embeddings: LoRA on GPT-2's wte, and modules_to_save on its tied lm_head
    with Recorder() as rec, tempfile.TemporaryDirectory() as tmp:
        m = load_base(out, GPT2, "float32")
        pm = get_peft_model(m, LoraConfig(r=4, lora_alpha=8, target_modules=["wte"], init_lora_weights=False,
                                          task_type="CAUSAL_LM"))
        pm.save_pretrained(tmp)
        wte_keys = sorted(k for k in header_of(Path(tmp) / "adapter_model.safetensors") if k != "__metadata__")
        w0 = m.transformer.wte.weight.detach().clone()
        mm = pm.merge_and_unload()
        tied_wte = {
            "adapter_keys": wte_keys,
            "lm_head_shares_storage_with_wte_after_merge": mm.lm_head.weight.data_ptr() == mm.transformer.wte.weight.data_ptr(),
            "wte_changed": bool(not torch.equal(w0, mm.transformer.wte.weight)),
            "config_tie_word_embeddings_after_merge": bool(mm.config.tie_word_embeddings),
            "warnings": rec.messages,
        }
    with Recorder() as rec, tempfile.TemporaryDirectory() as tmp:
        m = load_base(out, GPT2, "float32")
        pm = get_peft_model(m, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True,
                                          modules_to_save=["lm_head"], init_lora_weights=False, task_type="CAUSAL_LM"))
        with torch.no_grad():
            pm.base_model.model.lm_head.modules_to_save["default"].weight.add_(0.01)
        pm.save_pretrained(tmp)
        mts_keys = sorted(k for k in header_of(Path(tmp) / "adapter_model.safetensors")
                          if k != "__metadata__" and "lora_" not in k)
        mm = pm.merge_and_unload()
        tied_mts = {
            "adapter_non_lora_keys": mts_keys,
            "lm_head_shares_storage_with_wte_after_merge": mm.lm_head.weight.data_ptr() == mm.transformer.wte.weight.data_ptr(),
            "lm_head_equals_wte_after_merge": bool(torch.equal(mm.lm_head.weight, mm.transformer.wte.weight)),
            "config_tie_word_embeddings_after_merge": bool(mm.config.tie_word_embeddings),
            "warnings": rec.messages,
        }
    f["tied_embeddings_gpt2"] = {"lora_on_wte": tied_wte, "modules_to_save_lm_head": tied_mts}

    # safe_merge=True rounds the delta to bf16 before adding (double rounding)
    with Recorder():
        m = load_base(out, LLAMA, "bfloat16")
        a = PeftModel.from_pretrained(m, lora_dir / "llama-lora-all-linear").merge_and_unload().state_dict()
        m = load_base(out, LLAMA, "bfloat16")
        b = PeftModel.from_pretrained(m, lora_dir / "llama-lora-all-linear").merge_and_unload(safe_merge=True).state_dict()
    f["safe_merge_bf16"] = {
        "case": "llama-lora-all-linear on bf16 tiny-llama",
        "elements_differing_from_default_merge": sum(int((a[k].view(torch.int16) != b[k].view(torch.int16)).sum())
                                                     for k in a if k.endswith("_proj.weight")),
        "note": "merge_and_unload(safe_merge=True) does orig_weight += delta.to(bf16); the default "
                "(safe_merge=False) does weight.data += delta (f32), rounding once. The goldens use the default.",
    }

    # add_weighted_adapter against the definition base + 0.7 delta_a + 0.3 delta_b
    wa = {}
    for dt_s, base in (("float32", LLAMA_F32), ("bfloat16", LLAMA)):
        dt = TORCH_DTYPES[dt_s]
        with Recorder():
            m = load_base(out, base, dt_s)
            pm = PeftModel.from_pretrained(m, lora_dir / "llama-lora-all-linear", adapter_name="a")
            pm.load_adapter(lora_dir / "llama-lora-second", adapter_name="b")
            layers = {n: mod for n, mod in pm.base_model.model.named_modules() if isinstance(mod, LoraLayer)}
            gold = {}
            for n, mod in layers.items():
                acc = mod.get_base_layer().weight.detach().float()
                for ad, w in (("a", 0.7), ("b", 0.3)):
                    if ad in mod.lora_A:
                        acc = acc + mod.get_delta_weight(ad) * w
                gold[n + ".weight"] = acc.to(dt)
            try:
                pm.add_weighted_adapter(["a", "b"], [0.7, 0.3], "lin", combination_type="linear")
                lin = "accepted"
            except Exception as e:  # noqa: BLE001
                lin = first_line(e)
            pm.add_weighted_adapter(["a", "b"], [0.7, 0.3], "cat", combination_type="cat")
            cat_dtype = dtype_name(pm.base_model.model.model.layers[0].self_attn.q_proj.lora_A["cat"].weight)
            pm.set_adapter("cat")
            sd = pm.merge_and_unload(adapter_names=["cat"]).state_dict()
        diff = sum(int((sd[k] != g).sum()) for k, g in gold.items())
        rel = max(float(((sd[k].float() - g.float()).abs() / g.float().abs().clamp_min(1e-3)).max()) for k, g in gold.items())
        wa[dt_s] = {"combination_type_linear": lin, "cat_adapter_param_dtype": cat_dtype,
                    "cat_elements_differing_from_definition": diff, "cat_max_relative_difference": rel}
    f["add_weighted_adapter"] = wa | {
        "conclusion": "combination_type='cat' is base + sum w_i delta_i only up to rounding (it stacks "
                      "w_i*scaling_i*A_i and puts the B_i side by side); on a bf16 base its new A/B are created in bf16, which "
                      "changes results far beyond rounding. 'linear' needs equal ranks and sums A's and B's "
                      "(cross terms). The weighted goldens therefore use the definition with PEFT's get_delta_weight."}
    return f


# ---------------------------------------------------------------------------
# README


def make_readme(out: Path, manifest: dict):
    P = peft
    L = "tuners/lora/layer.py"
    c = {
        "cast": cite(P, L, 'cast_to_fp32 = device.type == "cpu"'),
        "delta": cite(P, L, "output_tensor = transpose(weight_B @ weight_A, self.fan_in_fan_out) * self.scaling[adapter]"),
        "castback": cite(P, L, "output_tensor = output_tensor.to(dtype=dtype)"),
        "merge_unsafe": cite(P, L, "base_layer.weight.data += delta_weight"),
        "merge_safe": cite(P, L, "orig_weight += delta_weight.to(orig_dtype)"),
        "rs": cite(P, L, "self.scaling[adapter_name] = lora_alpha / math.sqrt(r)"),
        "plain": cite(P, L, "self.scaling[adapter_name] = lora_alpha / r"),
        "A_shape": cite(P, L, "self.lora_A[adapter_name] = nn.Linear(self.in_features, r, bias=False)"),
        "B_shape": cite(P, L, "self.lora_B[adapter_name] = nn.Linear(r, self.out_features, bias=lora_bias)"),
        "bias_merge": cite(P, L, "base_layer.bias.data += self.lora_B[active_adapter].bias * self.scaling[active_adapter]"),
        "bias_err": cite(P, L, "Impossible to merge LoRA with `lora_bias=True`", 2),
        "bias_warn": cite(P, L, 'if lora_bias and (getattr(self.get_base_layer(), "bias", None) is None):'),
        "emb_shapes": cite(P, L, "weight_A = torch.randn((r, self.in_features))"),
        "emb_merge": cite(P, L, "base_layer.weight.data += self.get_delta_weight(active_adapter).to(orig_dtype)"),
        "emb_delta": cite(P, L, "output_tensor = transpose(weight_B @ weight_A, True) * self.scaling[adapter]"),
        "emb_nobias": cite(P, L, 'raise ValueError(f"lora_bias={lora_bias} is not supported for {self.__class__.__name__}.")'),
        "dora_norm_sum": cite(P, "tuners/lora/dora.py", "weight = weight + scaling * lora_weight"),
        "dora_norm": cite(P, "tuners/lora/dora.py", "weight_norm = torch.linalg.norm(weight, dim=1).to(weight.dtype)"),
        "dora_transpose": cite(P, "tuners/lora/dora.py", "weight = transpose(weight, self.fan_in_fan_out)"),
        "dora_call": cite(P, "tuners/lora/variants.py",
                          ".get_weight_norm(base_weight, transpose(delta_weight, module.fan_in_fan_out), scaling=1)", 2),
        "dora_detach": cite(P, "tuners/lora/variants.py", ".detach()", 2),
        "dora_factor": cite(P, "tuners/lora/variants.py",
                            "dora_factor = module.lora_magnitude_vector[active_adapter].weight / weight_norm", 2),
        "dora_new": cite(P, "tuners/lora/variants.py", "new_weight = dora_factor * (orig_weight.data + delta_weight)"),
        "dora_unmerged": cite(P, L, "def _unmerged_base_weight(self, safe_merge: bool = False):"),
        "dora_key": cite(P, "tuners/lora/model.py", 'if k.endswith("lora_magnitude_vector"):'),
        "pattern": cite(P, "utils/other.py", 'match = re.match(rf"(.*\\.)?({key})$", key_to_match)'),
        "pattern_use": cite(P, "tuners/lora/model.py", "r_key = get_pattern_key(lora_config.rank_pattern.keys(), current_key)"),
        "sorted": cite(P, "config.py", "writer.write(json.dumps(output_dict, indent=2, sort_keys=True))"),
        "transpose": cite(P, "utils/other.py", "def transpose(weight: torch.Tensor, fan_in_fan_out: bool)"),
        "mts_save": cite(P, "utils/other.py", 'k: state_dict[f"modules_to_save.{adapter_name}.{k}"]'),
        "emb_save": cite(P, "utils/save_and_load.py", "to_return.update({k: v for k, v in state_dict.items() if k.startswith(embedding_prefix)})"),
        "emb_names": cite(P, "utils/constants.py", "EMBEDDING_LAYER_NAMES = "),
        "mau": cite(P, "tuners/tuners_utils.py", "self, progressbar: bool = False, safe_merge: bool = False, adapter_names"),
        "autocast": cite(P, "tuners/tuners_utils.py", "dtypes_to_convert_to_fp32 = {torch.float16, torch.bfloat16}"),
        "autocast_default": cite(P, "peft_model.py", "autocast_adapter_dtype: bool = True,", 2),
        "move": cite(P, "tuners/tuners_utils.py", "adapter_layer[adapter_name] = item.to(target_device, dtype=target_dtype)"),
        "tie_cfg": cite(P, "tuners/tuners_utils.py", 'if model_config.get("tie_word_embeddings"):'),
        "cat": cite(P, "tuners/lora/model.py", 'loras_A.append(current_adapter_lora_A.data * weight * target.scaling[adapter])'),
    }
    fnd = manifest["findings"]
    ad = manifest["adapters"]
    cases = manifest["cases"]
    real = manifest["real_adapters"]
    gen = manifest["generator"]
    sizes = {}
    for p in sorted((out / "lora").rglob("*")):
        if p.is_file() and p.name != "README.md":
            sizes[p.relative_to(out / "lora").as_posix()] = p.stat().st_size
    total = sum(sizes.values())

    case_rows = "\n".join(
        f"| `{e['case']}` | `{e['base']}` {e['base_dtype']}{' (widened)' if e['base_widened_to_f32'] else ''} | "
        + " + ".join(f"`{a['name']}`" + ("" if a["weight"] == 1.0 else f" × {a['weight']}") for a in e["adapters"])
        + f" | {len(e['tensors'])} | {e['elements']:,} | "
        + (str(e["bf16_fragile"]["count"]) if e["bf16_fragile"] else "–")
        + f" | {e['mismatches_if_BA_summed_exactly']['count']} |"
        for e in cases)
    adapter_rows = "\n".join(
        f"| `{n}` | `{a['created_on']}` | {a['note']} | {sizes.get('adapters/' + n + '/adapter_model.safetensors', 0):,} |"
        for n, a in ad.items())
    real_rows = "\n".join(
        f"| `{n}` | {r['base_dtype']} | {len(r['tensors'])} | "
        f"{r['bf16_fragile_total'] if r['bf16_fragile_total'] is not None else '–'} | "
        f"{sum(t['mismatches_if_BA_summed_exactly'] for t in r['tensors'])} |"
        for n, r in real.items())
    opt = real["opt125m-dpo-lora"]["peft_behaviour"]
    rp = fnd["rank_pattern_order"]
    tw = fnd["tied_embeddings_gpt2"]
    wa = fnd["add_weighted_adapter"]
    eb = fnd["embedding_base_layer_key"]
    text = f"""\
# LoRA merge goldens

Made by `tools/make_lora_goldens.py` (run by `tools/make_fixtures.sh`) with peft {peft.__version__},
torch {torch.__version__.split('+')[0]}, transformers {transformers.__version__}, safetensors
{safetensors.__version__}, on CPU, one thread, `ATEN_CPU_CAPABILITY=avx2`. Every golden was also
recomputed by the torch reference in that script (`ref_merge`, `ref_delta`), which is this page in
executable form: they agree on every byte. Paths in `goldens/manifest.json` are relative to
`fixtures/`. Line numbers below are of the installed peft {peft.__version__} sources.

## Files ({total:,} bytes)

| adapter (`adapters/<name>/`) | made on | what | adapter_model.safetensors bytes |
|---|---|---|---|
{adapter_rows}

Each adapter folder holds exactly what `save_pretrained` wrote, minus PEFT's `README.md` model card;
`base_model_name_or_path` is rewritten from the absolute path to `fixtures/models/...`. Every adapter
was made with `init_lora_weights=False` and then every adapter parameter was overwritten from
`numpy.random.default_rng(seed)` (`perturb()` in the script), so every delta is non-zero. The
adapter tensors are F32 (PEFT upcasts LoRA parameters to f32 even on a bf16 base, {c['autocast']});
the `modules_to_save` copy and the saved embedding layers are in the base dtype (BF16).

The `*-f32` llama cases merge into `models/tiny-llama` with every tensor widened exactly to F32
(bf16 → f32 is exact; config.json `dtype: float32`). That base is made in a temporary folder and not
committed (1 MB; `fixtures/` has a 10 MB budget): tests make it the same way (the manifest's
`f32_base` gives the sha256 of the `model.safetensors` this script wrote: tensors in the checkpoint's
order, `{{"format": "pt"}}` metadata, safetensors {safetensors.__version__} layout).

Goldens of the real adapters: `goldens/real-gpt2-tigrinya-lora.safetensors`,
`goldens/real-opt125m-dpo-lora.safetensors` (sampled values; see the last section).

| golden case (`goldens/<case>.safetensors`) | base | adapters | tensors | elements | bf16 fragile | mismatches if B·A summed exactly |
|---|---|---|---|---|---|---|
{case_rows}

A golden file holds only the tensors the adapter(s) change, under the base checkpoint's names, in
the base's dtype; everything else in the merged model is the base, unchanged (checked). The
manifest lists per case the modules with r, lora_alpha, scaling (Python float and its f32 bits),
kind (`linear`, `conv1d`, `embedding`, `dora`, `modules_to_save`), the adapter param dtype after
loading, and two robustness numbers for bf16 goldens:

* `bf16_fragile`: elements whose bf16 result would change if the f32 value rounded to bf16 moved by
  up to {FRAGILE_ULPS} f32 ulps (a different sgemm summation order can do that). Indices (flat, row-major,
  first {FRAGILE_LIST_MAX} per tensor) are listed. A bit-exact comparison may allow these to differ by one bf16 ulp.
* `mismatches_if_BA_summed_exactly`: elements that change when B·A is computed in f64 and rounded
  once to f32 instead of torch's f32 sgemm (everything else unchanged).

## How PEFT merges (answers, with source lines)

`merge_and_unload()` defaults to `safe_merge=False` ({c['mau']}); all goldens use that path.

**Shapes and keys.** `lora_A.weight` is `[r, in_features]`, `lora_B.weight` is `[out_features, r]`
({c['A_shape']}, {c['B_shape']}); for GPT-2 Conv1D `in/out_features` are the logical ones (the
stored weight is `[in, out]`). File keys are `base_model.model.<module>.lora_A.weight` etc.: PEFT
drops the adapter name (`.default`) when saving. DoRA's magnitude is saved as
`base_model.model.<module>.lora_magnitude_vector` — no `.weight` suffix (the loader accepts both,
{c['dora_key']}).

**Delta (Linear, Conv1D).** `get_delta_weight` ({c['delta']}):
`delta = transpose(B @ A, fan_in_fan_out) * scaling`. A and B are in whatever dtype the parameters
have; `cast_to_fp32` ({c['cast']}) upcasts only when they are f16/bf16 on CPU, and then the
delta is rounded back to that dtype ({c['castback']}). After `from_pretrained` they are f32 in
every case here: loading first moves adapter params to the base layer's dtype ({c['move']}), then
`autocast_adapter_dtype=True` (default, {c['autocast_default']}) upcasts f16/bf16 adapter params to
f32 ({c['autocast']}). So: **B·A is an f32 sgemm (torch's order), transposed for
fan_in_fan_out, then multiplied by the scaling rounded to f32** (torch rounds a Python-float
scalar to the tensor's dtype: measured `{fnd['scalar_multiply']}`), giving an f32 delta.

**Adding it (Linear/Conv1D).** `base_layer.weight.data += delta_weight` ({c['merge_unsafe']}):
with a bf16 base and an f32 delta torch computes `f32(W) + delta` in f32 and **rounds once** to
bf16 (round to nearest even). The f32 base adds in f32. (`safe_merge=True` instead does
`orig_weight += delta.to(orig_dtype)` ({c['merge_safe']}): two roundings;
{fnd['safe_merge_bf16']['elements_differing_from_default_merge']} of the elements of
`llama-lora-all-linear` on bf16 differ from the default.)

**Scaling.** `lora_alpha / r`, or `lora_alpha / math.sqrt(r)` with `use_rslora`
({c['plain']}, {c['rs']}), in Python double, where r and alpha are the per-module values after the
patterns (the adapter's lora_A rows equal that r). Then rounded to f32 by the multiply above.

**rank_pattern / alpha_pattern.** `get_pattern_key` ({c['pattern']}, called at {c['pattern_use']})
iterates the pattern keys in dict order and returns the **first** key `K` for which
`re.match(rf"(.*\\.)?({{K}})$", name)` matches, else the default r / lora_alpha. `name` is the
module's name in the transformers model, e.g. `model.layers.1.self_attn.o_proj` (no
`base_model.model.` prefix, no `.weight`). K is a regular expression, unescaped (a `.` matches any
character); it must match a whole dotted suffix of the name (`q_proj` matches `...self_attn.q_proj`
but `proj` does not), and a `^` in K anchors it to the start of the full name. At load time the dict
order is the order in `adapter_config.json`, which PEFT writes with `sort_keys=True`
({c['sorted']}), so **match in file order** — which is not necessarily the order used when the
adapter was created: given `{rp['given']}` PEFT created layer 2's q_proj with r={rp['r_of_layers.2.q_proj_when_created']},
saved the keys as {rp['key_order_in_saved_adapter_config']}, and reloading its own folder fails:
`{rp['reload_from_saved_folder']}`. `llama-rslora-patterns` uses keys whose sorted order is the
creation order: an anchored regex (`^model\\.layers\\.2\\.self_attn\\.q_proj` → r 2), a dotted
suffix that overlaps a later key (`layers.1.self_attn.o_proj` → r 16, before `q_proj` → 4), a regex
alpha key (`layers\\.3\\..*_proj` → 32, which wins over `v_proj` → 8 for layer 3's v_proj).

**Embeddings.** `lora_embedding_A` is `[r, num_embeddings]`, `lora_embedding_B` is
`[embedding_dim, r]` ({c['emb_shapes']}), saved as `...embed_tokens.lora_embedding_A` /
`lora_embedding_B` (no `.weight`). Delta `= (B @ A)ᵀ * scaling` ({c['emb_delta']}), shape
`[vocab, dim]`, f32 as above. The merge **rounds the delta to the base dtype first**:
`base_layer.weight.data += delta.to(orig_dtype)` ({c['emb_merge']}); for bf16 that is
`bf16(f32(W) + f32(bf16(delta)))` — double rounding, unlike Linear. fan_in_fan_out plays no part.
lora_bias is refused for embeddings ({c['emb_nobias']}).

**Embedding adapters carry the embedding layers.** With `save_embedding_layers="auto"` (default)
PEFT saves the input and output embedding layers whenever `target_modules` names one of
`EMBEDDING_LAYER_NAMES = ["embed_tokens", "lm_head"]` ({c['emb_names']}; {c['emb_save']}). So `llama-embedding-lora`
contains, besides the LoRA tensors, `base_model.model.model.embed_tokens.base_layer.weight` (a full
BF16 copy of the base embedding) and `base_model.model.lm_head.weight`. PEFT loads the former into
the base layer (measured: an adapter whose copy is base + 0.5 merges to copy + delta:
`{eb['merged_equals_copy_plus_delta']}`), i.e. it **replaces** the base embedding before the
delta is added. In the committed adapter the copy equals the base byte for byte. A merger that
treats `<module>.base_layer.weight` as "replace the base tensor, then merge" matches PEFT.

**modules_to_save.** Saved under the plain module key: `base_model.model.lm_head.weight` (not
`...modules_to_save.default.weight`; {c['mts_save']}) in the dtype of the copy (BF16 here). Merging
returns the copy: the merged `lm_head.weight` is that tensor, cast to the base dtype (exact widening
for the f32 base). Here the same key is written twice (modules_to_save and the saved output
embedding); the value is the modules_to_save copy.

**DoRA.** `merge_unsafe` (`DoraLinearVariant`): `delta = get_delta_weight()` (f32, scaling
included); `weight_norm = get_weight_norm(W0, transpose(delta, fan_in_fan_out), scaling=1)`
({c['dora_call']}) where W0 is the base weight with previously merged adapters taken out
({c['dora_unmerged']}); `get_weight_norm` computes `transpose(W0, fifo) + 1 * delta'` — f32 (bf16 +
f32 promotes) — and `torch.linalg.norm(…, dim=1)` ({c['dora_transpose']}, {c['dora_norm_sum']},
{c['dora_norm']}): **the L2 norm of each output row of W + scaling·B·A, in f32, no epsilon**,
detached ({c['dora_detach']}). Then `dora_factor = magnitude / weight_norm` (f32, {c['dora_factor']}),
`W' = dora_factor[:, None] * (W + delta)` in f32, rounded once to the base dtype ({c['dora_new']});
for fan_in_fan_out the factor is transposed to `[1, out]` (columns of the stored `[in, out]` weight).
The magnitude (`[out_features]`, F32 in the file) is used as saved. The reference reproduces PEFT's
bytes with torch's f32 `linalg.norm`; a norm summed in another order (or in f64 and rounded) can
differ in the last bit for some rows: harmless at 1e-5, may flip a fragile bf16 element.

**lora_bias.** `lora_B` gets a bias `[out_features]`, saved as `...lora_B.bias`; merge adds
`lora_B.bias * scaling` to the base bias ({c['bias_merge']}), f32 here. A base layer without bias
(tiny-llama) gets a warning at creation ({c['bias_warn']}) and merge fails
({c['bias_err']}): `{fnd['lora_bias_without_base_bias']['merge_and_unload']}`. So `gpt2-lora-bias`
uses GPT-2's c_attn (Conv1D, bias `[3·n_embd]`). PEFT {peft.__version__} warns when saving such an
adapter that the 1-D `lora_B.bias` tensors "have invalid shape" (its own validator; harmless).

**Tied embeddings (tiny-gpt2).** The base checkpoint has no `lm_head.weight`. LoRA on `wte`:
PEFT merges into the shared tensor, so lm_head follows (`lm_head` shares storage with `wte` after
merge: {tw['lora_on_wte']['lm_head_shares_storage_with_wte_after_merge']};
`tie_word_embeddings` stays {tw['lora_on_wte']['config_tie_word_embeddings_after_merge']}; `wte` is
not in `EMBEDDING_LAYER_NAMES`, so no embedding layers are saved: keys
{tw['lora_on_wte']['adapter_keys']}). `modules_to_save=["lm_head"]` on the tied model: the copy
unties it (shares storage after merge: {tw['modules_to_save_lm_head']['lm_head_shares_storage_with_wte_after_merge']},
equal: {tw['modules_to_save_lm_head']['lm_head_equals_wte_after_merge']}) and
`merge_and_unload` sets `tie_word_embeddings` to
{tw['modules_to_save_lm_head']['config_tie_word_embeddings_after_merge']} ({c['tie_cfg']}), so
the merged checkpoint needs an explicit `lm_head.weight`.

**Several adapters with weights.** Defined as `W + Σ w_i·delta_i`, with `delta_i` PEFT's own
`get_delta_weight` (f32) and, in f32, `acc = f32(W); acc = acc + delta_i * w_i` in adapter order
(w_i as a Python float, i.e. rounded to f32 by torch), then rounded once to the base dtype. PEFT's
`add_weighted_adapter` does not give exactly that: `combination_type="linear"` needs equal ranks
(`{wa['float32']['combination_type_linear']}`) and sums A's and B's (cross terms); `"cat"` stacks
`w_i·scaling_i·A_i` and puts the `B_i` side by side ({c['cat']}), which is the weighted sum up to
rounding on f32 ({wa['float32']['cat_elements_differing_from_definition']} elements of
`llama-lora-all-linear` × 0.7 + `llama-lora-second` × 0.3 differ, max relative
{wa['float32']['cat_max_relative_difference']:.2g}), but on a bf16 base it creates the combined A/B
in {wa['bfloat16']['cat_adapter_param_dtype']} (max relative difference
{wa['bfloat16']['cat_max_relative_difference']:.2g}). PEFT itself, merging two active adapters one
after another, would round to bf16 after each.

## Real adapters on generated bases

| adapter (`../shared/assets/lora/`) | base dtype | merged tensors | bf16 fragile | mismatches if B·A summed exactly |
|---|---|---|---|---|
{real_rows}

`gpt2-tigrinya-lora` (base `gpt2`): models `transformer.h.N.attn.c_attn`, `attn.c_proj`,
`mlp.c_proj` (target "c_proj" matches both), 36 tensors; merged into `GPT2LMHeadModel(GPT2Config())`.
`opt125m-dpo-lora` (base `facebook/opt-125m`, peft_version 0.18.1 in its config, BF16 tensors):
`model.decoder.layers.N.self_attn.q_proj` / `v_proj`, 24 tensors, merged into
`OPTForCausalLM(OPTConfig())` in bfloat16. Measured (manifest `real_adapters.*.peft_behaviour`):
every key starts with `base_model.model.`: {all(r['peft_behaviour']['all_keys_start_with_base_model_model'] for r in real.values())};
key suffixes {sorted({x for r in real.values() for x in r['peft_behaviour']['key_suffixes']})};
unexpected keys {sum(len(r['peft_behaviour']['unexpected_keys']) for r in real.values())}, missing adapter keys
{sum(len(r['peft_behaviour']['missing_adapter_keys']) for r in real.values())}, warnings while loading and merging
{sum(len(r['peft_behaviour']['warnings']) for r in real.values())} (the older config's extra or missing fields are accepted). The OPT adapter's BF16 A/B are upcast to f32 at load;
with `autocast_adapter_dtype=False` they stay bf16, the delta is rounded to bf16 and added in bf16,
and {opt['autocast_adapter_dtype_false']['merged_elements_differing_from_default']} merged elements
differ from the default. The goldens use the default.

The tensor names are transformers' (`transformer.h.0.attn.c_attn.weight`,
`model.decoder.layers.0.self_attn.q_proj.weight`). Only the base tensors the adapter touches are
generated; every other parameter of the model is zero and irrelevant to the merge. Note that the
hub checkpoints themselves may name tensors without transformers' `base_model_prefix`
(`transformer.` for GPT-2, `model.` for OPT); transformers accepts both.

**Generator** (`{gen['name']}`), for a tensor named `name` (UTF-8), shape `[d0, d1]`, element `k` in
row-major order (k = 0 … numel−1):

    seed    = FNV-1a 64 of the UTF-8 bytes of name: h = 0xcbf29ce484222325; for each byte b:
              h = (h XOR b) * 0x100000001b3 mod 2^64
    state_k = seed + (k + 1) * 0x9E3779B97F4A7C15            (mod 2^64)
    z = state_k
    z = (z XOR (z >> 30)) * 0xBF58476D1CE4E5B9                (mod 2^64)
    z = (z XOR (z >> 27)) * 0x94D049BB133111EB                (mod 2^64)
    z = z XOR (z >> 31)
    value_k = Float32(((Double(z >> 40) / 16777216.0) - 0.5) * 0.1)   (IEEE double ops, then round to nearest f32)

For a bf16 base, that f32 is rounded to bf16 by torch (round to nearest even). Check values:
{gen['selfcheck']['name']} has seed `0x{gen['selfcheck']['seed_hex']}` and starts
{gen['selfcheck']['first_8_values'][:4]}; FNV-1a 64 of "" is `0x{gen['selfcheck']['fnv1a64_of_empty_string_hex']}`,
of "a" `0x{gen['selfcheck']['fnv1a64_of_a_hex']}`. The manifest gives each generated tensor's
seed and the sha256 of its bytes (check the generator first), and of the merged tensor: sha256 of
its bytes (little-endian, as in safetensors), f64 sum and sum of squares of its values, and
`real-<adapter>.safetensors` holds the merged values at the {N_SAMPLES} positions
`((2j+1)·n) div {2 * N_SAMPLES}`, j = 0 … {N_SAMPLES - 1}, n = numel. For the f32 GPT-2 case the sha256 holds only if the
sgemm sums in torch's order; compare samples at 1e-5 relative and the sums at ~1e-9.

Not covered here: quantized bases (dequantize with the goldens in `fixtures/quant/`, then merge).
"""
    (out / "lora" / "README.md").write_text(text)


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "fixtures", help="default: <repo>/fixtures")
    ap.add_argument("--only", default=None, help="make_fixtures.py's sections; runs only if 'models' is among them")
    args = ap.parse_args()
    if not fc.models_section_requested(args.only, "make_lora_goldens"):
        return
    fc.setup_libraries()
    torch.set_grad_enabled(False)
    out = args.out.resolve()
    for base in (LLAMA, GPT2):
        if not (out / base / "model.safetensors").is_file():
            sys.exit(f"error: {out / base}/model.safetensors missing: run tools/make_fixtures.py first")
    for spec in REAL:
        if not (SHARED_LORA / spec["name"] / "adapter_model.safetensors").is_file():
            sys.exit(f"error: {SHARED_LORA / spec['name']}: real adapter missing")
    start = time.monotonic()
    fc.fresh_dir(out / "lora")
    (out / "lora" / "goldens").mkdir()
    global F32_DIR
    tmp_f32 = tempfile.TemporaryDirectory(prefix="tiny-llama-f32-")
    F32_DIR = Path(tmp_f32.name)

    log("lora: f32 copy of tiny-llama (temporary)")
    f32_base = make_f32_base(out, F32_DIR)
    log("lora: adapters")
    adapters = make_adapters(out)
    log("lora: goldens")
    cases = []
    for case in CASES:
        entry, _ = make_case(out, case, adapters)
        cases.append(entry)
        frag = entry["bf16_fragile"]["count"] if entry["bf16_fragile"] else "-"
        log(f"  {entry['case']}: {len(entry['tensors'])} tensors, fragile {frag}, "
            f"exact-BA mismatches {entry['mismatches_if_BA_summed_exactly']['count']}")
    log("lora: real adapters")
    real = {}
    for spec in REAL:
        make_real(out, spec, real)
    log("lora: findings")
    found = findings(out)
    manifest = {
        "generator": {"script": "tools/make_lora_goldens.py", "name": "splitmix64-fnv1a64-v1",
                      "selfcheck": splitmix_selfcheck()},
        "versions": {"peft": peft.__version__, "torch": torch.__version__.split("+")[0],
                     "transformers": transformers.__version__, "safetensors": safetensors.__version__,
                     "numpy": np.__version__},
        "paths": "relative to fixtures/",
        "f32_base": f32_base,
        "adapters": adapters,
        "cases": cases,
        "real_adapters": real,
        "findings": found,
    }
    assert json.loads(compact_json(manifest)) == json.loads(json.dumps(manifest))
    fc.write_text(out / "lora" / "goldens" / "manifest.json", compact_json(manifest) + "\n")
    make_readme(out, manifest)
    tmp_f32.cleanup()
    total = sum(p.stat().st_size for p in (out / "lora").rglob("*") if p.is_file())
    log(f"lora: {total / 1e6:.2f} MB in fixtures/lora")
    fc.write_sums(out)
    log(f"make_lora_goldens: done in {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    main()
