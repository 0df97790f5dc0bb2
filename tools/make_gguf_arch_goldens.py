#!/usr/bin/env python3
"""Goldens for the GGUF writer per architecture: what llama.cpp's own converter and quantizer write.

For every tiny model of fixtures/architectures (the bf16 folders; the *-nf4 ones are skipped), plus the two
extra cases below (gpt2, qwen3-moe-sparse), the pinned convert_hf_to_gguf.py is run with --outtype bf16, then
the pinned llama-quantize with a few presets, and fixtures/gguf-architectures/goldens.json records, per case:

  bf16        {gguf tensor name: [GGML type, sha256 of the data, shape as ne (ggml order)]}, the converter's output
  Q8_0 ...    {gguf tensor name: [GGML type, sha256]} after `llama-quantize BF16 OUT PRESET 2`
              (or {"refused": "..."} when llama-quantize exits non-zero); a model with F32 weights (gpt2) is
              quantized from the converter's --outtype f32 file instead ("quantize_input": "f32"): the
              pipeline that keeps every stored bit, which is what ckpt reproduces
  metadata    every key/value of the bf16 file in file order, as [key, GGUF type, value], except the
              tokenizer.* keys and general.name; arrays as "ARRAY[SUBTYPE]"
  tensor_order the gguf tensor names in file order (the bf16 table is a sorted JSON object)
  names       {hf tensor name: gguf tensor name} as the converter mapped them (logged by a wrapper around the
              model class's modify_tensors: HF name in, gguf names out; tensors that produce nothing on their own,
              like per-expert MoE weights, are attributed to the stacked tensor by comparing the data)
  generated   {gguf name: values} of the tensors that come from no HF tensor (rope_freqs, rope_factors_long/short)
  dropped     HF tensors that reach no gguf tensor (e.g. Gemma's lm_head, filtered by the converter)
  transforms  {gguf name: identity | permute | plus_one | transposed | stacked | generated | other}, found by
              comparing the bf16 GGUF data with the HF data (bf16 widened to f32, or f32): identity = same values
              (BF16 tensors: same bytes; norms are written F32), permute = llama's Q/K row permutation
              (LlamaModel.permute), plus_one = f32(w) + 1 (Gemma norms), transposed = w.T (GPT-2's Conv1D
              c_attn/c_proj/c_fc weights), stacked = np.stack of the HF experts in expert order. When the GGUF
              tensor is BF16 the candidate is first rounded to bf16 as gguf-py's quantizer does (round to nearest
              even; a no-op on bf16 sources, it matters for the f32 GPT-2 weights)
  P+imatrix   for IMATRIX_CASES: the preset quantized with <case>.imatrix.gguf (llama-imatrix, ctx 64, 8 chunks
              of the first 20000 bytes of Tiny Shakespeare, on the BF16 file; MoE experts per expert)
  loads       whether `llama-perplexity -m <Q4_K_M file> -f <first 4000 bytes of tinyshakespeare> -c 64
              --chunks 1 -t 2` exits 0, and its final PPL estimate
  or          {"convert_refused": "<last line of the converter's stderr>"} when the converter fails.

The converter runs on a folder named "model" holding symlinks to the case's files, not on the case folder:
gguf-py's Metadata derives general.name/basename/size_label/finetune/version from the folder name (phi4-mini
would get basename "phi4" and size_label "mini"; a general.name containing "phi3" makes llama.cpp's vocab
loader look up "</s>", which the tiny tokenizer lacks, and the load fails). With "model" the file has
general.name "Model" and general.size_label from the parameter count.

Extra cases (not folders of fixtures/architectures):
  gpt2              fixtures/models/tiny-gpt2 (F32 weights, tied embeddings). Its config.json is written by
                    transformers 5, which has no `n_ctx` (only `n_positions`), but the converter's GPT2Model reads
                    hparams["n_ctx"] (real GPT-2 configs such as openai-community/gpt2 carry both). So the
                    converter's "model" folder gets a copy of config.json with "n_ctx" = n_positions added (every
                    other file a symlink); the fixture itself is unchanged, and ckpt reads it as is (it takes
                    n_positions when n_ctx is absent).
  qwen3-moe-sparse  fixtures/gguf-architectures/qwen3-moe-sparse/, written by this script (sparse_variant):
                    fixtures/architectures/qwen3-moe has a dense layer 0 (mlp_only_layers [0]), which the converter
                    refuses (the qwen3-moe case records that). The variant drops layer 0's mlp.{gate,up,down}_proj,
                    gives layer 0 the MoE tensors of layer 1 (mlp.gate.weight, mlp.experts.E.{gate,up,down}_proj.
                    weight, same bytes) under layer-0 names, sets "mlp_only_layers": [] in config.json, and copies
                    the other files of qwen3-moe. The safetensors is written like the other fixtures (header
                    {"__metadata__":{"format":"pt"}, then the tensors sorted by name}, compact JSON padded with
                    spaces to a multiple of 8 bytes, data in header order), so a rerun rewrites it byte for byte.

Patches applied to the converter in its subprocess (tokenizer handling only, never a tensor):
  - conversion.base.TextModel.get_vocab_base_pre returns 'gpt-2': the fixtures' 512-token byte-level BPE
    tokenizer (fixtures/models/tiny-llama) is unknown to llama.cpp's pre-tokenizer table.
  - Gemma2Model.set_vocab -> self._set_vocab_gpt2(): the stock one needs a SentencePiece tokenizer.model,
    which these fixtures lack (Gemma3Model already falls back to _set_vocab_gpt2 without one).
  - Phi3MiniModel.set_vocab -> self._set_vocab_gpt2(): the stock one takes the GPT-2 path only when
    tokenizer_config.json says "GPT2Tokenizer" (these say "TokenizersBackend") and otherwise needs
    tokenizer.model.
  - The model class's modify_tensors is wrapped to log (hf name, [gguf names]) to a JSON file; it returns
    exactly what the original yields.

Pins: llama-cpp-python 0.3.36 (llama.cpp 0c1e570), built by tools/build_llama_cpp.sh.

Usage: .venv/bin/python tools/make_gguf_arch_goldens.py   (about 40 seconds on 4 cores, 1.5 minutes on 2)
"""

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures" / "architectures"
OUT = REPO / "fixtures" / "gguf-architectures"
LLAMA = REPO / ".build" / "llama.cpp"
CASES = ["gemma2", "gemma3", "gpt2", "llama-dynamic", "llama-linear", "llama-yarn", "llama3", "mistral-sliding", "mixtral",
         "olmo2", "phi3", "phi4-mini", "qwen2-yarn", "qwen3", "qwen3-moe", "qwen3-moe-sparse"]
# Cases whose model is not fixtures/architectures/<case> (see the docstring).
SOURCES = {"gpt2": REPO / "fixtures" / "models" / "tiny-gpt2", "qwen3-moe-sparse": OUT / "qwen3-moe-sparse"}
# config.json changes made only in the converter's copy of the folder.
CONFIG_PATCHES = {"gpt2": lambda config: {**config, "n_ctx": config["n_positions"]}}
PRESETS = ["Q8_0", "Q4_K_M", "Q6_K", "Q2_K", "IQ4_NL"]
# Cases with an importance matrix from llama-imatrix (ctx 64, 8 chunks of the first 20000 bytes of Tiny
# Shakespeare), saved as fixtures/gguf-architectures/<case>.imatrix.gguf, and these presets quantized with it.
IMATRIX_CASES = ["gpt2", "qwen3-moe-sparse"]
IMATRIX_PRESETS = ["Q4_K_M", "IQ4_NL"]
CORPUS = REPO.parent / "shared" / "assets" / "corpora" / "tinyshakespeare_input.txt"

sys.path.insert(0, str(LLAMA / "src" / "gguf-py"))
from gguf import GGUFReader  # noqa: E402

# Runs in the converter's subprocess: argv = [case folder, out file, names log].
CONVERT = r"""
import json, sys
sys.path.insert(0, %(gguf_py)r); sys.path.insert(0, %(src)r)
folder, out, log, outtype = sys.argv[1:5]
sys.argv = ["convert_hf_to_gguf.py", folder, "--outtype", outtype, "--outfile", out]
import conversion.base as b
b.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
import convert_hf_to_gguf as c
events = []
original_get_model_class = c.get_model_class
def get_model_class(*args, **kwargs):
    cls = original_get_model_class(*args, **kwargs)
    if cls.__name__ in ("Gemma2Model", "Phi3MiniModel"):
        cls.set_vocab = lambda self: self._set_vocab_gpt2()
    inner = cls.modify_tensors
    def modify_tensors(self, data_torch, name, bid):
        outs = list(inner(self, data_torch, name, bid))
        events.append([name, [n for n, _ in outs]])
        return outs
    cls.modify_tensors = modify_tensors
    return cls
c.get_model_class = get_model_class
try:
    c.main()
finally:
    with open(log, "w") as f:
        json.dump(events, f)
"""


def sha(data):
    return hashlib.sha256(bytes(data.tobytes())).hexdigest()


def case_dir(case):
    return SOURCES.get(case, FIXTURES / case)


def read_safetensors(path):
    """{name: float32 array} of a bf16 or f32 safetensors file (widening is exact), in file order."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        if meta["dtype"] == "BF16":
            u16 = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<u2")
            out[name] = (u16.astype(np.uint32) << 16).view(np.float32).reshape(meta["shape"])
        else:
            assert meta["dtype"] == "F32", (name, meta["dtype"])
            out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(meta["shape"])
    return out


def write_safetensors(path, tensors):
    """{name: (dtype, shape, raw bytes)} as a safetensors file laid out like the other fixtures (and like the
    safetensors library writes them): header {"__metadata__": {"format": "pt"}, tensors sorted by name} as
    compact JSON, padded with spaces to a multiple of 8 bytes; data in header order."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(tensors[name][2] for name in sorted(tensors)))


def raw_safetensors(path):
    """{name: (dtype, shape, raw bytes)} of a safetensors file."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    return {name: (meta["dtype"], meta["shape"], raw[8 + n + meta["data_offsets"][0]:8 + n + meta["data_offsets"][1]])
            for name, meta in header.items() if name != "__metadata__"}


def sparse_variant():
    """fixtures/gguf-architectures/qwen3-moe-sparse: qwen3-moe with layer 0's dense MLP replaced by a copy of
    layer 1's MoE tensors (router and experts, same bytes) and "mlp_only_layers": []; other files copied."""
    source, folder = FIXTURES / "qwen3-moe", SOURCES["qwen3-moe-sparse"]
    folder.mkdir(parents=True, exist_ok=True)
    tensors = raw_safetensors(source / "model.safetensors")
    dense = [f"model.layers.0.mlp.{p}.weight" for p in ("gate_proj", "up_proj", "down_proj")]
    assert all(name in tensors for name in dense)
    tensors = {name: t for name, t in tensors.items() if name not in dense}
    for name in list(tensors):
        if name.startswith(("model.layers.1.mlp.gate.", "model.layers.1.mlp.experts.")):
            tensors["model.layers.0." + name[len("model.layers.1."):]] = tensors[name]
    write_safetensors(folder / "model.safetensors", tensors)
    config = json.loads((source / "config.json").read_text())
    assert config["mlp_only_layers"] == [0] and config.get("decoder_sparse_step", 1) == 1
    config["mlp_only_layers"] = []
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for f in sorted(source.iterdir()):
        if f.name not in ("config.json", "model.safetensors"):
            (folder / f.name).write_bytes(f.read_bytes())


def gguf_values(t):
    """A gguf tensor's values as float32 in numpy (row-major, reversed ne) order; None if not float."""
    shape = [int(x) for x in reversed(t.shape)]
    raw = bytes(t.data.tobytes())
    if t.tensor_type.name == "BF16":
        u16 = np.frombuffer(raw, dtype="<u2")
        return (u16.astype(np.uint32) << 16).view(np.float32).reshape(shape)
    if t.tensor_type.name == "F32":
        return np.frombuffer(raw, dtype="<f4").reshape(shape)
    if t.tensor_type.name == "F16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(shape)
    return None


def permute(w, n_head, n_head_kv):
    """conversion/llama.py LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def same(a, b):
    return a is not None and b is not None and a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def to_bf16(w):
    """float32 values rounded to bf16 and widened back, as gguf-py's BF16 quantizer rounds (nearest even;
    NaN made quiet). Exact, so a no-op, on values that came from bf16."""
    n = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)
    n = np.where((n & 0x7fffffff) > 0x7f800000, (n & np.uint32(0xffff0000)) | np.uint32(64 << 16), n)
    n = ((n.astype(np.uint64) + (0x7fff + ((n >> 16) & 1))) >> 16).astype(np.uint32) << 16
    return n.view(np.float32).reshape(np.shape(w))


def classify(g, sources, hf, config, bf16=False):
    """How the gguf values g came from the HF tensors `sources` (names, in stacking order); bf16: the gguf
    tensor is BF16, so each candidate is rounded to bf16 before the comparison."""
    if not sources:
        return "generated"
    if g is None:
        return "other"
    rounded = to_bf16 if bf16 else (lambda x: x)
    if len(sources) > 1:
        return "stacked" if same(g, rounded(np.stack([hf[s] for s in sources]))) else "other"
    w = hf[sources[0]]
    if same(g, rounded(w)):
        return "identity"
    n_head = config.get("num_attention_heads")
    n_kv = config.get("num_key_value_heads", n_head)
    if w.ndim >= 1 and n_head:
        for h, kv in ((n_head, n_head), (n_head, n_kv)):
            try:
                if same(g, rounded(permute(w, h, kv))):
                    return "permute"
            except ValueError:
                pass
    if same(g, rounded(w + np.float32(1))):
        return "plus_one"
    if w.ndim == 2 and same(g, rounded(np.ascontiguousarray(w.T))):
        return "transposed"
    return "other"


def metadata(reader):
    out = []
    for f in reader.fields.values():
        if f.name.startswith(("GGUF.", "tokenizer.")) or f.name == "general.name":
            continue
        types = [t.name for t in f.types]
        type_name = types[0] if len(types) == 1 else f"{types[0]}[{','.join(types[1:])}]"
        value = f.contents()
        if isinstance(value, float):
            value = float(np.float32(value)) if types[0] == "FLOAT32" else value
        out.append([f.name, type_name, value])
    return out


def names_of(events, hf, gguf_vals, bf16_names=()):
    """names / generated / dropped from the converter's (hf name, [gguf names]) log; bf16_names: the BF16 gguf
    tensors (HF members compared rounded to bf16)."""
    names, generated, sources, pending = {}, [], {}, []
    for name, outs in events:
        if not outs:
            pending.append(name)
            continue
        if name not in hf:
            generated += outs
            continue
        group, pending = pending + [name], []
        if len(group) == 1:
            for o in outs:
                sources.setdefault(o, []).append(name)
            names[name] = outs[0] if len(outs) == 1 else outs
            continue
        # Stacked: find each member as a slice (along the first axis) of one of the outputs.
        for member in group:
            hits = []
            for o in outs:
                g = gguf_vals.get(o)
                if g is not None and g.ndim == hf[member].ndim + 1:
                    m = to_bf16(hf[member]) if o in bf16_names else hf[member]
                    hits += [(o, e) for e in range(g.shape[0]) if same(g[e], m)]
            if len(hits) == 1:
                o, e = hits[0]
                names[member] = o
                sources.setdefault(o, []).append((e, member))
            else:
                names[member] = outs
    for o, src in sources.items():
        if src and isinstance(src[0], tuple):
            sources[o] = [m for _, m in sorted(src)]
    dropped = [n for n in hf if n not in names] + pending
    return names, generated, sorted(set(dropped)), sources


def safetensors_header(path):
    """The safetensors header of `path` (name → dtype, shape, offsets), without its __metadata__."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def convert(case, work, out, log, outtype="bf16"):
    """The converter on a folder named "model" holding links to the case's files: gguf-py's Metadata derives
    general.name / basename / size_label / finetune / version from the folder name (phi4-mini would get
    basename "phi4" and size_label "mini"; a name containing "phi3" makes llama.cpp's vocab loader look up
    "</s>", which the tiny tokenizer lacks). With "model" only general.name ("Model") and the size label
    computed from the parameter count are written. A case in CONFIG_PATCHES gets a patched copy of
    config.json instead of a link (gpt2: "n_ctx" = n_positions)."""
    folder = work / "model"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    for f in sorted(case_dir(case).iterdir()):
        if f.name == "config.json" and case in CONFIG_PATCHES:
            config = CONFIG_PATCHES[case](json.loads(f.read_text()))
            (folder / f.name).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        else:
            (folder / f.name).symlink_to(f)
    code = CONVERT % {"gguf_py": str(LLAMA / "src" / "gguf-py"), "src": str(LLAMA / "src")}
    return subprocess.run([sys.executable, "-c", code, str(folder), str(out), str(log), outtype], capture_output=True, text=True)


def perplexity(model, corpus):
    """llama-perplexity's exit code and output. Its logger is asynchronous and leaked at exit
    (common/log.cpp, common_log_main), so the last lines are sometimes lost: run again (up to 20 times,
    the result is deterministic) until the final estimate, or the load error, is in the output."""
    args = [str(LLAMA / "bin" / "llama-perplexity"), "-m", str(model), "-f", str(corpus), "-c", "64", "--chunks", "1", "-t", "2"]
    for _ in range(20):
        p = subprocess.run(args, capture_output=True, text=True)
        text = p.stdout + p.stderr
        if ("Final estimate" in text) if p.returncode == 0 else ("error" in text or "failed" in text):
            break
    return p.returncode, text


def last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def run_case(case, tmp, corpus):
    work = tmp / case
    work.mkdir()
    bf16, log = work / "bf16.gguf", work / "names.json"
    source = case_dir(case)
    result = {"hf_architecture": json.loads((source / "config.json").read_text())["architectures"][0]}
    proc = convert(case, work, bf16, log)
    if proc.returncode != 0:
        result["convert_refused"] = last_line(proc.stderr)
        print(f"{case}: convert refused: {result['convert_refused']}", file=sys.stderr)
        return case, result
    config = json.loads((source / "config.json").read_text())
    hf = read_safetensors(source / "model.safetensors")
    reader = GGUFReader(str(bf16))
    vals = {t.name: gguf_values(t) for t in reader.tensors}
    result["bf16"] = {t.name: [t.tensor_type.name, sha(t.data), [int(x) for x in t.shape]] for t in reader.tensors}
    result["tensor_order"] = [t.name for t in reader.tensors]
    result["metadata"] = metadata(reader)
    result["gguf_architecture"] = str(reader.fields["general.architecture"].contents())
    bf16_names = {t.name for t in reader.tensors if t.tensor_type.name == "BF16"}
    names, generated, dropped, sources = names_of(json.loads(log.read_text()), hf, vals, bf16_names)
    result["names"], result["dropped"] = names, dropped
    result["generated"] = {n: [float(x) for x in vals[n].ravel()] for n in generated}
    result["transforms"] = {t.name: classify(vals[t.name], sources.get(t.name, []), hf, config, t.name in bf16_names)
                            for t in reader.tensors}
    # An F32 checkpoint is quantized from the converter's F32 output (--outtype f32), the pipeline that
    # keeps every bit of it and the one ckpt reproduces (it quantizes the stored values, never re-rounded
    # to bf16); a bf16 checkpoint's F32 and BF16 outputs hold the same values.
    quantize_input = bf16
    if any(t["dtype"] == "F32" and len(t["shape"]) == 2 for t in safetensors_header(source / "model.safetensors").values()):
        quantize_input = work / "f32.gguf"
        proc = convert(case, work, quantize_input, work / "names-f32.json", "f32")
        if proc.returncode != 0:
            raise SystemExit(f"{case}: --outtype f32 failed: {last_line(proc.stderr)}")
        result["quantize_input"] = "f32"
    for preset in PRESETS:
        q = work / f"{preset}.gguf"
        p = subprocess.run([str(LLAMA / "bin" / "llama-quantize"), str(quantize_input), str(q), preset, "2"], capture_output=True, text=True)
        if p.returncode != 0:
            result[preset] = {"refused": f"llama-quantize exit {p.returncode}: {last_line(p.stderr)}"}
            continue
        result[preset] = {t.name: [t.tensor_type.name, sha(t.data)] for t in GGUFReader(str(q)).tensors}
    if case in IMATRIX_CASES:
        # llama-imatrix on the BF16 file (experts per expert), then the presets that use it.
        calibration = tmp / "calibration.txt"
        imatrix = OUT / f"{case}.imatrix.gguf"
        subprocess.run([str(LLAMA / "bin" / "llama-imatrix"), "-m", str(bf16), "-f", str(calibration), "-c", "64", "--chunks", "8",
                        "-t", "2", "-o", str(imatrix)], check=True, capture_output=True)
        for preset in IMATRIX_PRESETS:
            q = work / f"{preset}-imatrix.gguf"
            subprocess.run([str(LLAMA / "bin" / "llama-quantize"), "--imatrix", str(imatrix), str(quantize_input), str(q), preset, "2"],
                           check=True, capture_output=True)
            result[preset + "+imatrix"] = {t.name: [t.tensor_type.name, sha(t.data)] for t in GGUFReader(str(q)).tensors}
    loads = {"command": "llama-perplexity -m Q4_K_M.gguf -f corpus -c 64 --chunks 1 -t 2"}
    if "refused" in result["Q4_K_M"]:
        loads.update(ok=False, error="no Q4_K_M file")
    else:
        code, text = perplexity(work / "Q4_K_M.gguf", corpus)
        loads.update(ok=code == 0, exit=code)
        m = re.search(r"Final estimate: PPL = ([0-9.eE+-]+|nan|inf) \+/- ([0-9.eE+-]+|nan|inf)", text)
        if m:
            loads["ppl"], loads["ppl_stderr"] = float(m.group(1)), float(m.group(2))
        if code != 0:
            errors = [line.split(" E ", 1)[-1].strip() for line in text.splitlines() if " E " in line or "error" in line]
            loads["error"] = errors[0] if errors else last_line(text)
    result["loads"] = loads
    print(f"{case}: {result['gguf_architecture']}, {len(result['bf16'])} tensors, loads {loads['ok']} ppl {loads.get('ppl')}",
          file=sys.stderr)
    return case, result


def dumps(obj, indent=0):
    """JSON with sorted keys: objects one member a line, short lists (and tensor rows) inline."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {dumps(obj[k], indent + 1)}" for k in sorted(obj)]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        flat = json.dumps(obj)
        if len(flat) <= 160 and not any(isinstance(x, dict) for x in obj):
            return flat
        return "[\n" + ",\n".join(inner + dumps(x, indent + 1) for x in obj) + "\n" + pad + "]"
    return json.dumps(obj)


def main():
    subprocess.run([str(REPO / "tools" / "build_llama_cpp.sh")], check=True, stdout=sys.stderr)
    goldens = {"generator": "tools/make_gguf_arch_goldens.py", "llama.cpp": "0c1e570 (llama-cpp-python 0.3.36)",
               "presets": PRESETS, "corpus": "first 4000 bytes of shared/assets/corpora/tinyshakespeare_input.txt", "cases": {}}
    OUT.mkdir(parents=True, exist_ok=True)
    sparse_variant()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus.txt"
        corpus.write_bytes(CORPUS.read_bytes()[:4000])
        (tmp / "calibration.txt").write_bytes(CORPUS.read_bytes()[:20000])
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for case, result in pool.map(lambda c: run_case(c, tmp, corpus), CASES):
                goldens["cases"][case] = result
    (OUT / "goldens.json").write_text(dumps(goldens) + "\n")
    print(f"wrote {OUT / 'goldens.json'} ({(OUT / 'goldens.json').stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
