#!/usr/bin/env bash
# The one command that regenerates everything under fixtures/:
#     tools/make_fixtures.sh
# Sets up .venv if needed (tools/setup_venv.sh), then runs tools/make_fixtures.py and
# tools/make_quant_goldens.py (fixtures/quant/ and the quantized tiny-llama folders), then
# tools/make_eval_goldens.py (fixtures/eval/, tiny-qwen2 and tiny-mistral), then
# tools/make_lora_goldens.py (fixtures/lora/: PEFT adapters and merge goldens), then
# tools/make_conversion_goldens.py (fixtures/convert/: GGUF, PyTorch .bin and conversion goldens), then
# tools/make_architecture_goldens.py (fixtures/architectures/: tiny models of 14 architecture
# features, bf16 and NF4, with logits and perplexity goldens and SPEC.md), then
# tools/make_w4a16_goldens.py (fixtures/w4a16/ and the pack-quantized, GPTQ and AWQ tiny-llama
# folders) and tools/make_gptq_goldens.py (fixtures/gptq/: GPTQ reference cases).
# Takes about 5 minutes on 2 cores (most of it training two tiny models).
# Extra arguments are passed to each (see --help).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/tools/setup_venv.sh"
"$repo/.venv/bin/python" "$repo/tools/make_fixtures.py" "$@"
"$repo/.venv/bin/python" "$repo/tools/make_quant_goldens.py" "$@"
"$repo/.venv/bin/python" "$repo/tools/make_eval_goldens.py" "$@"
"$repo/.venv/bin/python" "$repo/tools/make_lora_goldens.py" "$@"
"$repo/.venv/bin/python" "$repo/tools/make_conversion_goldens.py" "$@"
"$repo/.venv/bin/python" "$repo/tools/make_architecture_goldens.py" "$@"
"$repo/.venv/bin/python" "$repo/tools/make_w4a16_goldens.py" "$@"
exec "$repo/.venv/bin/python" "$repo/tools/make_gptq_goldens.py" "$@"
