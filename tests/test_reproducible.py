"""Reproducible builds (issue 27): the same inputs give the same bytes whatever the environment, and
`mlcbuild verify-build` checks a build folder against a rebuild.

Before the fix, a build's .so and .wasm followed the process's heap addresses (TVM's VMShapeLower ordered its shape
computations by them, see builder/compile/stable_order.py), so a cwd, an environment or an --out path of another
size gave a few instructions in another order."""

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import big_env, mlcbuild_script, small_env

from mlcbuild_common.fsutil import sha256_file

MODEL = "tiny-llama"
QUANTS = ("q0f32", "q4f32_2")


def _reshapes(n_outputs: int):
    """A Relax function whose outputs have shapes n*2, n*3, ...: VMShapeLower computes them in one shape_func."""
    from tvm import relax, tirx

    n = tirx.Var("n", "int64")
    width = 2 * 3 * 4 * 5 * 7
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([n, width], "float32"))
    with bb.function("main", [x]):
        outs = [bb.emit(relax.op.reshape(x, relax.ShapeExpr([n * k, width // k]))) for k in (2, 3, 4, 5, 7)[:n_outputs]]
        bb.emit_func_output(relax.Tuple(outs))
    return bb.get()


def _store_slots(func) -> list[int]:
    return [int(s.indices[0]) for s in func.body.seq]


def test_shape_func_stores_are_ordered_by_slot():
    from tvm import relax

    from builder.compile.stable_order import order_shape_funcs

    mod = relax.transform.VMShapeLower()(_reshapes(5))
    assert sorted(_store_slots(mod["shape_func"])) == _store_slots(order_shape_funcs(mod)["shape_func"])


@pytest.mark.parametrize("target", ["cpu", "webgpu"])
def test_pipelines_order_shape_funcs_after_vm_shape_lower(target):
    """Both targets' pipelines run OrderShapeFuncs right after VMShapeLower, the pass whose order it fixes."""
    import tvm

    from builder.compile.cpu_schedule import cpu_pipeline, host_target
    from builder.compile.gpu_schedule import gpu_pipeline
    from builder.compile.wasm import webgpu_target

    names = []

    @tvm.instrument.pass_instrument
    class Names:
        def run_before_pass(self, _mod, info):
            names.append(info.name)

    tgt = host_target() if target == "cpu" else webgpu_target()
    pipeline = cpu_pipeline(tgt) if target == "cpu" else gpu_pipeline(tgt)
    with tvm.transform.PassContext(instruments=[Names()]):
        pipeline(_reshapes(2))
    assert names[names.index("VMShapeLower") + 1] == "OrderShapeFuncs", names


def _make(out: Path, cwd: Path, env: dict, *args) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([mlcbuild_script(), "make", MODEL, *args, "--quiet", "--out", str(out)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def _hashes(build: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(build.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict:
    """Each quantization built for both targets twice: `env -i`-like in one cwd, with 20 kB more environment in a
    deeper cwd and into a longer --out path."""
    root = tmp_path_factory.mktemp("repro")
    places = {"small": (root / "a", root / "a", small_env()),
              "big": (root / "b" / "a-much-longer-output-root", root / "b" / "deeper" / "cwd" / "here", big_env())}
    made = {}
    for q in QUANTS:
        for name, (out, cwd, env) in places.items():
            p = _make(out, cwd, env, "--quant", q, "--target", "all")
            assert p.returncode == 0, p.stderr[-2000:]
            made[name, q] = out / f"{MODEL}-{q}"
    return made


@pytest.mark.slow
@pytest.mark.parametrize("quant", QUANTS)
def test_two_environments_give_the_same_bytes(builds, quant):
    a, b = _hashes(builds["small", quant]), _hashes(builds["big", quant])
    assert {f"{MODEL}-{quant}-cpu.so", f"{MODEL}-{quant}-webgpu.wasm", "manifest.json"} <= a.keys()
    differ = sorted(n for n in a.keys() | b.keys() if a.get(n) != b.get(n))
    assert not differ, f"differ between the two environments: {differ}"


@pytest.mark.slow
def test_verify_build_passes_and_names_a_changed_file(tmp_path):
    """A CPU-only tiny build verifies from another cwd and environment; one byte changed in a file is reported with
    that file's name and exit code 1."""
    p = _make(tmp_path / "out", tmp_path, small_env(), "--quant", "q0f32", "--target", "cpu")
    assert p.returncode == 0, p.stderr[-2000:]
    build = tmp_path / "out" / f"{MODEL}-q0f32"
    here = tmp_path / "elsewhere"
    here.mkdir()
    ok = subprocess.run([mlcbuild_script(), "verify-build", str(build), "--quiet"], cwd=here, env=big_env(),
                        capture_output=True, text=True, timeout=900)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "byte-identical" in ok.stdout

    bad = tmp_path / "tampered" / build.name
    shutil.copytree(build, bad)
    lib = bad / f"{MODEL}-q0f32-cpu.so"
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 1
    lib.write_bytes(bytes(data))
    p = subprocess.run([mlcbuild_script(), "verify-build", str(bad), "--quiet"], capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 1, p.stdout + p.stderr
    diff = [ln for ln in p.stdout.splitlines() if ln.startswith(("differs", "missing", "extra"))]
    assert diff == [ln for ln in diff if lib.name in ln] and len(diff) == 1, p.stdout


@pytest.mark.parametrize("where", ["missing", "file", "no-manifest", "bad-manifest"])
def test_verify_build_bad_input_is_one_line(cli, tmp_path, where):
    target = tmp_path / "x"
    if where == "file":
        target.write_text("hello")
    elif where != "missing":
        target.mkdir()
        if where == "bad-manifest":
            (target / "manifest.json").write_text('{"files": {}}')
    p = cli("verify-build", str(target))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlcbuild: error:") and str(target) in lines[0], p.stderr


def test_rebuild_args_follow_the_manifest(tmp_path):
    """What verify-build rebuilds: the preset or local source, quant, targets, opt level, and the links as made."""
    from builder.verify import rebuild_args
    from mlcbuild_common.errors import MlcbuildError

    m = {"name": MODEL, "quantization": "q4f32_2", "source": {"model_id": f"tiny:{MODEL}", "revision": "abc",
                                                             "sha256": "0" * 64},
         "options": {"targets": ["webgpu", "cpu"], "opt_level": 2}, "links_from": None}
    args = rebuild_args(tmp_path, m)
    want = (MODEL, "q4f32_2", ("webgpu", "cpu"), 2)
    assert (args["model"], args["quant"], args["targets"], args["opt_level"]) == want
    assert args["revision"] is None and args["links"] is None  # a tiny preset has no Hub revision
    (tmp_path / "recursivelink.json").write_text('{"pattern": {"name": "sequential"}}')
    args = rebuild_args(tmp_path, {**m, "links_from": "file"})
    assert args["links"].file == tmp_path / "recursivelink.json"  # an input of the build: used again
    with pytest.raises(MlcbuildError, match="not shipped"):  # no shipped links for these weights
        rebuild_args(tmp_path, {**m, "links_from": "shipped"})
    with pytest.raises(MlcbuildError, match="not on this machine"):
        rebuild_args(tmp_path, {**m, "source": {"model_id": str(tmp_path / "gone"), "revision": "local"}})
