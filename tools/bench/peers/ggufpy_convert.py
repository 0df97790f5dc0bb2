#!/usr/bin/env python3
"""HF llama folder → Q8_0 GGUF with gguf-py, the job of `ckpt-convert DIR OUT.gguf --to gguf --type q8_0`.

Usage: ggufpy_convert.py MODEL_FOLDER OUT.gguf   (the reference venv's python)

What llama.cpp's convert_hf_to_gguf.py does for a llama model with --outtype q8_0, written out
with its library, gguf-py (convert_hf_to_gguf.py itself is not shipped in the gguf wheel):
`llama.*` hyperparameters from config.json; the byte-level BPE vocabulary from tokenizer.json
(tokens by id, types: special added tokens CONTROL, other added tokens USER_DEFINED, the rest
NORMAL) and `gguf.SpecialVocab` (merges, bos/eos/unk/pad ids, add_bos_token, chat template);
tensors read with safetensors (torch, bf16 → float32), renamed with gguf's tensor name map,
q_proj/k_proj rows permuted as convert_hf_to_gguf's `LlamaModel.permute`, 1-D tensors (norms)
F32, 2-D weights `gguf.quants.quantize(x, Q8_0)` (numpy, one thread), written with `GGUFWriter`.
Prints one JSON line: import time, read+quantize time, write time.
"""

import json
import sys
import time
from pathlib import Path

start = time.perf_counter()
import gguf  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402

imported = time.perf_counter()


def permute(weights: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def main() -> int:
    folder, out = Path(sys.argv[1]), sys.argv[2]
    config = json.loads((folder / "config.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    layers = config["num_hidden_layers"]
    rope_theta = config.get("rope_theta") or config.get("rope_parameters", {}).get("rope_theta", 10000.0)
    head_dim = config.get("head_dim") or config["hidden_size"] // heads

    writer = gguf.GGUFWriter(out, "llama")
    writer.add_name(folder.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_rope_dimension_count(head_dim)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(rope_theta)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_vocab_size(config["vocab_size"])

    # Vocabulary (convert_hf_to_gguf's get_vocab_base, read from tokenizer.json directly).
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    by_id = {i: t for t, i in tokenizer["model"]["vocab"].items()}
    added = {t["id"]: t for t in tokenizer.get("added_tokens", [])}
    tokens, types = [], []
    for i in range(config["vocab_size"]):
        if i in added:
            tokens.append(added[i]["content"])
            types.append(gguf.TokenType.CONTROL if added[i]["special"] else gguf.TokenType.USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                x = f.get_tensor(name).to(torch.float32).numpy()
                if name.endswith("q_proj.weight"):
                    x = permute(x, heads, heads)
                elif name.endswith("k_proj.weight"):
                    x = permute(x, heads, kv_heads)
                new_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
                if new_name is None:
                    raise SystemExit(f"error: {name}: no GGUF name")
                if x.ndim == 1:
                    writer.add_tensor(new_name, np.ascontiguousarray(x))
                else:
                    q = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
                    writer.add_tensor(new_name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    quantized = time.perf_counter()
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    done = time.perf_counter()
    print(json.dumps({"import_seconds": imported - start, "work_seconds": done - imported,
                      "read_quantize_seconds": quantized - imported, "write_seconds": done - quantized}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
