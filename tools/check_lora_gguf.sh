#!/usr/bin/env bash
# Checks ckpt's LoRA GGUF where it matters: llama.cpp applying it at run time must give the
# perplexity of the model ckpt merged. On SmolLM2-135M with a PEFT r16 adapter on every projection
# (tools/bench/peers/make_lora_adapter.py; B non-zero), WikiText-2 test, ctx 512:
#
#   llama-perplexity -m base.gguf --lora lora.gguf       (ckpt-convert ADAPTER lora.gguf --base BASE)
#   llama-perplexity -m merged.gguf                      (ckpt-merge-lora, then ckpt-convert --type f32)
#
# and requires the two to agree within 0.1% (the issue's bar). Both GGUFs are F32 (ckpt-convert), so
# the only difference is where the update is applied. Also converts the adapter with llama.cpp's own
# convert_lora_to_gguf.py and runs it the same way, for the reference row.
#
# Usage: tools/check_lora_gguf.sh [CHUNKS]     (default 8 chunks; needs `make smollm2 llama-cpp` and the venv)
# Writes .build/bench/lora-gguf/ and prints one line per run plus the verdict; exit 1 when it fails.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
chunks="${1:-8}"
bin="$repo/.build/release"
llama="$repo/.build/llama.cpp/bin"
py="$repo/.venv/bin/python"
base="$repo/.build/bench/smollm2-135m-bf16"
work="$repo/.build/bench/lora-gguf"
adapter="$repo/.build/bench/merge/smollm2-lora-r16-seed1"
text="$repo/../shared/assets/corpora/wikitext-2-raw_wiki.test.raw"
mkdir -p "$work"

[ -d "$adapter" ] || "$py" "$repo/tools/bench/peers/make_lora_adapter.py" "$base" "$adapter" 1
"$bin/ckpt-convert" "$base" "$work/base-f32.gguf" --type f32 --force --quiet >/dev/null
"$bin/ckpt-convert" "$adapter" "$work/lora-ckpt.gguf" --base "$base" --force --quiet >/dev/null
"$bin/ckpt-merge-lora" "$base" "$adapter" "$work/merged" --dtype f32 --force --quiet >/dev/null
"$bin/ckpt-convert" "$work/merged" "$work/merged-f32.gguf" --type f32 --force --quiet >/dev/null
"$py" "$repo/.build/llama.cpp/src/convert_lora_to_gguf.py" --base "$base" --outtype f32 --outfile "$work/lora-llamacpp.gguf" "$adapter" \
    >"$work/convert_lora.log" 2>&1

ppl() {  # the final PPL estimate of one llama-perplexity run
    "$llama/llama-perplexity" "$@" -f "$text" -c 512 --chunks "$chunks" -t 2 -b 512 2>&1 | tee -a "$work/perplexity.log" |
        sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
}
: >"$work/perplexity.log"
merged=$(ppl -m "$work/merged-f32.gguf")
ours=$(ppl -m "$work/base-f32.gguf" --lora "$work/lora-ckpt.gguf")
theirs=$(ppl -m "$work/base-f32.gguf" --lora "$work/lora-llamacpp.gguf")
base_ppl=$(ppl -m "$work/base-f32.gguf")
echo "base alone:                          PPL $base_ppl"
echo "ckpt-merged model:                   PPL $merged"
echo "base + ckpt's LoRA GGUF (--lora):    PPL $ours"
echo "base + convert_lora_to_gguf (--lora): PPL $theirs"
python3 - "$merged" "$ours" <<'EOF'
import sys
merged, ours = map(float, sys.argv[1:3])
rel = abs(ours - merged) / merged
print(f"--lora vs merged: {rel * 100:.4f}% apart (bar: 0.1%)")
sys.exit(0 if rel <= 0.001 else 1)
EOF
