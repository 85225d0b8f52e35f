"""The wasm runtime objects: built once per TVM/emcc version, reused from cache, rebuilt when damaged."""

import json
import shutil

import pytest

from builder.compile import runtime as rt


def test_runtime_objects_are_wasm(wasm_runtime):
    assert [p.name for p in wasm_runtime.objects] == [f"{u}.o" for u in rt.UNITS]
    for p in wasm_runtime.objects:
        assert p.read_bytes()[:4] == b"\0asm", f"{p} is not a wasm object (LLVM bitcode cannot link here)"


def test_second_run_reuses_cache_quickly(cli, wasm_runtime):
    p = cli("runtime", "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["reused"] is True
    assert info["seconds"] < 2.0  # acceptance: a verified reuse takes well under 2 s
    assert set(info["objects"]) == {f"{u}.o" for u in rt.UNITS}


@pytest.mark.slow
def test_truncated_object_is_detected_and_rebuilt(cli, wasm_runtime, tmp_path):
    cache = tmp_path / "cache"
    dst = cache / wasm_runtime.dir.relative_to(wasm_runtime.dir.parent.parent)
    shutil.copytree(wasm_runtime.dir, dst)
    victim = dst / "tvmjs_support.o"
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2])
    assert rt.damaged_units(dst) == ["tvmjs_support"]

    p = cli("runtime", "--json", env={"MLCBUILD_CACHE": str(cache)})
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["reused"] is False and info["dir"] == str(dst)
    assert rt.damaged_units(dst) == []
    assert victim.read_bytes()[:4] == b"\0asm" and victim.stat().st_size > len(good) // 2
    # the untouched objects were kept, not recompiled
    for u in ("wasm_runtime", "webgpu_runtime"):
        assert (dst / f"{u}.o").read_bytes() == (wasm_runtime.dir / f"{u}.o").read_bytes()
