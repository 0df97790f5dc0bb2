#!/usr/bin/env python3
"""`make bench`: ckpt beside its peers, measured in the same run, printed as one markdown report.

Sections:
  conversion  kernel throughput from `ckpt-bench conversion`, as a share of memcpy bandwidth
  inspect     `ckpt-inspect --json` on sparse shard sets of growing weight size (must stay flat),
              beside safetensors' `safe_open` reading the same headers
  convert     `ckpt-convert --type f16` of a ~1 GB bf16 checkpoint beside safetensors + torch
              doing the same job: wall time, peak RSS, and whether the outputs are identical

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
SECTIONS = ("conversion", "inspect", "convert")

# Targets from DESIGN.md's Performance section.
CONVERSION_TARGET_PCT_OF_MEMCPY = 50.0  # at 2 threads
INSPECT_FLAT_TOLERANCE = 1.5  # largest/smallest inspect time; O(header) means ~1

PEER_NAME = "safetensors+torch (python)"


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# MARK: - Measuring processes


@dataclass
class ProcessRun:
    seconds: float
    max_rss_bytes: int | None
    stdout: str


# GNU time reports the peak RSS of its own child. Reading the child's rusage here instead would be
# wrong: Linux starts a child's ru_maxrss at its parent's RSS (the fork copies it, or vfork shares
# it), so every tool would be charged for this Python process, torch and all.
GNU_TIME = Path("/usr/bin/time")


def run_process(argv: list[str]) -> ProcessRun:
    """Runs argv to completion: wall time, peak RSS (None without GNU time) and stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(mode="r") as rss:
        wrapped = [str(GNU_TIME), "-f", "%M", "-o", rss.name, *argv] if GNU_TIME.exists() else argv
        start = time.perf_counter()
        status = subprocess.run(wrapped, stdout=out, stderr=err).returncode
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if status != 0:
            raise RuntimeError(f"{' '.join(map(str, argv))} exited {status}:\n{err.read().decode(errors='replace')}")
        kilobytes = rss.read().split()
        return ProcessRun(seconds, int(kilobytes[-1]) * 1024 if kilobytes else None, out.read().decode())


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
    ]


# MARK: - Main


def environment(peers: bool) -> dict:
    info = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if peers:
        from importlib.metadata import version  # not `import torch`: this process stays small

        info.update(torch=version("torch"), safetensors=version("safetensors"))
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-peers", action="store_true", help="measure ckpt alone (no torch/safetensors)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: {','.join(SECTIONS)})")
    options = parser.parse_args()
    sections = [s.strip() for s in options.only.split(",") if s.strip()]
    if unknown := [s for s in sections if s not in SECTIONS]:
        parser.error(f"unknown section(s) {', '.join(unknown)} (expected some of {', '.join(SECTIONS)})")
    peers = not options.no_peers

    for tool in ("ckpt-bench", "ckpt-inspect", "ckpt-convert"):
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
        + (f"peers: torch {env['torch']}, safetensors {env['safetensors']}" if peers else "peers: not run (no venv)"),
        "",
    ]
    if "conversion" in sections:
        bench_conversion(rows, report)
    if "inspect" in sections:
        bench_inspect(rows, report, peers)
    if "convert" in sections:
        bench_convert(rows, report, peers)

    results = WORK / "results.json"
    results.write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    print("\n".join(report))
    print(f"Rows written to {results.relative_to(REPO)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
