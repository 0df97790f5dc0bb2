#!/usr/bin/env bash
# `make bench`: runs tools/bench/run.py after `swift build -c release`.
#
# The peers (PyTorch + safetensors, bitsandbytes, gguf-py, transformers, PEFT, tokenizers) run from
# the reference venv (.venv, made by tools/setup_venv.sh). Without it, ckpt is measured alone with the system python3: the venv is
# a multi-GB install, so the benchmark says how to get it rather than installing it itself.
# Arguments are passed to run.py (e.g. --only conversion).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv_python="$repo/.venv/bin/python"

if [ -x "$venv_python" ] && "$venv_python" -c 'import torch, safetensors' 2>/dev/null; then
    exec "$venv_python" "$repo/tools/bench/run.py" "$@"
fi

echo "bench: no reference venv at $repo/.venv (run tools/setup_venv.sh): measuring ckpt alone, without peers" >&2
exec python3 "$repo/tools/bench/run.py" --no-peers "$@"
