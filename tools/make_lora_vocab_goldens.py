#!/usr/bin/env python3
"""Goldens for merging adapters trained with added tokens (the vocabulary resized), made the way a
user of the pinned stack does it (tools/requirements.txt: transformers 5.24.0, peft 0.21.2):

    tokenizer.add_tokens([...]); model.resize_token_embeddings(len(tokenizer))
    model = get_peft_model(model, LoraConfig(...)); ...train...; model.save_pretrained(adapter); tokenizer.save_pretrained(adapter)
    # and to merge:
    base.resize_token_embeddings(len(tokenizer)); PeftModel.from_pretrained(base, adapter).merge_and_unload().save_pretrained(out)

Writes fixtures/lora/vocab/:
  adapters/llama-added-tokens/     r4 LoRA on q/v with embed_tokens and lm_head in modules_to_save, 4 tokens added
  adapters/llama-added-tokens-embedding-lora/
                                   r4 LoRA on embed_tokens (lora_embedding_A [r, 516]) and q_proj, 4 tokens added;
                                   PEFT saves the resized embedding and head itself (save_embedding_layers="auto")
  goldens.safetensors              per adapter, the merged model's embed_tokens, lm_head and the LoRA'd q_proj of
                                   layer 0 (BF16, the model's dtype), as transformers + PEFT merge them
  adapters/llama-trainable-tokens/ r4 LoRA on q_proj and the rows of tokens 3, 100 and 511 trained
                                   (trainable_token_indices), no tokens added
  manifest.json                    vocab sizes, added tokens, and the mean-resizing noise bound

transformers' resize_token_embeddings (mean_resizing=True) fills new rows with the old rows' mean plus
noise drawn with covariance 1e-9 × theirs, then rounds to bf16: the manifest records the head's largest
deviation from the f32 mean, and the test allows it for rows no adapter tensor replaces.
"""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import fixture_common as fc  # noqa: E402

fc.pin_hash_seed()

import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import safetensors.torch  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

REPO = TOOLS.parent
FIX = REPO / "fixtures"
BASE = FIX / "models" / "tiny-llama"
OUT = FIX / "lora" / "vocab"
ADDED = ["<|tool_call|>", "<|tool_result|>", "<|think|>", "<|/think|>"]

CASES = [
    dict(name="llama-added-tokens", seed=301,
         config=dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["embed_tokens", "lm_head"])),
    dict(name="llama-added-tokens-embedding-lora", seed=302,
         config=dict(r=4, lora_alpha=4, target_modules=["embed_tokens", "q_proj"])),
    # No tokens added: three existing tokens' rows trained (trainable_token_indices) beside a q_proj LoRA.
    dict(name="llama-trainable-tokens", seed=303, added=False,
         config=dict(r=4, lora_alpha=8, target_modules=["q_proj"], trainable_token_indices=[3, 100, 511])),
]


def load_base():
    return AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.bfloat16)


def make_adapter(case) -> Path:
    torch.manual_seed(case["seed"])
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    if case.get("added", True):
        tokenizer.add_tokens(ADDED)
    model = load_base()
    model.resize_token_embeddings(len(tokenizer))
    peft_model = get_peft_model(model, LoraConfig(**case["config"]))
    # "Training": every trainable parameter moves, so no part of the merge is a no-op.
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    folder = fc.fresh_dir(OUT / "adapters" / case["name"])
    peft_model.save_pretrained(folder)
    if case.get("added", True):
        tokenizer.save_pretrained(folder)
    return folder


def merged_tensors(folder: Path) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(folder if (folder / "tokenizer.json").exists() else BASE)
    base = load_base()
    base.resize_token_embeddings(len(tokenizer))
    merged = PeftModel.from_pretrained(base, folder).merge_and_unload()
    with tempfile.TemporaryDirectory() as scratch:
        merged.save_pretrained(scratch)
        state = safetensors.torch.load_file(Path(scratch) / "model.safetensors")
    return {k: state[k] for k in ("model.embed_tokens.weight", "lm_head.weight", "model.layers.0.self_attn.q_proj.weight")}


def main() -> None:
    fc.setup_libraries()
    goldens = {}
    manifest = {"generator": "tools/make_lora_vocab_goldens.py", "added_tokens": ADDED, "cases": []}
    original = load_base()
    mean_head = original.lm_head.weight.float().mean(0)
    for case in CASES:
        folder = make_adapter(case)
        tensors = merged_tensors(folder)
        for k, v in tensors.items():
            goldens[f"{case['name']}/{k}"] = v.contiguous()  # bf16, as merged and saved
        old = original.config.vocab_size
        # The head's new rows as resize_token_embeddings made them (no adapter tensor replaces them in the second case).
        grown = tensors["lm_head.weight"][old:].float()
        deviation = float((grown - mean_head).abs().max()) if grown.numel() else 0.0
        manifest["cases"].append({"name": case["name"], "from": old, "to": int(tensors["lm_head.weight"].shape[0]),
                                  "keys": sorted(safetensors.torch.load_file(folder / "adapter_model.safetensors").keys()),
                                  "head_new_rows_deviation_from_mean": deviation})
    shutil.rmtree(OUT / "adapters" / "llama-added-tokens-no-tokenizer", ignore_errors=True)
    for folder in (OUT / "adapters").iterdir():
        readme = folder / "README.md"
        if readme.exists():
            readme.unlink()  # PEFT's model card template: not part of the adapter
    safetensors.torch.save_file(dict(sorted(goldens.items())), OUT / "goldens.safetensors", metadata={"format": "pt"})
    fc.write_json(OUT / "manifest.json", manifest)
    fc.log(f"wrote {OUT}")


if __name__ == "__main__":
    main()
