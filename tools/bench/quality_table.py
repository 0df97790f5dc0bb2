#!/usr/bin/env python3
"""`make bench-quality`: what each quantization costs SmolLM2-135M, measured by ckpt-compare.

Every variant is made by ckpt from the bf16 folder in one command (GGUF presets by ckpt-convert,
bitsandbytes NF4 and compressed-tensors int8 by ckpt-quantize); the importance matrix comes from
ckpt-imatrix on a different text (Tiny Shakespeare, 32 chunks of 512). Each variant is then
compared with the bf16 model over WikiText-2 (ctx 512, full-vocabulary KL, both models run):
size on disk, bits per weight (bytes x 8 over the model's parameters), PPL change, mean and p99
KL divergence, and how often the top token agrees. Prints a markdown table and writes
.build/bench/quality/quality.json.

Usage: tools/bench/quality_table.py [--model DIR] [--chunks 16] [--ctx 512]
"""

import argparse
import json
import os
import struct
import subprocess
import tempfile
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".build" / "release"
ASSETS = REPO.parent / "shared" / "assets" / "corpora"

VARIANTS = [  # label, program, extra arguments, output name
    ("Q8_0", "ckpt-convert", ["--type", "q8_0"], "q8_0.gguf"),
    ("Q6_K", "ckpt-convert", ["--type", "q6_k"], "q6_k.gguf"),
    ("Q5_K_M", "ckpt-convert", ["--type", "q5_k_m"], "q5_k_m.gguf"),
    ("Q4_K_M", "ckpt-convert", ["--type", "q4_k_m"], "q4_k_m.gguf"),
    ("Q4_K_M + imatrix", "ckpt-convert", ["--type", "q4_k_m", "--imatrix", "{imatrix}"], "q4_k_m-imatrix.gguf"),
    ("IQ4_XS + imatrix", "ckpt-convert", ["--type", "iq4_xs", "--imatrix", "{imatrix}"], "iq4_xs-imatrix.gguf"),
    ("Q4_0", "ckpt-convert", ["--type", "q4_0"], "q4_0.gguf"),
    ("NF4 (bitsandbytes)", "ckpt-quantize", ["--scheme", "nf4"], "nf4"),
    ("NF4 + --optimize-scales", "ckpt-quantize", ["--scheme", "nf4", "--optimize-scales"], "nf4-opt"),
    ("NF4 + imatrix", "ckpt-quantize", ["--scheme", "nf4", "--imatrix", "{imatrix}"], "nf4-imatrix"),
    ("int8 (compressed-tensors)", "ckpt-quantize", ["--scheme", "int8"], "int8"),
]

# Issue 14's table: method x format, int4 in groups of 64 (SmolLM2's rows of 576 are not a multiple
# of 128), calibration on Tiny Shakespeare (the first 16384 tokens, chunks of 512).
CALIBRATION = ["--calibration-text", "{shakespeare}", "--calibration-tokens", "16384", "--ctx", "512"]
W4A16 = [
    ("int4 g64, round to nearest", "pack-quantized", ["--scheme", "int4", "--block-size", "64"], "int4-rtn"),
    ("int4 g64 asymmetric, round to nearest", "pack-quantized", ["--scheme", "int4", "--block-size", "64", "--asymmetric"], "int4-rtn-asym"),
    ("int4 g64, GPTQ + act-order, --mse 0", "pack-quantized", ["--scheme", "int4", "--block-size", "64", "--method", "gptq", "--act-order", "--mse", "0", *CALIBRATION], "int4-gptq-nomse"),
    ("int4 g64, GPTQ + act-order (mse 2.4), first-token weights measured", "pack-quantized", ["--scheme", "int4", "--block-size", "64", "--method", "gptq", "--act-order", *CALIBRATION], "int4-gptq"),
    ("int4 g64, GPTQ + act-order (mse 2.4), --first-token-weight 8", "pack-quantized", ["--scheme", "int4", "--block-size", "64", "--method", "gptq", "--act-order", "--first-token-weight", "8", *CALIBRATION], "int4-gptq-ftw8"),
    ("int4 g64, GPTQ + act-order, --mse 0", "GPTQ (v1)", ["--scheme", "int4", "--block-size", "64", "--format", "gptq", "--method", "gptq", "--act-order", "--mse", "0", *CALIBRATION], "int4-gptq-format-nomse"),
    ("int4 g64, GPTQ + act-order (mse 2.4)", "GPTQ (v1)", ["--scheme", "int4", "--block-size", "64", "--format", "gptq", "--method", "gptq", "--act-order", *CALIBRATION], "int4-gptq-format"),
    ("int4 g64, AWQ (scales + clip)", "pack-quantized", ["--scheme", "int4", "--block-size", "64", "--method", "awq", *CALIBRATION], "int4-awq"),
    ("int4 g64, AWQ (scales + clip)", "AWQ GEMM", ["--scheme", "int4", "--block-size", "64", "--format", "awq", "--method", "awq", *CALIBRATION], "int4-awq-format"),
    ("NF4, round to nearest", "bitsandbytes", ["--scheme", "nf4"], "nf4-rtn"),
    ("NF4, GPTQ + act-order, first-token weights measured", "bitsandbytes", ["--scheme", "nf4", "--method", "gptq", "--act-order", *CALIBRATION], "nf4-gptq"),
    ("NF4, GPTQ + act-order, --first-token-weight 8", "bitsandbytes", ["--scheme", "nf4", "--method", "gptq", "--act-order", "--first-token-weight", "8", *CALIBRATION], "nf4-gptq-ftw8"),
    ("NF4, GPTQ + act-order, --mse 2.4", "bitsandbytes", ["--scheme", "nf4", "--method", "gptq", "--act-order", "--mse", "2.4", *CALIBRATION], "nf4-gptq-mse"),
    ("NF4, AWQ (scales + clip)", "bitsandbytes", ["--scheme", "nf4", "--method", "awq", *CALIBRATION], "nf4-awq"),
]


def parameters(folder: Path) -> int:
    total = 0
    for f in folder.glob("*.safetensors"):
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for d in info["shape"]:
                    count *= d
                total += count
    return total


def size_on_disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def run(argv):
    subprocess.run([str(a) for a in argv], check=True, stdout=subprocess.DEVNULL)


def run_measured(argv) -> int | None:
    """Runs argv; returns its peak RSS in bytes when GNU time is installed (/usr/bin/time), else None."""
    gnu_time = Path("/usr/bin/time")
    if not gnu_time.exists():
        run(argv)
        return None
    with tempfile.NamedTemporaryFile("r") as report:
        run([gnu_time, "-f", "%M", "-o", report.name, *argv])
        return int(report.read().split()[-1]) * 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / ".build" / "bench" / "smollm2-135m-bf16"))
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--only", choices=["gguf", "w4a16"], help="one of the two tables")
    args = ap.parse_args()
    model = Path(args.model)
    out = REPO / ".build" / "bench" / "quality"
    out.mkdir(parents=True, exist_ok=True)
    wiki, shakespeare = ASSETS / "wikitext-2-raw_wiki.test.raw", ASSETS / "tinyshakespeare_input.txt"
    for needed in (model, wiki, shakespeare, BIN / "ckpt-compare"):
        if not needed.exists():
            sys.exit(f"error: {needed} is missing (make smollm2, make release, and the shared assets)")
    imatrix = out / "shakespeare.imatrix.gguf"
    started = time.time()
    if args.only != "w4a16":
        run([BIN / "ckpt-imatrix", model, "--text", shakespeare, "--ctx", "512", "--chunks", "32", "-o", imatrix, "--force", "--quiet"])
    params = parameters(model)
    base_bytes = size_on_disk(model)
    rows = [{"variant": "bf16 (the base)", "bytes": base_bytes, "bpw": base_bytes * 8 / params}]
    def measure(label, program, extra, name):
        target = out / name
        made = time.time()
        peak = run_measured([BIN / program, model, target,
                             *[a.replace("{imatrix}", str(imatrix)).replace("{shakespeare}", str(shakespeare)) for a in extra], "--force", "--quiet"])
        seconds = time.time() - made
        result = subprocess.run([str(BIN / "ckpt-compare"), str(model), str(target), "--text", str(wiki), "--ctx", str(args.ctx),
                                 "--chunks", str(args.chunks), "--json", "--quiet"], check=False, capture_output=True, text=True)
        r = json.loads(result.stdout)
        print(f"{label}: done", file=sys.stderr)
        return {"variant": label, "bytes": size_on_disk(target), "bpw": size_on_disk(target) * 8 / params, "seconds": seconds, "peak_rss": peak,
                "ppl_base": r["ppl_base"], "ppl": r["ppl_candidate"], "delta_ppl": r["ppl_ratio"] - 1,
                "kld_mean": r["kld"]["mean"], "kld_p99": r["kld"]["p99"], "same_top": r["same_top_rate"]}

    for label, program, extra, name in VARIANTS if args.only != "w4a16" else []:
        rows.append(measure(label, program, extra, name))
    w4a16 = []
    for label, file_format, extra, name in W4A16 if args.only != "gguf" else []:
        row = measure(label, "ckpt-quantize", extra, name)
        row["format"] = file_format
        w4a16.append(row)
    (out / "quality.json").write_text(json.dumps({"model": str(model), "chunks": args.chunks, "ctx": args.ctx, "parameters": params,
                                                  "rows": rows, "w4a16": w4a16, "seconds": time.time() - started}, indent=1))
    print(f"SmolLM2-135M ({params / 1e6:.1f} M parameters), WikiText-2 test, {args.chunks} chunks of {args.ctx}; "
          f"imatrix from Tiny Shakespeare (ckpt-imatrix, 32 x 512); every variant made by ckpt, measured by ckpt-compare against bf16\n")
    print("| variant | size | bits/weight | PPL | ΔPPL | mean KLD | p99 KLD | same top token |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows if len(rows) > 1 else []:
        if "ppl" not in r:
            print(f"| {r['variant']} | {r['bytes'] / 1e6:.1f} MB | {r['bpw']:.2f} | {rows[1]['ppl_base']:.4f} | — | — | — | — |")
            continue
        print(f"| {r['variant']} | {r['bytes'] / 1e6:.1f} MB | {r['bpw']:.2f} | {r['ppl']:.4f} | {100 * r['delta_ppl']:+.2f}% | "
              f"{r['kld_mean']:.5f} | {r['kld_p99']:.4f} | {100 * r['same_top']:.2f}% |")

    if not w4a16:
        return
    rtn = next(r for r in w4a16 if r["variant"].startswith("int4 g64, round"))
    rtn_asym = next(r for r in w4a16 if r["variant"].startswith("int4 g64 asymmetric, round"))
    print("\nCalibrated 4-bit (issue 14): calibration on Tiny Shakespeare (16384 tokens, chunks of 512), the same comparison; "
          "'of RTN' is the PPL (and KLD) increase over round-to-nearest's: int4 g64's (asymmetric for the AWQ GEMM rows, whose format always has zero points), NF4's for the NF4 rows\n")
    print("| method | format | size | ΔPPL | of RTN | mean KLD | KLD of RTN | p99 KLD | same top token | time | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in w4a16:
        base = rtn_asym if r["format"] == "AWQ GEMM" else rtn
        if r["variant"].startswith("NF4"):
            base = next((x for x in w4a16 if x["variant"].startswith("NF4, round")), base)
        peak = f"{r['peak_rss'] / 1e6:.0f} MB" if r.get("peak_rss") else "—"
        print(f"| {r['variant']} | {r['format']} | {r['bytes'] / 1e6:.1f} MB | {100 * r['delta_ppl']:+.2f}% | {r['delta_ppl'] / base['delta_ppl']:.2f}x | "
              f"{r['kld_mean']:.5f} | {r['kld_mean'] / base['kld_mean']:.3f}x | {r['kld_p99']:.4f} | {100 * r['same_top']:.2f}% | {r['seconds']:.1f} s | {peak} |")


if __name__ == "__main__":
    main()
