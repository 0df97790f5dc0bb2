"""Shared preamble and helpers of the fixture generators in tools/ (make_fixtures.py and the
make_*_goldens.py scripts).

Importing this module pins the environment for determinism, so import it before torch (or
anything that imports torch). Why these pins: torch picks its CPU kernels by the best
instruction set present, and the vectorised AVX2/AVX512 kernels and the scalar ones disagree:
float32 NaN -> bfloat16 is 0xFFFF in the vector kernels but 0x7FC0 in the scalar ones, bfloat16
-> float16 keeps NaN payloads only in the vector ones, and torch's float32 sum vectorises by 8
lanes with AVX2 and 16 with AVX512, which give different last bits. Pin AVX2 (what every x86
machine here has), and pin MKL's and oneDNN's code paths too, so the outputs do not depend on
whether the machine that regenerates them also has AVX512.

The other helpers (log, sha256, write_text/json, fresh_dir, setup_libraries, write_sums) import
nothing heavy at module level; setup_libraries imports torch and transformers when called.
"""

import hashlib
import json
import os
import shutil
import struct
import sys
from pathlib import Path

ENV_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    # Tokenizer training in parallel is deterministic too, but one thread keeps the second core
    # free for the Swift build running beside us.
    "TOKENIZERS_PARALLELISM": "false",
    "RAYON_NUM_THREADS": "1",
    # Nothing may reach for the Hugging Face hub (no network here anyway).
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def pin_environment(**extra: str):
    """Sets ENV_PINS (and any extra variables) in os.environ; must run before torch is imported."""
    os.environ.update(ENV_PINS)
    os.environ.update(extra)


pin_environment()


def pin_hash_seed():
    """Re-executes the running script once with PYTHONHASHSEED=0 unless it is already set, so
    that set/dict orders of strings are the same in every run."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def f32_hex(x) -> str:
    """Big-endian hex of x rounded to float32."""
    return struct.pack(">f", float(x)).hex()


def write_text(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def write_json(path: Path, obj):
    # ensure_ascii=False so unicode tensor names stay readable in the manifests.
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def fresh_dir(path: Path) -> Path:
    """Empties a generated folder so files dropped from the generator disappear too."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def setup_libraries():
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.use_deterministic_algorithms(True)
    cap = torch.backends.cpu.get_cpu_capability()
    if cap != "AVX2":
        sys.exit(f"error: torch CPU capability is {cap}, expected AVX2 (this generator pins it "
                 "so results match across machines); run on an x86-64 machine with AVX2")


def site_packages_file(module, rel: str) -> Path:
    return Path(module.__file__).resolve().parent / rel


def cite(module, rel: str, anchor: str, nth: int = 1) -> str:
    """'<package>/<rel>:<line>' of the nth line containing anchor in the installed source."""
    path = site_packages_file(module, rel)
    seen = 0
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if anchor in line:
            seen += 1
            if seen == nth:
                return f"`{module.__name__}/{rel}:{i}`"
    sys.exit(f"error: anchor {anchor!r} not found in {path}; the pinned package changed?")


def models_section_requested(only: str | None, script: str) -> bool:
    """For the golden scripts, which accept make_fixtures.py's --only and run only when it is
    absent or names the 'models' section; logs the skip otherwise."""
    if only is not None and "models" not in [s.strip() for s in only.split(",")]:
        log(f"{script}: skipped (--only does not include 'models')")
        return False
    return True


# fixtures/ size budget. Was 10 MB; raised to 20 MB for fixtures/architectures/ (about 6.8 MB, most of
# it 28 F32 [64, 512] logit tensors), which tools/make_architecture_goldens.py adds; to 25 MB for
# the W4A16 formats (tools/make_w4a16_goldens.py: six quantized tiny-llama folders and the weights
# their reference loaders dequantize, ~4.4 MB) and GPTQ's reference cases (tools/make_gptq_goldens.py, 1.3 MB).
FIXTURES_BUDGET_BYTES = 25_000_000


def write_sums(out: Path):
    """Rewrites out/SHA256SUMS over every file under out (and enforces FIXTURES_BUDGET_BYTES)."""
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    for p in files:
        p.chmod(0o644)  # transformers writes weights 0600; keep the tree uniform
    lines = [f"{sha256_file(p)}  {p.relative_to(out).as_posix()}" for p in files]
    write_text(out / "SHA256SUMS", "\n".join(lines) + "\n")
    total = sum(p.stat().st_size for p in files)
    log(f"fixtures: {len(files)} files, {total / 1e6:.2f} MB")
    if total > FIXTURES_BUDGET_BYTES:
        sys.exit(f"error: fixtures/ is {total} bytes, over the {FIXTURES_BUDGET_BYTES / 1e6:.0f} MB budget")
