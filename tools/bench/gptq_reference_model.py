#!/usr/bin/env python3
"""GPTQ of a whole Llama-family model in torch, as GPTQModel runs it, to compare with ckpt's own.

The per-weight algorithm is tools/gptq_reference.py (GPTQModel 7.3.4's GPTQ.quantize, checked
bit-identical against GPTQModel's own code); this script adds the layer-by-layer driver: the
calibration chunks run through the model one decoder layer at a time, each layer's linear inputs
collected (after the already-quantized layers before it), H = 2/n XᵀX per weight, GPTQ, the
weight replaced by its fake-quantized values, and the layer re-run for the next one. With
--true-sequential the layer is re-run between q/k/v, o, gate/up and down (GPTQModel's default).
The result is saved as an f32 folder that ckpt-compare measures like any other model.

Used for the note of issue 14: on SmolLM2-135M calibrated on Tiny Shakespeare and scored on
WikiText-2, this reference GPTQ gives the same picture as ckpt's (no gain over round to nearest).

  .venv/bin/python tools/bench/gptq_reference_model.py MODEL_DIR OUT_DIR --text shakespeare.txt \
      [--tokens 16384] [--ctx 512] [--group-size 64] [--act-order] [--true-sequential] [--rtn]
"""
import argparse
import shutil
import sys
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gptq_reference import gptq, hessian, rtn  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("model")
ap.add_argument("out")
ap.add_argument("--text", required=True)
ap.add_argument("--tokens", type=int, default=16384)
ap.add_argument("--ctx", type=int, default=512)
ap.add_argument("--group-size", type=int, default=64)
ap.add_argument("--act-order", action="store_true")
ap.add_argument("--static-groups", action="store_true")
ap.add_argument("--true-sequential", action="store_true")
ap.add_argument("--damp", type=float, default=0.01)
ap.add_argument("--rtn", action="store_true", help="round to nearest with the same quantizer instead of GPTQ")
a = ap.parse_args()

torch.set_num_threads(2)
src = Path(a.model)
tokenizer = Tokenizer.from_file(str(src / "tokenizer.json"))
# The text read as bytes and decoded as ckpt reads it; no special tokens (SmolLM2 adds no BOS).
ids = tokenizer.encode(open(a.text, "rb").read().decode("utf-8"), add_special_tokens=False).ids
count = a.tokens // a.ctx
chunks = torch.tensor(ids[: count * a.ctx]).reshape(count, a.ctx)
model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, attn_implementation="sdpa")
model.eval()
started = time.time()
GROUPS = [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.o_proj"], ["mlp.gate_proj", "mlp.up_proj"], ["mlp.down_proj"]]
with torch.no_grad():
    hidden = [model.model.embed_tokens(c[None]) for c in chunks]
    positions = torch.arange(a.ctx)[None]
    rotary = model.model.rotary_emb(hidden[0], positions)

    def run(layer, states):
        out = []
        for h in states:  # sdpa with no mask is causal
            r = layer(h, attention_mask=None, position_ids=positions, position_embeddings=rotary)
            out.append(r[0] if isinstance(r, tuple) else r)
        return out

    for index, layer in enumerate(model.model.layers):
        modules = dict(layer.named_modules())
        for names in (GROUPS if a.true_sequential else [sum(GROUPS, [])]):
            inputs = {name: [] for name in names}
            hooks = [modules[name].register_forward_hook(lambda m, i, o, name=name: inputs[name].append(i[0].reshape(-1, i[0].shape[-1]).clone()))
                     for name in names]
            run(layer, hidden)
            for hook in hooks:
                hook.remove()
            for name in names:
                W = modules[name].weight.data
                if a.rtn:
                    Q = rtn(W, bits=4, group_size=a.group_size, sym=True)
                else:
                    H = hessian(inputs[name], method="sum_then_scale")
                    Q = gptq(W, H, bits=4, group_size=a.group_size, sym=True, act_order=a.act_order, static_groups=a.static_groups,
                             damp_percent=a.damp).Q
                modules[name].weight.data = Q.to(W.dtype)
        hidden = run(layer, hidden)
        print(f"layer {index}: {time.time() - started:.0f} s", file=sys.stderr)
out = Path(a.out)
model.save_pretrained(out, safe_serialization=True)
for name in ("tokenizer.json", "tokenizer_config.json"):
    if (src / name).exists():
        shutil.copy(src / name, out / name)
