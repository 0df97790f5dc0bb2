#!/usr/bin/env python3
"""Goldens for `ckpt-convert --to gguf --type PRESET`: what llama.cpp's own tools write.

Two small llama models are generated from a seed (every weight a bf16 bit pattern drawn from
splitmix64, so ckpt's tests regenerate them bit for bit with no file: Tests/TestSupport/
SeededModels.swift), each converted by the pinned convert_hf_to_gguf.py (--outtype bf16), then
quantized by the pinned llama-quantize with every preset, with and without an importance matrix
made by the pinned llama-imatrix, and with --tensor-type / --leave-output-tensor /
--output-tensor-type / --pure. For each result fixtures/gguf-presets/goldens.json records, per
tensor, the GGML type and the sha256 of its data. The imatrix files are committed beside it.

  untied: hidden 256, intermediate 320 (ffn_down rows of 320: the fallback path), 4 layers,
          4 heads / 1 KV head (n_gqa 4), untied output
  tied:   hidden 320 (every 256-block type falls back), intermediate 512, 3 layers, 5 heads,
          tied embeddings (token_embd takes the output's rule)

The tokenizer is fixtures/models/tiny-llama's (512 tokens); convert_hf_to_gguf.py does not know
its pre-tokenizer, so this script tells it "gpt-2": that touches only tokenizer metadata, never a
tensor. Pins: llama-cpp-python 0.3.36 (llama.cpp 0c1e570), built by tools/build_llama_cpp.sh.

Usage: .venv/bin/python tools/make_gguf_preset_goldens.py   (about a minute)
"""

import hashlib
import json
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "fixtures" / "gguf-presets"
LLAMA = REPO / ".build" / "llama.cpp"
MASK = (1 << 64) - 1

MODELS = {
    "untied": dict(hidden_size=256, intermediate_size=320, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1,
                   tie_word_embeddings=False),
    "tied": dict(hidden_size=320, intermediate_size=512, num_hidden_layers=3, num_attention_heads=5, num_key_value_heads=5,
                 tie_word_embeddings=True),
}
PRESETS = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",
           "IQ4_NL", "IQ4_XS"]
IMATRIX_PRESETS = ["Q4_0", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_S", "Q6_K", "IQ4_NL", "IQ4_XS"]
# (name, llama-quantize options, preset)
EXTRA = [("overrides", ["--tensor-type", "attn_v=q8_0", "--tensor-type", "ffn_(up|gate)=q5_k"], "Q4_K_M"),
         ("leave-output", ["--leave-output-tensor"], "Q4_K_M"),
         ("output-type", ["--output-tensor-type", "q5_k", "--token-embedding-type", "q4_k"], "Q3_K_M"),
         ("pure", ["--pure"], "Q4_K_M")]


def splitmix64(seed):
    state = seed & MASK
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        yield z ^ (z >> 31)


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def bf16_bits(name, count, norm):
    """The seeded bf16 patterns of a tensor (the Swift twin: SeededModels.bf16Bits)."""
    out = bytearray()
    g = splitmix64(fnv1a64(name))
    for _ in range(count):
        u = next(g)
        if norm:
            bits = (127 << 7) | ((u >> 8) & 0x1F)
        else:
            exponent = 123 if (u >> 32) % 211 == 0 else 117 + (u >> 1) % 6
            bits = ((u & 1) << 15) | (exponent << 7) | ((u >> 8) & 0x7F)
        out += struct.pack("<H", bits)
    return bytes(out)


def tensors_of(cfg):
    h, f, L, heads, kv = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // heads
    names = [("model.embed_tokens.weight", [512, h]), ("model.norm.weight", [h])]
    if not cfg["tie_word_embeddings"]:
        names.append(("lm_head.weight", [512, h]))
    for i in range(L):
        p = f"model.layers.{i}."
        names += [(p + "input_layernorm.weight", [h]), (p + "post_attention_layernorm.weight", [h]),
                  (p + "self_attn.q_proj.weight", [heads * hd, h]), (p + "self_attn.k_proj.weight", [kv * hd, h]),
                  (p + "self_attn.v_proj.weight", [kv * hd, h]), (p + "self_attn.o_proj.weight", [h, heads * hd]),
                  (p + "mlp.gate_proj.weight", [f, h]), (p + "mlp.up_proj.weight", [f, h]), (p + "mlp.down_proj.weight", [h, f])]
    return names


def write_model(folder, cfg):
    folder.mkdir(parents=True)
    header, data = {}, bytearray()
    for name, shape in sorted(tensors_of(cfg)):
        count = 1
        for d in shape:
            count *= d
        raw = bf16_bits(name, count, norm=len(shape) == 1)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "vocab_size": 512,
              "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "bos_token_id": 0, "eos_token_id": 0,
              "torch_dtype": "bfloat16", **cfg}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        shutil.copy(REPO / "fixtures" / "models" / "tiny-llama" / f, folder / f)


def convert(folder, out):
    code = ("import sys; sys.path.insert(0, %r); sys.path.insert(0, %r); sys.argv = %r\n"
            "import conversion.base as b; b.TextModel.get_vocab_base_pre = lambda self, tokenizer: 'gpt-2'\n"
            "import convert_hf_to_gguf as c; c.main()\n") % (
        str(LLAMA / "src" / "gguf-py"), str(LLAMA / "src"), ["convert_hf_to_gguf.py", str(folder), "--outtype", "bf16", "--outfile", str(out)])
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def tensor_table(path):
    sys.path.insert(0, str(LLAMA / "src" / "gguf-py"))
    from gguf import GGUFReader
    reader = GGUFReader(str(path))
    return {t.name: [t.tensor_type.name, hashlib.sha256(bytes(t.data.tobytes())).hexdigest()] for t in reader.tensors}


def quantize(src, dst, preset, extra=(), imatrix=None):
    args = [str(LLAMA / "bin" / "llama-quantize"), *extra]
    if imatrix:
        args += ["--imatrix", str(imatrix)]
    subprocess.run(args + [str(src), str(dst), preset, "2"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    subprocess.run([str(REPO / "tools" / "build_llama_cpp.sh")], check=True, stdout=sys.stderr)
    text = (REPO.parent / "shared" / "assets" / "corpora" / "tinyshakespeare_input.txt").read_bytes()[:20000]
    goldens = {"generator": "tools/make_gguf_preset_goldens.py", "llama.cpp": "0c1e570 (llama-cpp-python 0.3.36)", "models": {}}
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "calibration.txt").write_bytes(text)
        for model, cfg in MODELS.items():
            folder = tmp / model
            write_model(folder, cfg)
            bf16 = tmp / f"{model}-bf16.gguf"
            convert(folder, bf16)
            imatrix = OUT / f"{model}.imatrix.gguf"
            subprocess.run([str(LLAMA / "bin" / "llama-imatrix"), "-m", str(bf16), "-f", str(tmp / "calibration.txt"), "-c", "64",
                            "--chunks", "8", "-t", "2", "-o", str(imatrix)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            results = {"config": cfg, "bf16": tensor_table(bf16)}
            runs = [(p, p, [], None) for p in PRESETS] + [(p + "+imatrix", p, [], imatrix) for p in IMATRIX_PRESETS]
            runs += [(name, p, opts, None) for name, opts, p in EXTRA]
            for key, preset, opts, matrix in runs:
                out = tmp / "q.gguf"
                try:
                    quantize(bf16, out, preset, opts, matrix)
                except subprocess.CalledProcessError as e:
                    # e.g. --output-tensor-type q5_k on rows of 320: llama-quantize aborts (no fallback there).
                    results[key] = {"refused": f"llama-quantize exit {e.returncode}"}
                    print(f"{model} {key}: refused", file=sys.stderr)
                    continue
                results[key] = tensor_table(out)
                print(f"{model} {key}: {len(results[key])} tensors", file=sys.stderr)
            goldens["models"][model] = results
    goldens["extra_options"] = {name: opts for name, opts, _ in EXTRA}
    (OUT / "goldens.json").write_text(json.dumps(goldens, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
