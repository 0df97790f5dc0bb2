#!/usr/bin/env bash
# Holds the GGUFs ckpt writes to llama.cpp's own tokenizer: for each model folder, ckpt-convert
# writes a GGUF, llama.cpp's llama-tokenize (pinned build, tools/build_llama_cpp.sh) tokenizes a
# text with it, and the ids are compared with those of the folder's tokenizer.json under the
# reference `tokenizers` library (.venv). A wrong tokenizer.ggml.pre shows up here as a different
# split; the script prints the pre-tokenizer name and how many ids agree, and exits 1 on a mismatch.
#
# Usage: tools/check_gguf_tokenizers.sh [FOLDER ...]
#   default: fixtures/models/tiny-llama (named gpt-2 by structure) and SmolLM2 (make smollm2; smollm by hash)
# Text: the first 50,000 bytes of WikiText-2 (../shared/assets) plus fixtures/text/eval.txt.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
tokenize=.build/llama.cpp/bin/llama-tokenize
[ -x "$tokenize" ] || { echo "error: $tokenize missing (run make llama-cpp)" >&2; exit 1; }
[ -x .build/release/ckpt-convert ] || { echo "error: .build/release/ckpt-convert missing (run make release)" >&2; exit 1; }
folders=("$@")
[ ${#folders[@]} -gt 0 ] || folders=(fixtures/models/tiny-llama .build/bench/smollm2-135m-bf16)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{ head -c 50000 ../shared/assets/corpora/wikitext-2-raw_wiki.test.raw 2>/dev/null || true; cat fixtures/text/eval.txt; } > "$work/text.txt"

failed=0
for folder in "${folders[@]}"; do
    [ -d "$folder" ] || { echo "$folder: absent, skipped"; continue; }
    .build/release/ckpt-convert "$folder" "$work/model.gguf" --type f16 --force --quiet > /dev/null
    "$tokenize" -m "$work/model.gguf" -f "$work/text.txt" --ids --no-bos --log-disable 2>/dev/null | tail -n 1 > "$work/llama.ids"
    if ! .venv/bin/python - "$folder" "$work" <<'PY'; then failed=1; fi
import ast, sys
sys.path.insert(0, ".build/llama.cpp/src/gguf-py")
from gguf import GGUFReader
from tokenizers import Tokenizer
folder, work = sys.argv[1], sys.argv[2]
text = open(f"{work}/text.txt", "rb").read().decode("utf-8")
ours = Tokenizer.from_file(f"{folder}/tokenizer.json").encode(text, add_special_tokens=False).ids
llama = ast.literal_eval(open(f"{work}/llama.ids").read())
pre = GGUFReader(f"{work}/model.gguf").fields["tokenizer.ggml.pre"].contents()
same = sum(1 for a, b in zip(ours, llama) if a == b)
first = next((i for i, (a, b) in enumerate(zip(ours, llama)) if a != b), None)
ok = ours == llama
print(f"{folder}: tokenizer.ggml.pre = {pre}; tokenizers {len(ours)} ids, llama.cpp {len(llama)} ids, "
      f"{'identical' if ok else f'first difference at {first}'}")
sys.exit(0 if ok else 1)
PY
done
exit $failed
