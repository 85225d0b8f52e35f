"""`mlcbuild doctor` on the real machine, and with emcc or chromium hidden from PATH."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest


def test_doctor_passes_after_setup(cli, wasm_runtime):
    p = cli("doctor", "--json", timeout=180)
    report = json.loads(p.stdout)
    failed = [c for c in report["checks"] if not c["ok"] and c["required"]]
    assert p.returncode == 0 and report["ok"], failed
    names = {c["name"] for c in report["checks"]}
    assert {"apache-tvm", "emcc", "chromium", "wasm runtime cache", "webgpu adapter", "webgpu shader-f16"} <= names
    # shader-f16 is reported as the adapter has it (SwiftShader has not): a warning with a fix, never a silent "ok"
    from builder.run.browser import serve_and_run

    probe = serve_and_run("harness/webgpu-probe.html", {}, timeout_s=60)["result"]
    f16 = next(c for c in report["checks"] if c["name"] == "webgpu shader-f16")
    assert f16["ok"] == probe["shaderF16"] and not f16["required"]
    assert f16["ok"] or ("f16 builds cannot run here" in f16["detail"] and "q4f32_1" in f16["fix"])
    # the CPU row says whether `make --cpu-dot int8` can build here, as the compiler sees this CPU
    from builder.compile.cpu_int8_dot import has_vnni
    from builder.compile.cpu_schedule import host_target

    cpu = next(c for c in report["checks"] if c["name"] == "cpu (--cpu-dot int8)")
    assert cpu["ok"] == has_vnni(host_target()) and not cpu["required"] and host_target().mcpu in cpu["detail"]
    text = cli("doctor", timeout=180).stdout
    assert any(ln.startswith("ok  " if probe["shaderF16"] else "warn") and "webgpu shader-f16" in ln
               for ln in text.splitlines()), text


def _path_without(tmp_path: Path, hidden: str) -> str:
    """A PATH with every tool the doctor looks for except `hidden` (symlinked into one folder)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("node", "npm", "chromium", "emcc", "python3", Path(sys.executable).name):
        exe = shutil.which(tool)
        if tool != hidden and exe and not (bindir / tool).exists():
            (bindir / tool).symlink_to(exe)
    return str(bindir)


@pytest.mark.parametrize("hidden,fix", [("emcc", "apt-get install emscripten"),
                                        ("chromium", "apt-get install chromium")])
def test_doctor_fails_with_hint_when_tool_missing(cli, tmp_path, hidden, fix):
    env = {"PATH": _path_without(tmp_path, hidden)}
    p = cli("doctor", "--no-browser", env=env, timeout=180)
    assert p.returncode != 0
    assert "Traceback" not in p.stdout + p.stderr
    row = next(ln for ln in p.stdout.splitlines() if ln.startswith("FAIL") and hidden in ln)
    assert "not" in row  # "not on PATH" / "not installed"
    assert f"fix: {fix}" in p.stdout
    js = cli("doctor", "--no-browser", "--json", env=env, timeout=180)
    assert js.returncode != 0
    bad = [c for c in json.loads(js.stdout)["checks"] if not c["ok"]]
    assert [c["fix"] for c in bad if c["name"] == hidden] == [fix]
    assert os.environ.get("PATH") != env["PATH"]


def test_make_without_emcc_fails_before_any_work(cli, tmp_path):
    """Without emcc (WebGPU) or a C++ compiler (CPU), make stops in one line before fetching or converting anything."""
    import time

    env = {"PATH": _path_without(tmp_path, "emcc")}
    out = tmp_path / "out"
    t0 = time.perf_counter()
    p = cli("make", "tiny-qwen3", "--quant", "q0f32", "--target", "webgpu", "--out", str(out), env=env)
    took = time.perf_counter() - t0
    assert p.returncode != 0 and p.stderr.count("\n") == 1, p.stderr
    assert "emcc (emscripten) is not on PATH" in p.stderr and "apt-get install emscripten" in p.stderr
    assert not out.exists()  # nothing converted, nothing written
    print(f"make without emcc: refused in {took:.2f} s")
    # the CPU target needs the host C++ compiler instead (TVM links the .so with it): the same early refusal
    cc = cli("make", "tiny-qwen3", "--quant", "q0f32", "--target", "cpu", "--out", str(out), env=env)
    assert cc.returncode != 0 and cc.stderr.count("\n") == 1 and "apt-get install g++" in cc.stderr, cc.stderr
    assert not out.exists()
