#!/usr/bin/env bash
# Builds llama.cpp's llama-quantize, llama-perplexity and llama-imatrix (and the small
# llama-tokenize, for token counts), for goldens and benchmarks only (see DESIGN.md,
# "llama.cpp, for goldens and benchmarks only").
#
# The source is the llama.cpp vendored in llama-cpp-python's sdist on PyPI (pinned below,
# checked by sha256), so nothing but PyPI and Debian is needed. Everything lives under
# <repo>/.build/llama.cpp/ (git-ignored):
#   bin/llama-{quantize,perplexity,imatrix,tokenize}   static builds (libgomp aside)
#   src/          the vendored llama.cpp (convert_hf_to_gguf.py, gguf-py/, ...)
#   build/        cmake's build tree (kept, so a changed flag rebuilds incrementally)
#
# Idempotent: a stamp records the pins, the cmake flags, this script and the CPU; when all
# still match and the binaries exist, a second run only prints the paths.
#
# Needs: cmake (installed from apt when missing), a C/C++ compiler, the reference venv
# <repo>/.venv (tools/setup_venv.sh is run first; it returns at once when the venv is ready).
#
# Usage: tools/build_llama_cpp.sh        (JOBS=N to change the build parallelism, default 2)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$repo/.build/llama.cpp"
venv="$repo/.venv"
py="$venv/bin/python"
jobs="${JOBS:-2}"

# --- pins ---
llama_cpp_python_version="0.3.36"        # vendors llama.cpp commit 0c1e570 (ggml 0.25.3)
sdist_name="llama_cpp_python-${llama_cpp_python_version}.tar.gz"
sdist_sha256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
scikit_build_core_version="1.1.2"        # the sdist's build backend; pip needs it to read the sdist
targets=(llama-quantize llama-perplexity llama-imatrix llama-tokenize)

# Offline, CPU-only, static. LLAMA_CURL is gone from this llama.cpp (deprecated and ignored);
# LLAMA_OPENSSL=OFF is what keeps HTTPS (and so any BoringSSL/LibreSSL fetch) out now; the
# server/app/UI targets are off so the UI assets (fetched from a hub) are never provisioned.
# -march=native, but without AMX: this VM's CPU advertises amx_tile/amx_int8, -march=native
# then compiles ggml's AMX kernels, and their first `tilezero` (Q8_0/Q4_0 matmul) dies with
# SIGILL here. GCC lets an explicit -mno-* win over -march=native whatever the order.
no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
cmake_flags=(
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=OFF
    -DGGML_NATIVE=ON
    "-DCMAKE_C_FLAGS=$no_amx"
    "-DCMAKE_CXX_FLAGS=$no_amx"
    -DGGML_CCACHE=OFF
    -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_SERVER=OFF
    -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_UI=OFF
    -DLLAMA_USE_PREBUILT_UI=OFF
)

say() { echo "build_llama_cpp: $*" >&2; }

print_paths() {
    echo "llama.cpp (vendored in llama-cpp-python ${llama_cpp_python_version}, commit $(cat "$out/src-commit" 2>/dev/null || echo '?'))"
    for t in "${targets[@]}"; do echo "  $out/bin/$t"; done
    echo "  source: $out/src  (convert_hf_to_gguf.py, gguf-py/)"
}

cpu_id="$(uname -m) $(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2-) $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | sha256sum | cut -c1-16)"
want="$( {
    echo "llama-cpp-python $llama_cpp_python_version $sdist_sha256"
    echo "scikit-build-core $scikit_build_core_version"
    echo "targets ${targets[*]}"
    echo "cmake ${cmake_flags[*]}"
    echo "cpu $cpu_id"
    sha256sum < "${BASH_SOURCE[0]}"
} | sha256sum | cut -d' ' -f1)"
stamp="$out/.stamp"

all_built() {
    local t
    for t in "${targets[@]}"; do [ -x "$out/bin/$t" ] || return 1; done
    [ -f "$out/src/convert_hf_to_gguf.py" ] && [ -d "$out/src/gguf-py" ]
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && all_built; then
    print_paths
    exit 0
fi
mkdir -p "$out"
rm -f "$stamp"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# --- cmake from apt, only when missing ---
if ! command -v cmake >/dev/null 2>&1; then
    say "installing cmake (apt)"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq cmake >/dev/null
fi
for tool in cc c++ make; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found (apt-get install build-essential)" >&2; exit 1; }
done

# --- the reference venv (wait for a tools/setup_venv.sh someone else is running) ---
while pgrep -f 'tools/setup_venv\.sh' >/dev/null 2>&1; do
    say "waiting for a running tools/setup_venv.sh to finish"
    sleep 20
done
"$repo/tools/setup_venv.sh"

# --- the sdist, from PyPI, checked ---
sdist="$out/$sdist_name"
if [ ! -f "$sdist" ] || [ "$(sha256sum "$sdist" | cut -d' ' -f1)" != "$sdist_sha256" ]; then
    say "pip install scikit-build-core==$scikit_build_core_version into $venv"
    "$py" -m pip install --disable-pip-version-check --no-input --quiet "scikit-build-core==$scikit_build_core_version"
    say "downloading llama-cpp-python==$llama_cpp_python_version (sdist)"
    dl="$out/download.tmp"
    rm -rf "$dl" && mkdir -p "$dl"
    "$py" -m pip download --disable-pip-version-check --no-input --quiet \
        --no-deps --no-binary :all: --no-build-isolation \
        "llama-cpp-python==$llama_cpp_python_version" -d "$dl"
    got="$(sha256sum "$dl/$sdist_name" | cut -d' ' -f1)"
    if [ "$got" != "$sdist_sha256" ]; then
        echo "error: $sdist_name: sha256 mismatch (expected $sdist_sha256, got $got)" >&2
        exit 1
    fi
    mv "$dl/$sdist_name" "$sdist"
    rm -rf "$dl"
fi

# --- unpack once per sdist (re-unpacking would touch every file and force a full rebuild) ---
# The sdist keeps the submodule's git metadata (vendor/llama.cpp/.git points into the sdist's
# .git/modules), so the whole sdist is kept and src/ is a link into it.
unpacked="$out/sdist"
if [ "$(cat "$unpacked/.sha256" 2>/dev/null)" != "$sdist_sha256" ]; then
    say "unpacking $sdist_name"
    rm -rf "$unpacked" "$unpacked.tmp" "$out/build"
    mkdir -p "$unpacked.tmp"
    tar -xzf "$sdist" -C "$unpacked.tmp"
    echo "$sdist_sha256" > "$unpacked.tmp/.sha256"
    mv "$unpacked.tmp" "$unpacked"
fi
ln -sfn "sdist/llama_cpp_python-${llama_cpp_python_version}/vendor/llama.cpp" "$out/src"
git -C "$out/src" rev-parse --short HEAD > "$out/src-commit" 2>/dev/null || echo unknown > "$out/src-commit"

# --- configure and build ---
say "configuring (cmake ${cmake_flags[*]})"
cmake -S "$out/src" -B "$out/build" "${cmake_flags[@]}" > "$out/configure.log" 2>&1 || {
    tail -n 40 "$out/configure.log" >&2; echo "error: cmake configure failed (log: $out/configure.log)" >&2; exit 1; }
say "building ${targets[*]} with -j$jobs (log: $out/build.log)"
cmake --build "$out/build" -j "$jobs" --target "${targets[@]}" > "$out/build.log" 2>&1 || {
    tail -n 40 "$out/build.log" >&2; echo "error: build failed (log: $out/build.log)" >&2; exit 1; }

mkdir -p "$out/bin"
for t in "${targets[@]}"; do
    install -m 0755 "$out/build/bin/$t" "$out/bin/$t.tmp"
    mv "$out/bin/$t.tmp" "$out/bin/$t"
done
all_built || { echo "error: build finished but a binary or the source is missing" >&2; exit 1; }
echo "$want" > "$stamp"
print_paths
