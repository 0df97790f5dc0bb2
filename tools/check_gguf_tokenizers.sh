#!/usr/bin/env bash
# Holds the GGUFs ckpt writes to llama.cpp's own tokenizer: for each model folder, ckpt-convert
# writes a GGUF, llama.cpp's llama-tokenize (pinned build, tools/build_llama_cpp.sh) tokenizes a
# text with it, and the ids are compared with those of the folder's tokenizer.json under the
# reference `tokenizers` library (.venv). A wrong tokenizer.ggml.pre shows up here as a different
# split; the script prints the pre-tokenizer name and how many ids agree, and exits 1 on a mismatch.
#
# Usage: tools/check_gguf_tokenizers.sh [FOLDER ...]
#   default: fixtures/models/tiny-llama (named gpt-2 by structure), SmolLM2 (make smollm2; smollm by
#   hash), and a tiny Llama made here around ../shared/assets' Llama-2 tokenizer.json (SentencePiece
#   style: written as llama.cpp's llama vocabulary, merges as scores).
# Text: the first 50,000 bytes of WikiText-2 (../shared/assets) plus fixtures/text/eval.txt.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
tokenize=.build/llama.cpp/bin/llama-tokenize
[ -x "$tokenize" ] || { echo "error: $tokenize missing (run make llama-cpp)" >&2; exit 1; }
[ -x .build/release/ckpt-convert ] || { echo "error: .build/release/ckpt-convert missing (run make release)" >&2; exit 1; }
folders=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ ${#folders[@]} -eq 0 ]; then
    folders=(fixtures/models/tiny-llama .build/bench/smollm2-135m-bf16)
    if [ -f ../shared/assets/tokenizers/llama_tokenizer.json ]; then
        # The fixture's shapes with Llama-2's 32,000-token vocabulary (random weights: only the tokenizer is under test).
        mkdir -p "$work/llama-spm"
        cp ../shared/assets/tokenizers/llama_tokenizer.json "$work/llama-spm/tokenizer.json"
        cp ../shared/assets/tokenizers/llama_tokenizer_config.json "$work/llama-spm/tokenizer_config.json"
        .venv/bin/python - "$work/llama-spm" <<'PY'
import json, sys
import numpy as np
from safetensors.numpy import save_file
folder = sys.argv[1]
config = json.load(open("fixtures/models/tiny-llama/config.json"))
config["vocab_size"] = 32000
json.dump(config, open(f"{folder}/config.json", "w"), indent=2)
from safetensors import safe_open
rng = np.random.default_rng(0)
tensors = {}
with safe_open("fixtures/models/tiny-llama/model.safetensors", "np") as f:
    for name in f.keys():
        shape = list(f.get_slice(name).get_shape())
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            shape[0] = 32000
        tensors[name] = (rng.standard_normal(shape) * 0.02).astype(np.float32)
save_file(tensors, f"{folder}/model.safetensors", metadata={"format": "pt"})
PY
        folders+=("$work/llama-spm")
    fi
fi
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
