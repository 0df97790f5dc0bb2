#!/usr/bin/env bash
# Reference GGUF files of SmolLM2-135M made by llama.cpp itself, for goldens and benchmarks:
# llama.cpp's convert_hf_to_gguf.py (the vendored copy tools/build_llama_cpp.sh unpacks, run in
# the reference venv) turns the bf16 Hugging Face folder into an F32 GGUF, and llama-quantize
# makes Q8_0, Q4_0 and Q4_K_M from that F32 file.
#
# Usage: tools/make_smollm2_ggufs.sh [BF16_DIR] [--ppl]
#   BF16_DIR  the bf16 SmolLM2 folder (default .build/bench/smollm2-135m-bf16, made by
#             `make smollm2`); this script never builds ckpt.
#   --ppl     also run llama-perplexity on each GGUF (wikitext-2 test, -c 512 --chunks 16 -t 2
#             -b 512, each run timed with /usr/bin/time -v) and write
#             .build/bench/llama_ppl_reference.txt.
# Environment: CORPUS=file to score another text with --ppl; THREADS (default 2).
#
# Writes into .build/bench/smollm2-ggufs/:
#   smollm2-f32.gguf smollm2-Q8_0.gguf smollm2-Q4_0.gguf smollm2-Q4_K_M.gguf
#   metadata.txt    every metadata key of smollm2-f32.gguf (gguf-py's reader; arrays summarised)
#   logs/           convert and quantize logs (llama-quantize's fallback notes are in them)
# A stamp (inputs' sha256, pins, this script, llama.cpp's build stamp) makes a second run skip
# the conversion; --ppl always runs.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bf16_dir="$repo/.build/bench/smollm2-135m-bf16"
run_ppl=0
for arg in "$@"; do
    case "$arg" in
        --ppl) run_ppl=1 ;;
        -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "error: unknown option $arg" >&2; exit 64 ;;
        *) bf16_dir="$arg" ;;
    esac
done
bf16_dir="$(cd "$bf16_dir" 2>/dev/null && pwd)" || { echo "error: no folder ${bf16_dir} (run make smollm2)" >&2; exit 1; }
for f in config.json tokenizer.json; do
    [ -f "$bf16_dir/$f" ] || { echo "error: $bf16_dir: no $f" >&2; exit 1; }
done

out="$repo/.build/bench/smollm2-ggufs"
py="$repo/.venv/bin/python"
threads="${THREADS:-2}"
corpus="${CORPUS:-/work/shared/assets/corpora/wikitext-2-raw_wiki.test.raw}"
# convert_hf_to_gguf.py imports sentencepiece before it looks for tokenizer.model; the rest it
# needs (torch, transformers, numpy, ...) is in tools/requirements.txt.
sentencepiece_version="0.2.3"
quant_types=(Q8_0 Q4_0 Q4_K_M)

say() { echo "make_smollm2_ggufs: $*" >&2; }

# --- llama.cpp (instant when already built) ---
"$repo/tools/build_llama_cpp.sh" >&2
llama="$repo/.build/llama.cpp"
bin="$llama/bin"
src="$llama/src"

stamp="$out/.stamp"
want="$( {
    (cd "$bf16_dir" && find . -maxdepth 1 -type f ! -name '.*' -print0 | sort -z | xargs -0 sha256sum)
    echo "sentencepiece $sentencepiece_version"
    echo "quant ${quant_types[*]}"
    cat "$llama/.stamp"
    sha256sum < "${BASH_SOURCE[0]}"
} | sha256sum | cut -d' ' -f1)"

outputs=("$out/smollm2-f32.gguf")
for q in "${quant_types[@]}"; do outputs+=("$out/smollm2-$q.gguf"); done

have_all() { local f; for f in "${outputs[@]}" "$out/metadata.txt"; do [ -s "$f" ] || return 1; done; }

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && have_all; then
    say "up to date ($out)"
else
    rm -f "$stamp"
    mkdir -p "$out/logs"
    if ! "$py" -c 'import sentencepiece' 2>/dev/null; then
        say "pip install sentencepiece==$sentencepiece_version into $repo/.venv"
        "$py" -m pip install --disable-pip-version-check --no-input --quiet "sentencepiece==$sentencepiece_version"
    fi

    say "convert_hf_to_gguf.py $bf16_dir -> smollm2-f32.gguf"
    rm -f "$out/smollm2-f32.gguf.tmp"
    (cd "$src" && "$py" convert_hf_to_gguf.py "$bf16_dir" --outtype f32 \
        --outfile "$out/smollm2-f32.gguf.tmp") > "$out/logs/convert.log" 2>&1 || {
        tail -n 30 "$out/logs/convert.log" >&2; rm -f "$out/smollm2-f32.gguf.tmp"
        echo "error: convert_hf_to_gguf.py failed (log: $out/logs/convert.log)" >&2; exit 1; }
    mv "$out/smollm2-f32.gguf.tmp" "$out/smollm2-f32.gguf"

    for q in "${quant_types[@]}"; do
        say "llama-quantize smollm2-f32.gguf -> smollm2-$q.gguf"
        rm -f "$out/smollm2-$q.gguf.tmp"
        "$bin/llama-quantize" "$out/smollm2-f32.gguf" "$out/smollm2-$q.gguf.tmp" "$q" "$threads" \
            > "$out/logs/quantize-$q.log" 2>&1 || {
            tail -n 30 "$out/logs/quantize-$q.log" >&2; rm -f "$out/smollm2-$q.gguf.tmp"
            echo "error: llama-quantize $q failed (log: $out/logs/quantize-$q.log)" >&2; exit 1; }
        mv "$out/smollm2-$q.gguf.tmp" "$out/smollm2-$q.gguf"
    done

    # Metadata of the converted file, with gguf-py from the same vendored source.
    PYTHONPATH="$src/gguf-py" "$py" - "$out/smollm2-f32.gguf" > "$out/metadata.txt.tmp" <<'EOF'
import sys
from gguf import GGUFReader, GGUFValueType
r = GGUFReader(sys.argv[1])
for name, field in r.fields.items():
    if name.startswith("GGUF."):
        continue
    t = field.types[0] if field.types else None
    if t == GGUFValueType.ARRAY:
        n = len(field.data)
        head = [field.contents(i) for i in range(min(n, 3))] if n else []
        print(f"{name} = array[{field.types[1].name if len(field.types) > 1 else '?'}; {n}] first {head!r}")
    else:
        print(f"{name} = {field.contents()!r}")
print(f"tensors = {len(r.tensors)}")
EOF
    mv "$out/metadata.txt.tmp" "$out/metadata.txt"
    echo "$want" > "$stamp"
fi

ls -l "${outputs[@]}" "$out/metadata.txt" >&2

[ "$run_ppl" = 1 ] || exit 0

# --- llama-perplexity reference numbers ---
[ -f "$corpus" ] || { echo "error: no corpus $corpus" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
report="$repo/.build/bench/llama_ppl_reference.txt"
logs="$out/logs"
meta() { grep -m1 "^$1 = " "$out/metadata.txt" | sed "s/^$1 = //"; }

# Token count and BOS as llama-perplexity sees them: its -f drops one trailing '\n' (common's
# -f handler) and then processes escapes; llama-tokenize --stdin does the escapes, so it gets
# the file less that newline.
corpus_text() { if [ -z "$(tail -c 1 "$corpus")" ]; then head -c -1 "$corpus"; else cat "$corpus"; fi; }
ntok="$(corpus_text | "$bin/llama-tokenize" -m "$out/smollm2-f32.gguf" --stdin --show-count --log-disable 2>/dev/null \
    | sed -n 's/^Total number of tokens: //p')"
first_ids="$("$bin/llama-tokenize" -m "$out/smollm2-f32.gguf" -p "Hello world" --ids --log-disable 2>/dev/null | tail -n 1)"
bos_id="$(meta tokenizer.ggml.bos_token_id)"

{
    echo "# llama-perplexity reference numbers for SmolLM2-135M (written by tools/make_smollm2_ggufs.sh --ppl)"
    echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)   host: $(nproc) cores, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "# llama.cpp: commit $(cat "$llama/src-commit") vendored in llama-cpp-python 0.3.36; built by tools/build_llama_cpp.sh"
    echo "# GGUFs: $out (convert_hf_to_gguf.py --outtype f32 from $bf16_dir, then llama-quantize)"
    echo "# corpus: $corpus ($(wc -c < "$corpus") bytes, sha256 $(sha256sum "$corpus" | cut -c1-16)...)"
    (cd "$out" && sha256sum "${outputs[@]##*/}") | sed 's/^/# sha256 /'
    echo
    echo "tokenizer.ggml.model = $(meta tokenizer.ggml.model)"
    echo "tokenizer.ggml.pre = $(meta tokenizer.ggml.pre)"
    echo "tokenizer.ggml.add_bos_token = $(meta tokenizer.ggml.add_bos_token || true)"
    echo "tokenizer.ggml.bos_token_id = $bos_id"
    echo "llama-tokenize -p 'Hello world' --ids -> $first_ids"
    case "$first_ids" in
        "[$bos_id,"*) echo "adds BOS: yes (llama-perplexity puts BOS id $bos_id first in every chunk)" ;;
        *) echo "adds BOS: no (llama-perplexity scores the chunks as tokenized, no BOS)" ;;
    esac
    echo "corpus tokens as llama-perplexity tokenizes them (its -f drops the final '\n'; BOS included if added) = $ntok"
    echo "  -> $((ntok / 512)) whole chunks of 512 available; --chunks 16 uses the first $((16 * 512)) tokens; each chunk scores its last 255 (logits at positions 256..510): $((16 * 255)) tokens"
    echo "corpus line endings: $(grep -c $'\r$' "$corpus") of $(wc -l < "$corpus") lines end in CRLF (the '\r' bytes are tokenized too)"
    echo
    printf '%-8s %-22s %-8s %-8s %-9s %-9s %-10s %s\n' type "PPL +/- err" chunks n_ctx "wall s" "cpu s" "RSS MB" "file MB"
} > "$report.tmp"

details=""
for f in "${outputs[@]}"; do
    name="$(basename "$f" .gguf)"; type="${name#smollm2-}"
    cmd=("$bin/llama-perplexity" -m "$f" -f "$corpus" -c 512 -b 512 --chunks 16 -t "$threads")
    say "${cmd[*]}"
    load="$(cut -d' ' -f1-3 /proc/loadavg)"
    /usr/bin/time -v -o "$logs/time-ppl-$type.txt" "${cmd[@]}" > "$logs/ppl-$type.log" 2>&1 || {
        tail -n 30 "$logs/ppl-$type.log" >&2; echo "error: llama-perplexity failed on $f" >&2; exit 1; }
    final="$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 +\/- \2/p' "$logs/ppl-$type.log")"
    chunks_line="$(grep -m1 'calculating perplexity over' "$logs/ppl-$type.log" | sed 's/^.*calculating/calculating/')"
    chunks="$(echo "$chunks_line" | sed -n 's/.*over \([0-9]*\) chunks.*/\1/p')"
    nctx="$(echo "$chunks_line" | sed -n 's/.*n_ctx=\([0-9]*\).*/\1/p')"
    wall="$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$logs/time-ppl-$type.txt" \
        | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }')"
    rss_kb="$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$logs/time-ppl-$type.txt")"
    cpu="$(awk -F': ' '/User time \(seconds\)|System time \(seconds\)/ { s += $2 } END { printf "%.2f", s }' "$logs/time-ppl-$type.txt")"
    printf '%-8s %-22s %-8s %-8s %-9s %-9s %-10s %s\n' "$type" "$final" "$chunks" "$nctx" "$wall" "$cpu" \
        "$(awk -v k="$rss_kb" 'BEGIN { printf "%.0f", k / 1024 }')" \
        "$(awk -v b="$(stat -c %s "$f")" 'BEGIN { printf "%.1f", b / 1048576 }')" >> "$report.tmp"
    details+=$'\n'"## $type  (load average before the run: $load)"$'\n'"\$ ${cmd[*]}"$'\n'"$chunks_line"$'\n'"$(grep -m1 'Final estimate' "$logs/ppl-$type.log" | sed 's/^.*Final/Final/')"$'\n'
    details+="$(grep -E 'system_info|tokenization took|seconds per pass' "$logs/ppl-$type.log" | sed 's/^/  /' | head -n 6)"$'\n'
done

{
    echo
    echo "# Each run: /usr/bin/time -v -o LOG <command>; wall = Elapsed (wall clock), cpu = user + system seconds,"
    echo "# RSS = Maximum resident set size. Wall time is only comparable on an idle machine (see each run's load average)."
    echo "# Full logs: $logs/ppl-*.log, $logs/time-ppl-*.txt"
    echo "$details"
    echo "# GGUF metadata of smollm2-f32.gguf (gguf-py GGUFReader, arrays summarised):"
    sed 's/^/  /' "$out/metadata.txt"
} >> "$report.tmp"
mv "$report.tmp" "$report"
cat "$report"
