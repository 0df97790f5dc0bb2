#!/usr/bin/env python3
"""Goldens for `ckpt-merge-lora --combination`: what PEFT's `LoraModel.add_weighted_adapter` makes
of the fixture adapters and of the two real adapters in ../shared/assets/lora, for every
combination type, made by the pinned reference stack (tools/requirements.txt: peft 0.21.2).

Run after tools/make_lora_goldens.py (it reads fixtures/lora/adapters and the fixture models).
Writes (under fixtures/lora/combination/):
  adapters/llama-lora-third/        a third r=8 llama adapter (alpha 8, scaling 1) on q, v, gate, down,
                                    so llama-lora-all-linear (r=8, scaling 2) has an equal-rank partner
  adapters/gpt2-conv1d-second/      a second r=8 GPT-2 Conv1D adapter (fan_in_fan_out) on c_attn and c_fc
  goldens.safetensors               per case, method and module: the combined adapter's values at
                                    `sample_positions` (lora_A and lora_B, or for the *_svd methods the
                                    product B·A, which an SVD's sign convention does not change), F32;
                                    `<method>@clamp` runs add svd_clamp: the clamp quantile is taken over the
                                    factors' values, so it does see the signs LAPACK chose (MKL in torch,
                                    OpenBLAS in ckpt): `svdsign/...` records, per module, the sign of the
                                    largest |U[i, c]| of each singular pair PEFT got, which the test feeds to ckpt;
                                    and PEFT's DARE masks (`mask/...`, bits packed little-endian, U8)
  manifest.json                     the cases: adapters, weights, options, new rank and target_modules,
                                    PEFT's refusals (message), and the sample rule

The DARE masks come from torch.bernoulli inside PEFT's random_pruning: the script records each one
(by module, matrix "lora_A"/"lora_B"/"delta" and adapter position) so the Swift test feeds PEFT's
own masks to ckpt and compares values. A second run rewrites every file byte for byte.
"""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import fixture_common as fc  # noqa: E402

fc.pin_hash_seed()

import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402

import numpy as np  # noqa: E402
import peft  # noqa: E402
import peft.utils.merge_utils as merge_utils  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from peft.tuners.lora.model import LoraModel  # noqa: E402
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, OPTConfig, OPTForCausalLM  # noqa: E402

REPO = TOOLS.parent
FIX = REPO / "fixtures"
OUT = FIX / "lora" / "combination"
SHARED_LORA = REPO / ".." / "shared" / "assets" / "lora"
N_SAMPLES = 32

METHODS = ["linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd", "dare_ties_svd",
           "magnitude_prune", "magnitude_prune_svd"]

NEW_ADAPTERS = [
    dict(name="llama-lora-third", base="models/tiny-llama", seed=201,
         config=dict(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"])),
    dict(name="gpt2-conv1d-second", base="models/tiny-gpt2", seed=202,
         config=dict(r=8, lora_alpha=16, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True)),
]

# (case, base, [(adapter folder relative to fixtures/ or shared path, weight)], methods, options)
CASES = [
    dict(name="llama-equal-ranks", base="models/tiny-llama",
         adapters=[("lora/adapters/llama-lora-all-linear", 0.7), ("lora/combination/adapters/llama-lora-third", -0.5)],
         methods=METHODS, density=0.5, majority="total"),
    dict(name="llama-frequency", base="models/tiny-llama",
         adapters=[("lora/adapters/llama-lora-all-linear", 0.6), ("lora/combination/adapters/llama-lora-third", 0.9)],
         methods=["ties", "dare_ties", "ties_svd"], density=0.3, majority="frequency"),
    dict(name="llama-mixed-ranks", base="models/tiny-llama",
         adapters=[("lora/adapters/llama-lora-all-linear", 0.6), ("lora/adapters/llama-lora-second", 0.8),
                   ("lora/adapters/llama-rslora-patterns", -0.4)],
         methods=METHODS, density=0.7, majority="total", svd_rank=6, clamped=["svd", "ties_svd"], svd_clamp=0.95),
    dict(name="gpt2-conv1d", base="models/tiny-gpt2",
         adapters=[("lora/adapters/gpt2-conv1d", 1.0), ("lora/combination/adapters/gpt2-conv1d-second", 0.5)],
         methods=METHODS, density=0.4, majority="total"),
    dict(name="real-gpt2-tigrinya", base="real:gpt2",
         adapters=[("shared:gpt2-tigrinya-lora", 0.7), ("shared:gpt2-tigrinya-lora", 0.5)],
         methods=["linear", "cat", "svd", "ties", "magnitude_prune"], density=0.5, majority="total", clamped=["svd"], svd_clamp=0.99),
    dict(name="real-opt125m-dpo", base="real:opt",
         adapters=[("shared:opt125m-dpo-lora", 1.0), ("shared:opt125m-dpo-lora", -0.3)],
         methods=["linear", "cat", "svd"], density=None, majority="total"),
]


def sample_positions(n: int) -> list[int]:
    m = min(n, N_SAMPLES)
    return [((2 * j + 1) * n) // (2 * m) for j in range(m)]


def adapter_dir(ref: str) -> Path:
    return SHARED_LORA / ref[len("shared:"):] if ref.startswith("shared:") else FIX / ref


def base_model(base: str):
    if base.startswith("real:"):
        with torch.device("meta"):
            model = GPT2LMHeadModel(GPT2Config()) if base == "real:gpt2" else OPTForCausalLM(OPTConfig())
        model = model.to_empty(device="cpu")
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        return model.eval()
    return AutoModelForCausalLM.from_pretrained(FIX / base, dtype=torch.float32).eval()


def make_adapter(spec: dict):
    model = base_model(spec["base"])
    pm = get_peft_model(model, LoraConfig(init_lora_weights=False, **spec["config"]))
    rng = np.random.default_rng(spec["seed"])
    with torch.no_grad():
        for name, p in sorted(pm.named_parameters()):
            if not p.requires_grad:
                continue
            shape = tuple(p.shape)
            if ".lora_A." in name:
                bound = 1.0 / math.sqrt(shape[1])
                v = rng.uniform(-bound, bound, shape)
            else:
                v = rng.standard_normal(shape) * 0.05
            p.copy_(torch.from_numpy(np.asarray(v, dtype=np.float32)))
    dst = OUT / "adapters" / spec["name"]
    pm.save_pretrained(dst)
    (dst / "README.md").unlink(missing_ok=True)
    cfg = json.loads((dst / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = f"fixtures/{spec['base']}"
    (dst / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


class MaskRecorder:
    """Wraps PEFT's random_pruning and the two combination helpers to key each torch.bernoulli mask
    by (module, matrix, adapter position)."""

    def __init__(self):
        self.masks = {}
        self.context = None  # (module name, [adapter positions present], matrices in call order)
        self.calls = 0
        original_random = merge_utils.random_pruning
        original_general = LoraModel._generalized_task_arithmetic_weighted_adapter
        original_svd = LoraModel._svd_generalized_task_arithmetic_weighted_adapter
        recorder = self

        def random_pruning(tensor, density, rescale):
            mask = torch.bernoulli(torch.full_like(input=tensor, fill_value=density))
            module, present, matrices = recorder.context
            per = len(present)
            matrix = matrices[recorder.calls // per]
            adapter = present[recorder.calls % per]
            recorder.calls += 1
            recorder.masks[f"{module}|{matrix}|{adapter}"] = mask.to(torch.bool).reshape(-1).numpy().copy()
            pruned = tensor * mask
            if rescale:
                pruned = pruned / density
            return pruned

        def present_adapters(target, adapters):
            return [i for i, a in enumerate(adapters) if a in target.lora_A or a in target.lora_embedding_A]

        def general(self, combination_type, adapters, weights, target, density, majority_sign_method):
            recorder.context = (recorder.names[id(target)], present_adapters(target, adapters), ["lora_A", "lora_B"])
            recorder.calls = 0
            return original_general(self, combination_type, adapters, weights, target, density, majority_sign_method)

        def svd(self, combination_type, adapters, weights, new_rank, target, *args, **kwargs):
            recorder.context = (recorder.names[id(target)], present_adapters(target, adapters), ["delta"])
            recorder.calls = 0
            return original_svd(self, combination_type, adapters, weights, new_rank, target, *args, **kwargs)

        original_linalg_svd = torch.linalg.svd

        def linalg_svd(matrix, *args, **kwargs):
            # The sign LAPACK gave each singular pair: that of the largest |U[i, c]| (first on ties).
            U, S, Vh = original_linalg_svd(matrix, *args, **kwargs)
            rows = torch.arange(U.shape[1])
            k = min(U.shape[0], U.shape[1])
            top = U[:, :k].abs().argmax(dim=0)
            recorder.svd_signs[recorder.context[0]] = torch.sign(U[top, rows[:k]]).to(torch.float32)
            return U, S, Vh

        torch.linalg.svd = linalg_svd
        self.svd_signs = {}
        merge_utils.random_pruning = random_pruning
        LoraModel._generalized_task_arithmetic_weighted_adapter = general
        LoraModel._svd_generalized_task_arithmetic_weighted_adapter = svd
        self.names = {}


def module_name(key: str) -> str:
    name = key[len("base_model.model."):] if key.startswith("base_model.model.") else key
    return name.replace(".default", "")


def run_case(case: dict, recorder: MaskRecorder, tensors: dict, manifest: list):
    adapter_names = [f"a{i}" for i in range(len(case["adapters"]))]
    weights = [w for _, w in case["adapters"]]
    runs = [(m, False) for m in case["methods"]] + [(m, True) for m in case.get("clamped", [])]
    for method, clamped in runs:
        label = method + ("@clamp" if clamped else "")
        torch.manual_seed(1234)
        pm = PeftModel.from_pretrained(base_model(case["base"]), adapter_dir(case["adapters"][0][0]), adapter_name="a0")
        for name, (ref, _) in zip(adapter_names[1:], case["adapters"][1:]):
            pm.load_adapter(adapter_dir(ref), adapter_name=name)
        recorder.names = {id(m): n[len("base_model.model."):] for n, m in pm.named_modules()}
        recorder.masks = {}
        recorder.svd_signs = {}
        kwargs = dict(combination_type=method, density=case["density"], majority_sign_method=case["majority"])
        if case.get("svd_rank"):
            kwargs["svd_rank"] = case["svd_rank"]
        if clamped:
            kwargs["svd_clamp"] = case["svd_clamp"]
        entry = dict(case=case["name"], method=method, label=label, base=case["base"], adapters=[r for r, _ in case["adapters"]],
                     weights=weights, density=case["density"], majority_sign_method=case["majority"],
                     svd_rank=case.get("svd_rank"), svd_clamp=kwargs.get("svd_clamp"))
        try:
            pm.add_weighted_adapter(adapter_names, weights, "combined", **kwargs)
        except Exception as e:  # PEFT's refusal is part of the golden
            entry["peft_error"] = str(e).splitlines()[0]
            manifest.append(entry)
            fc.log(f"{case['name']} {label}: PEFT refuses: {entry['peft_error']}")
            continue
        config = pm.peft_config["combined"]
        entry["new_rank"] = config.r
        entry["lora_alpha"] = config.lora_alpha
        tm = config.target_modules
        entry["target_modules"] = sorted(tm) if isinstance(tm, (set, list)) else tm
        state = peft.get_peft_model_state_dict(pm, adapter_name="combined")
        modules = {}
        for key, value in state.items():
            name = module_name(key)
            for role in (".lora_A.weight", ".lora_B.weight", ".lora_embedding_A", ".lora_embedding_B"):
                if name.endswith(role):
                    modules.setdefault(name[: -len(role)], {})["A" if "_A" in role else "B"] = value.detach().to(torch.float32)
        entry["modules"] = sorted(modules)
        entry["dtype"] = str(next(iter(state.values())).dtype).replace("torch.", "")
        for name, parts in sorted(modules.items()):
            prefix = f"{case['name']}/{label}/{name}"
            if method.endswith("svd"):
                delta = (parts["B"].to(torch.float64) @ parts["A"].to(torch.float64)).reshape(-1)
                tensors[prefix + "/delta"] = delta[sample_positions(delta.numel())].to(torch.float32).contiguous()
            else:
                for part in ("A", "B"):
                    flat = parts[part].reshape(-1)
                    tensors[f"{prefix}/{part}"] = flat[sample_positions(flat.numel())].contiguous()
        for key, mask in sorted(recorder.masks.items()):
            tensors[f"mask/{case['name']}/{label}/{key}"] = torch.from_numpy(np.packbits(mask, bitorder="little"))
        if clamped:
            for key, signs in sorted(recorder.svd_signs.items()):
                tensors[f"svdsign/{case['name']}/{label}/{key}"] = signs.contiguous()
        entry["masks"] = len(recorder.masks)
        manifest.append(entry)
        fc.log(f"{case['name']} {label}: rank {config.r}, {len(modules)} modules, {len(recorder.masks)} masks")


def main():
    fc.setup_libraries()
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "adapters").mkdir(parents=True)
    for spec in NEW_ADAPTERS:
        make_adapter(spec)
    recorder = MaskRecorder()
    tensors, manifest = {}, []
    for case in CASES:
        if case["base"].startswith("real:") and not SHARED_LORA.exists():
            sys.exit("error: ../shared/assets/lora is needed for the real-adapter cases")
        run_case(case, recorder, tensors, manifest)
    safetensors.torch.save_file(dict(sorted(tensors.items())), OUT / "goldens.safetensors", metadata={"format": "pt"})
    doc = dict(generator="tools/make_lora_combination_goldens.py", peft=peft.__version__, torch=torch.__version__,
               samples=f"{N_SAMPLES} values per tensor at ((2j+1)*n)//(2*m), m = min(n, {N_SAMPLES}), of the flattened "
                       "row-major tensor; *_svd methods: of B·A (computed in f64 from PEFT's f32 factors)",
               masks="mask/<case>/<method>/<module>|<lora_A|lora_B|delta>|<adapter position>: numpy.packbits(bitorder='little') "
                     "of torch.bernoulli's mask, flattened row-major",
               cases=manifest)
    (OUT / "manifest.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    fc.write_sums(FIX)


if __name__ == "__main__":
    main()
