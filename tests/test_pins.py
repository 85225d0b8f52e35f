"""Versions that must match are pinned once in builder/pins.py; the other files must agree."""

import json
import tomllib
from pathlib import Path

from builder import pins

REPO = Path(__file__).resolve().parent.parent


def test_pyproject_pins_tvm():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"apache-tvm=={pins.TVM}" in deps


def test_web_package_pins_runtime():
    pkg = json.loads((REPO / "web" / "package.json").read_text())
    assert pkg["dependencies"]["@mlc-ai/web-runtime"] == pins.WEB_RUNTIME
    assert pkg["dependencies"]["@mlc-ai/web-tokenizers"] == pins.WEB_TOKENIZERS
    assert pkg["dependencies"]["@huggingface/jinja"] == pins.JINJA
    assert pkg["devDependencies"]["playwright-core"] == pins.PLAYWRIGHT_CORE
    lock = json.loads((REPO / "web" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@mlc-ai/web-runtime"]["version"] == pins.WEB_RUNTIME


def test_installed_tvm_matches_pin():
    from builder.compile.toolchain import tvm_version

    assert tvm_version() == pins.TVM
