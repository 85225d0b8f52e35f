"""The browser harness: static server, a WGSL compute smoke test, and a TVM WebGPU module vs numpy."""

import urllib.error
import urllib.request

import pytest

from builder.run.browser import StaticServer, serve_and_run


def test_static_server_mime_types_and_no_escape(tmp_path):
    (tmp_path / "m.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "x.mjs").write_text("export {}")
    with StaticServer({"/": tmp_path}) as srv:
        with urllib.request.urlopen(srv.url("m.wasm")) as r:
            assert r.headers["Content-Type"] == "application/wasm"
        with urllib.request.urlopen(srv.url("x.mjs")) as r:
            assert r.headers["Content-Type"] == "text/javascript"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(srv.url("../../etc/passwd"))


@pytest.mark.browser
def test_webgpu_adapter_probe(artifacts):
    res = serve_and_run("harness/webgpu-probe.html", {}, screenshot=artifacts / "probe.png")
    assert res["ok"], res
    r = res["result"]
    assert r["available"] is True
    assert r["maxStorageBufferBindingSize"] >= 128 * 2**20


@pytest.mark.browser
def test_wgsl_compute_smoke(artifacts):
    res = serve_and_run("harness/wgsl-smoke.html", {}, screenshot=artifacts / "wgsl.png")
    assert res["ok"], res
    assert res["result"]["n"] == 4096
    assert res["result"]["maxAbsErr"] <= 1e-6


@pytest.mark.browser
@pytest.mark.slow
def test_tvm_webgpu_module_matches_numpy(wasm_runtime, artifacts):
    from builder.selfcheck import run_selfcheck

    res = run_selfcheck(progress=False, workdir=artifacts, screenshot=artifacts / "tvm-check.png")
    assert res["max_abs_err"] <= 1e-5, res
    assert res["ok"]
