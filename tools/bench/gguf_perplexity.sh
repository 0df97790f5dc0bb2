#!/usr/bin/env bash
# `make bench-gguf`: ckpt-perplexity beside llama-perplexity on the GGUFs llama.cpp itself made of
# SmolLM2-135M (tools/make_smollm2_ggufs.sh: F32, Q8_0, Q4_0, Q4_K_M), same text, same ctx and
# chunks, same thread count, run one after the other; then ckpt-compare of the bf16 folder
# against the Q4_K_M GGUF end to end; then ckpt's own Q8_0 GGUF of the bf16 folder under
# llama-perplexity beside llama.cpp's conversion of the same folder (same PPL when ckpt names the
# pre-tokenizer as llama.cpp does). Prints markdown tables: PPL, relative difference, wall s.
#
# Environment: CORPUS (default ../shared/assets WikiText-2 test), CHUNKS (16), CTX (512), THREADS (2).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
corpus="${CORPUS:-$repo/../shared/assets/corpora/wikitext-2-raw_wiki.test.raw}"
chunks="${CHUNKS:-16}" ctx="${CTX:-512}" threads="${THREADS:-2}"
ggufs="$repo/.build/bench/smollm2-ggufs"
ckpt="$repo/.build/release"
llama="$repo/.build/llama.cpp/bin/llama-perplexity"
[ -x "$llama" ] || { echo "error: $llama missing (run make llama-cpp)" >&2; exit 1; }
[ -f "$ggufs/smollm2-Q4_K_M.gguf" ] || { echo "error: $ggufs: no GGUFs (run make smollm2-ggufs)" >&2; exit 1; }

seconds() { date +%s.%N; }
echo "| GGUF (made by llama-quantize) | ckpt-perplexity | llama-perplexity | difference | ckpt s | llama.cpp s |"
echo "|---|---|---|---|---|---|"
for type in f32 Q8_0 Q4_0 Q4_K_M; do
    file="$ggufs/smollm2-$type.gguf"
    t0=$(seconds)
    ours=$("$ckpt/ckpt-perplexity" "$file" --text "$corpus" --ctx "$ctx" --chunks "$chunks" --threads "$threads" --json \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["perplexity"])')
    t1=$(seconds)
    theirs=$("$llama" -m "$file" -f "$corpus" -c "$ctx" -b "$ctx" --chunks "$chunks" -t "$threads" 2>&1 \
        | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
    t2=$(seconds)
    python3 - "$type" "$ours" "$theirs" "$t0" "$t1" "$t2" <<'PY'
import sys
t, ours, theirs, t0, t1, t2 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), *map(float, sys.argv[4:])
print(f"| {t} | {ours:.4f} | {theirs:.4f} | {100 * (ours / theirs - 1):+.3f}% | {t1 - t0:.1f} | {t2 - t1:.1f} |")
PY
done
echo
echo "ckpt-compare bf16 folder against the Q4_K_M GGUF ($chunks chunks of $ctx):"
"$ckpt/ckpt-compare" "$repo/.build/bench/smollm2-135m-bf16" "$ggufs/smollm2-Q4_K_M.gguf" --text "$corpus" --ctx "$ctx" \
    --chunks "$chunks" --threads "$threads" --quiet

echo
echo "ckpt-convert's Q8_0 GGUF of the bf16 folder beside llama.cpp's (convert_hf_to_gguf + llama-quantize), both under llama-perplexity:"
echo "| GGUF | tokenizer.ggml.pre | llama-perplexity PPL |"
echo "|---|---|---|"
ours_gguf="$(mktemp -d)/smollm2-ckpt-q8_0.gguf"
"$ckpt/ckpt-convert" "$repo/.build/bench/smollm2-135m-bf16" "$ours_gguf" --type q8_0 --quiet > /dev/null
for file in "$ours_gguf" "$ggufs/smollm2-Q8_0.gguf"; do
    ppl=$("$llama" -m "$file" -f "$corpus" -c "$ctx" -b "$ctx" --chunks "$chunks" -t "$threads" 2>&1 \
        | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
    pre=$("$repo/.venv/bin/python" -c 'import sys; sys.path.insert(0, sys.argv[2]); from gguf import GGUFReader; print(GGUFReader(sys.argv[1]).fields["tokenizer.ggml.pre"].contents())' \
        "$file" "$repo/.build/llama.cpp/src/gguf-py")
    echo "| $(basename "$file") | $pre | $ppl |"
done
rm -rf "$(dirname "$ours_gguf")"
