#!/usr/bin/env bash
# Creates the reference Python environment in <repo>/.venv (git-ignored) and
# installs tools/requirements.txt into it.
#
# Idempotent and quick on a second run: a stamp file inside the venv records the
# hash of requirements.txt and the interpreter version it was installed for; when
# both still match, nothing is installed. Any change to requirements.txt (or a
# different python3) triggers a full `pip install -r` again.
#
# Usage: tools/setup_venv.sh            (PYTHON=/path/to/python3 to override)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
req="$repo/tools/requirements.txt"
stamp="$venv/.ckpt-requirements.sha256"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "error: $python not found (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

# The pins are for CPython 3.11 wheels (numpy, torch, tokenizers are binary).
pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$pyver" != "3.11" ]; then
    echo "warning: tools/requirements.txt was resolved for Python 3.11, found $pyver" >&2
fi

want="$( { sha256sum "$req" | cut -d' ' -f1; echo "python $pyver"; } | sha256sum | cut -d' ' -f1)"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup_venv: creating $venv" >&2
    "$python" -m venv "$venv"
fi

echo "setup_venv: installing tools/requirements.txt (first time: ~6 GB, mostly CUDA wheels torch insists on)" >&2
# Remove the stamp first so an interrupted install is retried next time.
rm -f "$stamp"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet -r "$req"
"$venv/bin/python" -m pip check >&2
echo "$want" > "$stamp"
echo "setup_venv: ready" >&2
