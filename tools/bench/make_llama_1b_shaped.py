#!/usr/bin/env python3
"""A Llama-3.2-1B-shaped checkpoint with random bf16 weights, for benchmarks at the 1B scale.

Usage: .venv/bin/python tools/bench/make_llama_1b_shaped.py [OUTDIR] [--vocab-gguf FILE] [--seed N] [--force]
       OUTDIR defaults to .build/bench/llama-1b-shaped. Run with the reference venv's python
       (numpy for the weights, transformers for the tokenizer).

What it writes (a Hugging Face folder that transformers, convert_hf_to_gguf.py and ckpt all read):
  config.json             meta-llama/Llama-3.2-1B's published config.json, verbatim (below)
  generation_config.json  the published generation_config.json
  model.safetensors       146 bf16 tensors, 1,235,814,400 parameters, 2,471,645,608 bytes: the names,
                          shapes and dtype of the published file (2.47 GB; tied embeddings, so no
                          lm_head.weight)
  tokenizer.json, tokenizer_config.json
                          the Llama-3 byte-level BPE vocabulary (128,256 tokens, 280,147 merges)
                          taken from llama.cpp's vocab-only ggml-vocab-llama-bpe.gguf with
                          transformers' GGUF tokenizer converter, then set up as Llama 3 ships it:
                          `ignore_merges`, and a post-processor that puts <|begin_of_text|> (128000)
                          first. The special tokens 128002…128255 keep the names that GGUF gives
                          them (Llama 3's); Llama 3.2 renamed a few of them (<|eom_id|>, …), which
                          changes no tokenization of plain text.

The weights are random (seed 0 by default, one stream per tensor keyed by its name, so the same
seed gives the same bytes): embeddings N(0, 0.02²) (the config's initializer_range), every linear
weight N(0, 1/in_features), norm weights 1.0. With those, the residual stream grows by about one
unit of variance per layer and every activation stays well inside bf16/f16 range through the 16
layers; logits have a standard deviation near 1, so the perplexity of any text is close to the
vocabulary size (~10^5): a model to time and to compare implementations on, not to evaluate.

model.safetensors is written tensor by tensor, 8M elements at a time (header first, then raw
little-endian bf16, rounded to nearest even from float32), so the whole model is never in memory:
the weights take ~0.2 GB of RSS; the process peaks at ~1.2 GB earlier, in transformers' GGUF
tokenizer conversion. Takes about 50 s on a 2-core Xeon (~20 s tokenizer, ~25 s weights; one
core does the work) and 2.49 GB on disk (llama.cpp's BF16 and F16 GGUFs of it are 2.48 GB each).
The folder is built under OUTDIR.partial and renamed when complete; a finished OUTDIR (its
`.complete` stamp records the seed and this script's hash) is left alone unless --force.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / ".build" / "bench" / "llama-1b-shaped"
DEFAULT_VOCAB_GGUF = REPO / ".build" / "llama.cpp" / "src" / "models" / "ggml-vocab-llama-bpe.gguf"

# Copied from meta-llama/Llama-3.2-1B's published config.json (huggingface.co/meta-llama/Llama-3.2-1B,
# config.json), key for key and value for value.
CONFIG = {
    "architectures": [
        "LlamaForCausalLM"
    ],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 8192,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3"
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0",
    "use_cache": True,
    "vocab_size": 128256
}

# Copied from meta-llama/Llama-3.2-1B's published generation_config.json.
GENERATION_CONFIG = {
    "_from_model_config": True,
    "bos_token_id": 128000,
    "do_sample": True,
    "eos_token_id": 128001,
    "temperature": 0.6,
    "top_p": 0.9,
    "transformers_version": "4.45.0.dev0"
}

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
CHUNK_ELEMENTS = 1 << 23  # elements generated and written at a time (32 MB of float32)


def log(message: str) -> None:
    print(f"llama-1b-shaped: {message}", file=sys.stderr, flush=True)


# MARK: - Weights


def layout(config: dict) -> list[tuple[str, list[int], float | None]]:
    """(name, shape, standard deviation; None for a norm weight of ones), in the order the
    safetensors writer lays them out (all bf16, so by name)."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    head_dim = config["head_dim"]
    q_out, kv_out = config["num_attention_heads"] * head_dim, config["num_key_value_heads"] * head_dim
    tensors = [("model.embed_tokens.weight", [config["vocab_size"], hidden], config["initializer_range"]),
               ("model.norm.weight", [hidden], None)]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors += [
            (p + "input_layernorm.weight", [hidden], None),
            (p + "post_attention_layernorm.weight", [hidden], None),
            (p + "self_attn.q_proj.weight", [q_out, hidden], hidden ** -0.5),
            (p + "self_attn.k_proj.weight", [kv_out, hidden], hidden ** -0.5),
            (p + "self_attn.v_proj.weight", [kv_out, hidden], hidden ** -0.5),
            (p + "self_attn.o_proj.weight", [hidden, q_out], q_out ** -0.5),
            (p + "mlp.gate_proj.weight", [inter, hidden], hidden ** -0.5),
            (p + "mlp.up_proj.weight", [inter, hidden], hidden ** -0.5),
            (p + "mlp.down_proj.weight", [hidden, inter], inter ** -0.5),
        ]
    return sorted(tensors, key=lambda t: t[0])


def header_bytes(tensors: list[tuple[str, list[int], float | None]]) -> bytes:
    """The safetensors header (8-byte length, then JSON padded with spaces to a multiple of 8)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, _ in tensors:
        nbytes = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 → bf16 bits, round to nearest even (no NaNs here)."""
    bits = values.view(np.uint32)
    bits += np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (bits >> np.uint32(16)).astype("<u2")


def write_weights(path: Path, seed: int) -> int:
    tensors = layout(CONFIG)
    parameters = 0
    with open(path, "wb") as file:
        file.write(header_bytes(tensors))
        for index, (name, shape, std) in enumerate(tensors):
            count = int(np.prod(shape))
            parameters += count
            if std is None:
                file.write(np.full(count, 0x3F80, dtype="<u2").tobytes())  # 1.0 in bf16
                continue
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            done = 0
            while done < count:
                n = min(CHUNK_ELEMENTS, count - done)
                values = rng.standard_normal(n, dtype=np.float32)
                values *= np.float32(std)
                file.write(to_bf16(values).tobytes())
                done += n
            if index % 20 == 0:
                log(f"  {index + 1}/{len(tensors)} tensors, {parameters / 1e9:.2f} G parameters written")
    return parameters


# MARK: - Tokenizer


def write_tokenizer(out: Path, vocab_gguf: Path) -> None:
    """tokenizer.json + tokenizer_config.json from a vocab-only Llama-3 GGUF, as Llama 3 ships them."""
    from transformers import AutoTokenizer  # heavy: imported only here

    with tempfile.TemporaryDirectory() as staging:
        # transformers reads `gguf_file` relative to a folder; link the GGUF into an empty one.
        link = Path(staging) / vocab_gguf.name
        link.symlink_to(vocab_gguf.resolve())
        tokenizer = AutoTokenizer.from_pretrained(staging, gguf_file=vocab_gguf.name)
        tokenizer.save_pretrained(Path(staging) / "saved")
        document = json.loads((Path(staging) / "saved" / "tokenizer.json").read_text(encoding="utf-8"))

    vocab_size = CONFIG["vocab_size"]
    # transformers' converter adds an <|endoftext|> unknown token past the vocabulary (id 128256);
    # Llama 3 has none, and convert_hf_to_gguf.py refuses an id ≥ vocab_size.
    document["added_tokens"] = [t for t in document["added_tokens"] if t["id"] < vocab_size]
    document["model"]["unk_token"] = None
    document["model"]["ignore_merges"] = True  # as Llama 3's tokenizer.json (and llama.cpp's llama-bpe)
    ids = {t["content"]: t["id"] for t in document["added_tokens"]}
    assert ids[BOS] == CONFIG["bos_token_id"] and ids[EOS] == CONFIG["eos_token_id"], ids
    ids_in_vocab = set(document["model"]["vocab"].values()) | set(ids.values())
    assert ids_in_vocab == set(range(vocab_size)), f"{len(ids_in_vocab)} ids, expected 0..<{vocab_size}"
    # Llama 3's post-processor: byte-level offsets, then <|begin_of_text|> before each sequence.
    bos = {"SpecialToken": {"id": BOS, "type_id": 0}}
    document["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {BOS: {"id": BOS, "ids": [CONFIG["bos_token_id"]], "tokens": [BOS]}}},
    ]}
    (out / "tokenizer.json").write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    # tokenizer_config.json in the published shape (Llama-3.2-1B's lists every special token).
    config = {
        "added_tokens_decoder": {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                  "single_word", "special")}
                                 for t in document["added_tokens"]},
        "bos_token": BOS,
        "clean_up_tokenization_spaces": True,
        "eos_token": EOS,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def check_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(out / "tokenizer.json")).encode("Hello world").ids
    assert ids == [CONFIG["bos_token_id"], 9906, 1917], ids  # Llama 3: <|begin_of_text|> Hello ␣world
    log(f"tokenizer: 'Hello world' -> {ids}")


# MARK: - Main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--vocab-gguf", type=Path, default=DEFAULT_VOCAB_GGUF,
                        help="vocab-only Llama-3 GGUF (default: llama.cpp's models/ggml-vocab-llama-bpe.gguf)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even when OUTDIR is complete")
    options = parser.parse_args()

    out: Path = options.out.resolve()
    stamp_text = f"seed {options.seed}\nscript {hashlib.sha256(Path(__file__).read_bytes()).hexdigest()}\n"
    if not options.force and (out / ".complete").exists() and (out / ".complete").read_text() == stamp_text:
        log(f"up to date: {out}")
        return 0
    if not options.vocab_gguf.exists():
        print(f"error: no vocabulary GGUF at {options.vocab_gguf} (run make llama-cpp, or give --vocab-gguf)",
              file=sys.stderr)
        return 1

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    start = time.monotonic()
    (partial / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    (partial / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2) + "\n")
    log(f"tokenizer from {options.vocab_gguf.name} (transformers' GGUF converter, ~20 s)")
    write_tokenizer(partial, options.vocab_gguf)
    check_tokenizer(partial)
    log(f"model.safetensors: random bf16 weights, seed {options.seed} (~1 min)")
    parameters = write_weights(partial / "model.safetensors", options.seed)
    size = (partial / "model.safetensors").stat().st_size
    (partial / ".complete").write_text(stamp_text)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    log(f"done in {time.monotonic() - start:.0f} s: {out} ({parameters:,} parameters, model.safetensors {size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
