"""Kill-safe builds: `make` killed at random points (SIGKILL of the parent alone or of its process group) leaves no
running compiler; the next run reuses the steps the killed one had finished, redoes the rest, leaves no temp folder,
and writes a manifest.json byte-identical to an uninterrupted build's. SIGTERM cleans up and says so. Two runs into
one OUT/ are serialized by a lock (or refused with --no-wait)."""

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import big_env, mlcbuild_script

ARGS = ["make", "tiny-qwen3", "--quant", "q0f32", "--target", "all", "--quiet"]


def _start(out: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([mlcbuild_script(), *ARGS, "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def _compile_child(parent: psutil.Process, target: str, timeout: float = 120) -> psutil.Process:
    """Wait for the compile child process of `parent` for `target` to run."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        for c in parent.children(recursive=True):
            try:
                cmd = " ".join(c.cmdline())
            except psutil.Error:
                continue
            if "builder.compile.library" in cmd and f'"target": "{target}"' in cmd:
                return c
        time.sleep(0.05)
    raise AssertionError(f"no compile child for {target} within {timeout} s")


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob(".*")) if out.exists() else []


def _start_session(out: Path, *extra) -> subprocess.Popen:
    """`make` in its own process group, so a test can kill the parent alone or the whole group."""
    return subprocess.Popen([mlcbuild_script(), *ARGS, "--out", str(out), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finished_steps(out: Path) -> set[str]:
    """The steps a killed run had recorded as finished in its temp folder (what the next run may reuse)."""
    import json

    done = set()
    for rec in out.glob(".tiny-qwen3-q0f32.*/.mlcbuild-steps.json"):
        done |= set(json.loads(rec.read_text())["steps"])
    return done


KILLS = 5  # each kill costs about one build and a half; 5 still land in both compiles (seed 14)


def _strays(out: Path, wait_s: float = 10) -> list[str]:
    """Processes still working on `out` (their command line names it), after up to `wait_s` seconds."""
    t0 = time.time()
    while True:
        left = []
        for pr in psutil.process_iter(["cmdline"]):
            cmd = " ".join(pr.info["cmdline"] or [])
            if str(out) in cmd:
                left.append(cmd[:200])
        if not left or time.time() - t0 > wait_s:
            return left
        time.sleep(0.2)


@pytest.mark.slow
def test_make_killed_at_random_points_resumes_with_the_finished_steps(tmp_path):
    """SIGKILL at 5 random moments (every other one of the parent alone, its compile child then dies with it;
    the others of the whole process group). Each rerun completes, reuses exactly the steps the killed run had
    finished (and says so), leaves no temp folder and no process behind, and writes the uninterrupted manifest,
    whose sha256 of every file is the reference build's, also for the two reruns with another compile beside them.
    The reference is built in another environment (cwd, 20 kB more environment): the bytes must not depend on it."""
    import json
    import random
    import shutil

    t0 = time.time()
    ref = _start(tmp_path / "ref", cwd=tmp_path, env=big_env())
    assert ref.wait(600) == 0, ref.stderr.read()
    full_s = time.time() - t0
    want = (tmp_path / "ref" / "tiny-qwen3-q0f32" / "manifest.json").read_bytes()
    rng = random.Random(14)
    out = tmp_path / "out"
    seen = []
    for i in range(KILLS):
        parent_only = i % 2 == 0
        p = _start_session(out)
        proc = psutil.Process(p.pid)
        time.sleep(rng.uniform(0.05, 0.95) * full_s)
        family = [proc] + proc.children(recursive=True)
        if parent_only:
            os.kill(p.pid, signal.SIGKILL)
        else:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(60)
        gone, alive = psutil.wait_procs(family, timeout=30)  # a compile child dies with its parent
        assert not alive, [c.cmdline() for c in alive]
        assert not _strays(out)
        if (out / "tiny-qwen3-q0f32" / "manifest.json").is_file():  # the build was complete before the kill
            shutil.rmtree(out)
            seen.append("finished first")
            continue
        finished = _finished_steps(out)
        t1 = time.time()
        beside = None
        if i in (1, 3):  # another compile on the same cores: the bytes must not depend on load or timing
            beside = subprocess.Popen([mlcbuild_script(), "make", "tiny-llama3", "--quant", "q0f32", "--quiet",
                                       "--out", str(tmp_path / f"beside{i}")], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        again = _start_session(out, "--json")
        stdout, stderr = again.communicate(timeout=600)
        if beside:
            assert beside.wait(600) == 0
        assert again.returncode == 0, stderr
        res = json.loads(stdout)
        assert set(res["salvaged"]) == finished, (finished, res["reused"])
        assert set(res["reused"]) == finished  # and every other step was done again
        assert _leftovers(out) == [], _leftovers(out)
        assert (out / "tiny-qwen3-q0f32" / "manifest.json").read_bytes() == want
        seen.append(f"{'parent' if parent_only else 'group'} killed, rerun reused {sorted(finished) or 'nothing'} "
                    f"in {time.time() - t1:.0f} s{' beside another compile' if beside else ''}")
        shutil.rmtree(out)
    print(f"full build {full_s:.0f} s; " + "; ".join(seen))
    assert sum("reused ['" in s for s in seen) >= 3  # the kills did land after finished steps


@pytest.mark.slow
def test_sigterm_cleans_up_and_says_so(tmp_path):
    out = tmp_path / "out"
    p = _start(out)
    child = _compile_child(psutil.Process(p.pid), "webgpu")
    time.sleep(0.5)
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(60) == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in p.stderr.read()
    child.wait(30)
    assert not child.is_running()
    assert not out.exists() or _leftovers(out) == [], _leftovers(out)  # a clean exit keeps nothing half-made


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
