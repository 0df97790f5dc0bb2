#!/usr/bin/env python3
"""Goldens for ckpt's backward pass (Sources/CheckpointKit/Model/OutputGradients.swift): per linear
product, per position, the squared norm of the gradient of the summed next-token loss with respect
to the product's output, Σ over two chunks, computed by torch autograd through transformers' own
model (eager attention, f32) with the pinned stack of tools/requirements.txt.

Models: the architecture fixtures whose blocks the backward pass covers (fixtures/architectures/
llama3, mistral-sliding with its window of 16 shorter than the chunk, qwen2-yarn with q/k/v biases)
and fixtures/models/tiny-llama. Chunks: the 64 token ids of fixtures/architectures/logits.safetensors
cut in two chunks of 32, the second starting with the first's first id (a BOS-like first token).

Writes fixtures/architectures/output_gradients.safetensors: per model and product a F32 [32] tensor
named "<model>/<product>" (the product's weight name without ".weight"), and "token_ids" I32 [2, 32].
The output is a pure function of this script, the pinned wheels and those fixtures; fixtures/SHA256SUMS
is rewritten after it.

Run: .venv/bin/python tools/make_gradient_goldens.py
"""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import fixture_common as fc  # noqa: E402  (pins the environment before torch is imported)

fc.pin_environment(TORCHDYNAMO_DISABLE="1")

import safetensors.torch  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

REPO = TOOLS.parent
FIXTURES = REPO / "fixtures"
MODELS = {
    "llama3": FIXTURES / "architectures" / "llama3",
    "mistral-sliding": FIXTURES / "architectures" / "mistral-sliding",
    "qwen2-yarn": FIXTURES / "architectures" / "qwen2-yarn",
    "tiny-llama": FIXTURES / "models" / "tiny-llama",
}
PRODUCTS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def chunks():
    ids = safetensors.torch.load_file(str(FIXTURES / "architectures" / "logits.safetensors"))["token_ids"].long()
    first, second = ids[:32].clone(), ids[32:].clone()
    second[0] = first[0]
    return torch.stack([first, second])


def squared_norms(folder, tokens):
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager")
    model.eval()
    sums, handles = {}, []
    for name, module in model.named_modules():
        if name.split(".")[-1] in PRODUCTS:
            def hook(_module, _inputs, output, name=name):
                output.register_hook(lambda grad: sums.__setitem__(name, sums.get(name, 0) + grad[0].double().pow(2).sum(-1)))
            handles.append(module.register_forward_hook(hook))
    for chunk in tokens:
        logits = model(chunk[None]).logits[0]
        # The summed negative log-likelihood of each next token (the last position has none).
        loss = torch.nn.functional.cross_entropy(logits[:-1].double(), chunk[1:], reduction="sum")
        model.zero_grad()
        loss.backward()
    for h in handles:
        h.remove()
    return {name: values.float().contiguous() for name, values in sums.items()}


def main():
    torch.manual_seed(0)
    tokens = chunks()
    tensors = {"token_ids": tokens.to(torch.int32).contiguous()}
    for label, folder in MODELS.items():
        for name, values in squared_norms(folder, tokens).items():
            tensors[f"{label}/{name}"] = values
    out = FIXTURES / "architectures" / "output_gradients.safetensors"
    safetensors.torch.save_file(dict(sorted(tensors.items())), str(out),
                                metadata={"generator": "tools/make_gradient_goldens.py", "torch": torch.__version__,
                                          "transformers": transformers.__version__})
    out.chmod(0o644)
    fc.write_sums(FIXTURES)  # keep `sha256sum -c SHA256SUMS` green
    print(f"wrote {out} ({len(tensors)} tensors)")


if __name__ == "__main__":
    main()
