"""Kill-safe builds: `make` killed at several points (SIGTERM, SIGKILL of the parent alone) leaves no temp folder,
no running compiler and no empty OUT/; the next run completes, and its manifest.json is byte-identical to an
uninterrupted build's. Two runs into one OUT/ are serialized by a lock (or refused with --no-wait)."""

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import mlcbuild_script

ARGS = ["make", "tiny-qwen3", "--quant", "q0f32", "--target", "all", "--quiet"]


def _start(out: Path) -> subprocess.Popen:
    return subprocess.Popen([mlcbuild_script(), *ARGS, "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _compile_child(parent: psutil.Process, target: str, timeout: float = 120) -> psutil.Process:
    """Wait for the compile child process of `parent` for `target` to run."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        for c in parent.children(recursive=True):
            try:
                cmd = " ".join(c.cmdline())
            except psutil.Error:
                continue
            if "builder.compile" in cmd and f'"target": "{target}"' in cmd:
                return c
        time.sleep(0.05)
    raise AssertionError(f"no compile child for {target} within {timeout} s")


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob(".*")) if out.exists() else []


@pytest.mark.slow
def test_killed_builds_leave_nothing_and_rerun_identically(tmp_path):
    ref = tmp_path / "ref"
    p = _start(ref)
    assert p.wait(600) == 0, p.stderr.read()
    want = (ref / "tiny-qwen3-q0f32" / "manifest.json").read_bytes()

    cases = [("SIGTERM during the WebGPU compile", "webgpu", signal.SIGTERM, False),
             ("SIGKILL of the parent alone during the WebGPU compile", "webgpu", signal.SIGKILL, True),
             ("SIGKILL of the parent alone during the CPU compile", "cpu", signal.SIGKILL, True)]
    out = tmp_path / "out"
    for what, target, sig, parent_only in cases:
        p = _start(out)
        child = _compile_child(psutil.Process(p.pid), target)
        time.sleep(0.5)
        os.kill(p.pid, sig)
        rc = p.wait(60)
        assert rc == (128 + sig if sig == signal.SIGTERM else -sig), (what, rc, p.stderr.read())
        if sig == signal.SIGTERM:
            assert "stopped by SIGTERM" in p.stderr.read(), what
        child.wait(30)  # dies with its parent (PR_SET_PDEATHSIG), or was stopped by the SIGTERM handler
        assert not child.is_running(), what
        if not parent_only:  # SIGTERM: everything was cleaned before exit, and OUT/ was ours and empty
            assert not out.exists() or _leftovers(out) == [], (what, _leftovers(out))
        # the next run sweeps what a SIGKILL left, and builds the same bytes
        again = _start(out)
        assert again.wait(600) == 0, (what, again.stderr.read())
        assert _leftovers(out) == [], (what, _leftovers(out))
        assert (out / "tiny-qwen3-q0f32" / "manifest.json").read_bytes() == want, what
        if out.exists():
            import shutil

            shutil.rmtree(out)
        print(f"{what}: exit {rc}, compiler stopped, rerun identical")


@pytest.mark.slow
def test_two_runs_into_one_folder_are_serialized(tmp_path):
    out = tmp_path / "out"
    first = _start(out)
    _compile_child(psutil.Process(first.pid), "webgpu")
    busy = subprocess.run([mlcbuild_script(), *ARGS, "--out", str(out), "--no-wait"], capture_output=True,
                          text=True, timeout=120)
    assert busy.returncode == 1 and busy.stderr.count("\n") == 1, busy.stderr
    assert f"pid {first.pid}) is writing {out / 'tiny-qwen3-q0f32'}" in busy.stderr
    second = _start(out)  # waits for the first, then reuses its finished build
    assert first.wait(600) == 0 and second.wait(600) == 0, second.stderr.read()
    assert "waiting for another run" in second.stderr.read()
