"""`mlcbuild make`: outputs, manifest, reuse, byte-identical rebuilds, and one-line errors on bad input."""

import json
import os
import shutil

import pytest
import transformers

from builder.fetch import fetch
from builder.make import make, verify_output


def listing(root):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def assert_one_line_error(p, *needles):
    assert p.returncode != 0
    assert "Traceback" not in p.stdout + p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith(("\r", "Loading"))]
    errs = [ln for ln in lines if ln.startswith("mlcbuild: error:")]
    assert len(errs) == 1, p.stderr
    for n in needles:
        assert n in errs[0], errs[0]


@pytest.fixture(scope="module")
def tiny_qwen2_dir():
    return fetch("tiny-qwen2", show_progress=False).path


def test_models_lists_presets(cli):
    p = cli("models")
    assert p.returncode == 0
    for name in ("qwen3-0.6b", "qwen2.5-0.5b", "llama-3.2-1b", "smollm2-360m", "smollm2-135m", "tiny-qwen3"):
        assert name in p.stdout
    assert "RANDOM" in next(ln for ln in p.stdout.splitlines() if ln.startswith("tiny-qwen3"))


def test_unknown_preset_suggests_nearest(cli, tmp_path):
    p = cli("make", "qwen3-06b", "--out", str(tmp_path / "o"))
    assert_one_line_error(p, "qwen3-06b", "qwen3-0.6b")
    assert listing(tmp_path) == []


def test_directory_without_config(cli, tmp_path):
    (tmp_path / "m").mkdir()
    p = cli("make", str(tmp_path / "m"), "--out", str(tmp_path / "o"))
    assert_one_line_error(p, "config.json")
    assert not (tmp_path / "o").exists()


def test_unsupported_architecture_lists_supported(cli, tmp_path, tiny_qwen2_dir):
    src = tmp_path / "gpt"
    shutil.copytree(tiny_qwen2_dir, src)
    cfg = json.loads((src / "config.json").read_text())
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (src / "config.json").write_text(json.dumps(cfg))
    p = cli("make", str(src), "--out", str(tmp_path / "o"), "--target", "cpu")
    assert_one_line_error(p, "GPT2LMHeadModel", "LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")
    assert not (tmp_path / "o").exists()


def test_truncated_safetensors(cli, tmp_path, tiny_qwen2_dir):
    src = tmp_path / "cut"
    shutil.copytree(tiny_qwen2_dir, src)
    st = src / "model.safetensors"
    data = st.read_bytes()
    st.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o"
    p = cli("make", str(src), "--out", str(out), "--target", "cpu", "--quant", "q0f32")
    assert_one_line_error(p, "model.safetensors")
    assert listing(out) == []  # no output folder and no temp folder left behind


def test_unknown_quantization(cli, tmp_path):
    p = cli("make", "tiny-llama", "--quant", "q3f8", "--out", str(tmp_path / "o"))
    assert_one_line_error(p, "q3f8", "q4f16_1")
    assert not (tmp_path / "o").exists()


def test_unwritable_output(cli, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.fail("running as a user that ignores permissions cannot test this; use --out /proc instead")
    except pytest.fail.Exception:
        ro = "/proc/mlcbuild-out"  # root ignores chmod; /proc refuses new entries for everyone
    p = cli("make", "tiny-llama", "--out", str(ro), "--target", "cpu")
    assert_one_line_error(p, "cannot write")


@pytest.mark.slow
def test_make_outputs_manifest_reuse_and_determinism(tmp_path, tiny_qwen2_dir):
    a = make("tiny-qwen2", "q4f32_1", tmp_path / "a", targets=("webgpu", "cpu"), show_progress=False)
    out = a.out
    names = listing(out)
    for f in ("manifest.json", "mlc-chat-config.json", "tensor-cache.json", "tokenizer.json",
              "tokenizer_config.json", "params_shard_0.bin", "tiny-qwen2-q4f32_1-webgpu.wasm",
              "tiny-qwen2-q4f32_1-cpu.so"):
        assert f in names
    m = verify_output(out)
    assert set(m["files"]) == set(names) - {"manifest.json"}
    assert m["versions"]["apache-tvm"] and m["versions"]["emscripten"] and m["versions"]["mlcbuild"]
    assert m["source"]["synthetic_random_weights"] is True and m["source"]["sha256"]
    chat = json.loads((out / "mlc-chat-config.json").read_text())
    assert chat["model_type"] == "qwen2" and chat["quantization"] == "q4f32_1"
    assert chat["model_config"]["qkv_bias"] is True and chat["chat_template"]
    assert all(f in names for f in chat["tokenizer_files"])

    again = make("tiny-qwen2", "q4f32_1", tmp_path / "a", targets=("webgpu", "cpu"), show_progress=False)
    assert sorted(again.reused) == ["compile-cpu", "compile-webgpu", "convert"]
    assert again.manifest == m

    b = make("tiny-qwen2", "q4f32_1", tmp_path / "b", targets=("webgpu", "cpu"), show_progress=False)
    assert b.reused == [] and b.manifest["files"] == m["files"]  # byte-identical rebuild from scratch

    (out / "params_shard_0.bin").write_bytes(b"tampered")
    healed = make("tiny-qwen2", "q4f32_1", tmp_path / "a", targets=("webgpu", "cpu"), show_progress=False)
    assert "convert" not in healed.reused and healed.manifest["files"] == m["files"]
    assert transformers.AutoTokenizer.from_pretrained(out).chat_template
