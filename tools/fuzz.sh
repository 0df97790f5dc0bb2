#!/usr/bin/env bash
# `make fuzz`: every parser under libFuzzer with AddressSanitizer, each seeded from fixtures/.
#
# One instrumented binary (.build/ckpt-fuzz) holds every target; CKPT_FUZZ_TARGET picks one
# (Fuzz/FuzzTargets.swift lists them). It is compiled with swiftc straight from the library's
# sources plus Fuzz/, because SwiftPM renames an executable's main and the fuzzer's own main
# would then not link; the normal build is never touched.
#
# Usage: tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]   (default 30 s, every target)
#        tools/fuzz.sh merge [TARGET ...]   folds the working corpus into the committed one
#        (libFuzzer -set_cover_merge=1: the fewest inputs keeping every feature, each at most 64 KB)
# Each target starts from its committed corpus (Fuzz/corpus/<target>/: the campaign's inputs,
# merged down to those that add coverage) plus the fixtures, and grows a working corpus under
# .build/fuzz/corpus/. Crashes land in .build/fuzz/crashes/<target>/ and make the script exit 1;
# CI (.ci/run) runs every target for 30 s this way.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export PATH="/opt/swift/usr/bin:$PATH"
seconds="${1:-30}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors shard-index gguf pytorch tokenizer config adapter-config adapter-weights quantized quantized-folder base-logprobs imatrix ggml-quantize)

binary=.build/ckpt-fuzz
sources=$(find Sources/CheckpointKit Fuzz -name '*.swift' | sort)
if [ ! -x "$binary" ] || [ -n "$(find $sources Sources/CKernels -newer "$binary" | head -1)" ]; then
    echo "fuzz: building $binary (libFuzzer + ASan)" >&2
    mkdir -p .build
    # The library's C kernels (AVX-512 twins chosen at run time), compiled as SwiftPM compiles them.
    clang -O2 -fsanitize=address -ISources/CKernels/include -c Sources/CKernels/kernels.c -o .build/ckpt-fuzz-ckernels.o
    # shellcheck disable=SC2086
    swiftc -j "$(nproc)" -sanitize=fuzzer,address -parse-as-library -O -module-name CheckpointKit \
        -Xcc -fmodule-map-file=Sources/COpenBLAS/module.modulemap -Xcc -fmodule-map-file=Sources/CZlib/module.modulemap \
        -Xcc -fmodule-map-file=Sources/CSystem/module.modulemap -Xcc -fmodule-map-file=Sources/CKernels/include/module.modulemap \
        $sources .build/ckpt-fuzz-ckernels.o -lopenblas -lz -o "$binary"
fi

if [ "${seconds}" = "merge" ]; then
    [ ${#targets[@]} -gt 0 ] || targets=(safetensors shard-index gguf pytorch tokenizer config adapter-config adapter-weights quantized quantized-folder base-logprobs imatrix ggml-quantize)
    for target in "${targets[@]}"; do
        small=$(mktemp -d)
        find ".build/fuzz/corpus/$target" -type f -size -65k -exec cp {} "$small/" \; 2>/dev/null || true
        mkdir -p "Fuzz/corpus/$target"
        CKPT_FUZZ_TARGET=$target "$binary" -set_cover_merge=1 -max_len=65536 -rss_limit_mb=3072 -timeout=20 "Fuzz/corpus/$target" "$small" \
            2> ".build/fuzz/$target.merge.log" || { echo "fuzz: merging $target FAILED (see .build/fuzz/$target.merge.log)" >&2; exit 1; }
        rm -rf "$small"
        echo "fuzz: $target: $(ls "Fuzz/corpus/$target" | wc -l) inputs, $(du -sh "Fuzz/corpus/$target" | cut -f1) committed" >&2
    done
    exit 0
fi

seeds() {
    case "$1" in
        safetensors) ls fixtures/safetensors/*/*.safetensors ;;
        shard-index) ls fixtures/models/tiny-llama-sharded/*.json ;;
        gguf) ls fixtures/convert/gguf_bad/*.gguf fixtures/convert/gguf_reader/*.gguf fixtures/convert/*.gguf ;;
        pytorch) find fixtures/convert/pytorch fixtures/convert/pickles_bad -type f ;;
        tokenizer) ls fixtures/models/*/tokenizer.json ;;
        config) ls fixtures/models/*/config.json ;;
        adapter-config) ls fixtures/lora/adapters/*/adapter_config.json ;;
        adapter-weights) ls fixtures/lora/adapters/llama-*/adapter_model.safetensors fixtures/lora/vocab/adapters/*/adapter_model.safetensors ;;
        quantized) ls fixtures/models/tiny-llama-bnb-nf4/model.safetensors fixtures/models/tiny-llama-ct-int8/model.safetensors \
                      fixtures/models/tiny-llama-ct-w4a16-asym/model.safetensors fixtures/models/tiny-llama-gptq/model.safetensors \
                      fixtures/models/tiny-llama-awq/model.safetensors ;;
        quantized-folder) ls Fuzz/corpus/quantized-folder/* ;;
        base-logprobs) ls fixtures/eval/*.safetensors ;;
        imatrix) ls fixtures/gguf-presets/*.imatrix.gguf ;;
        ggml-quantize) ls fixtures/eval/eval_tokens_u32le.bin fixtures/kquants/goldens.safetensors ;;
    esac
}

failed=0
for target in "${targets[@]}"; do
    corpus=.build/fuzz/corpus/$target crashes=.build/fuzz/crashes/$target
    mkdir -p "$corpus" "$crashes"
    for seed in $(seeds "$target"); do cp -n "$seed" "$corpus/$(echo "$seed" | tr / _)" 2>/dev/null || true; done
    if [ -d "Fuzz/corpus/$target" ]; then cp -n Fuzz/corpus/"$target"/* "$corpus/" 2>/dev/null || true; fi
    echo "fuzz: $target for ${seconds}s" >&2
    if ! CKPT_FUZZ_TARGET=$target "$binary" -max_total_time="$seconds" -max_len=262144 -rss_limit_mb=3072 -timeout=20 \
        -artifact_prefix="$crashes/" -print_final_stats=1 "$corpus" 2> ".build/fuzz/$target.log"; then
        echo "fuzz: $target FAILED (see .build/fuzz/$target.log and $crashes)" >&2
        failed=1
    fi
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" ".build/fuzz/$target.log" | sed "s/^/fuzz: $target: /" >&2 || true
done
exit $failed
