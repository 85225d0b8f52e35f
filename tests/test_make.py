"""`mlcbuild make`: outputs, manifest, reuse, byte-identical rebuilds, and one-line errors on bad input."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
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


def _fake_hf_cache(root, repo, src):
    """A Hugging Face cache holding `src` as the snapshot of `repo` (huggingface_hub's on-disk layout)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    base = root / f"models--{repo.replace('/', '--')}"
    snap = base / "snapshots" / commit
    shutil.copytree(src, snap)
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    return commit


@pytest.mark.slow
def test_fetch_through_huggingface_hub_offline(cli, tmp_path, tiny_qwen2_dir):
    """The real huggingface_hub download path, answered from a local cache with HF_HUB_OFFLINE=1."""
    hub = tmp_path / "hub"
    commit = _fake_hf_cache(hub, "Qwen/Qwen2.5-0.5B-Instruct", tiny_qwen2_dir)
    env = {"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    p = cli("make", "qwen2.5-0.5b", "--quant", "q0f32", "--target", "cpu", "--out", str(tmp_path / "o"), "--json",
            env=env)
    assert p.returncode == 0, p.stderr
    m = json.loads(p.stdout)["manifest"]
    assert m["source"] == {**m["source"], "model_id": "Qwen/Qwen2.5-0.5B-Instruct", "revision": commit}
    assert (tmp_path / "o" / "qwen2.5-0.5b-q0f32" / "qwen2.5-0.5b-q0f32-cpu.so").is_file()
    missing = cli("make", "qwen3-0.6b", "--out", str(tmp_path / "o2"), env=env)
    assert_one_line_error(missing, "Qwen/Qwen3-0.6B", "HF_HUB_OFFLINE=1")


@pytest.mark.slow
def test_f16_overflow_is_refused(cli, tmp_path, tiny_qwen2_dir):
    from safetensors.numpy import load_file, save_file

    ok = cli("make", str(tiny_qwen2_dir), "--quant", "q4f16_1", "--target", "webgpu", "--out", str(tmp_path / "a"),
             "--json")
    assert ok.returncode == 0, ok.stderr
    first = json.loads(ok.stdout)
    assert "cpu" in first["manifest"]["libs"]  # the f16 check needs (and ships) the CPU lib
    # the recorded figure is the largest |hidden| of the CPU library over the check's prompts, recomputed here
    from builder.f16check import F16_MAX, PROMPTS
    from builder.run.engine import Engine

    eng = Engine(Path(first["out"]), max_seq_len=256)
    tok, want = eng.tokenizer(), 0.0
    for q in PROMPTS:
        ids = eng.chat_ids([{"role": "user", "content": q}]) if tok.chat_template else tok(q)["input_ids"]
        want = max(want, float(np.abs(eng.sequence().hidden(eng.embed(ids))).max()))
    got = first["manifest"]["f16_check"]["max_abs_hidden"]
    assert got == pytest.approx(want, rel=1e-4) and got < F16_MAX
    again = cli("make", str(tiny_qwen2_dir), "--quant", "q4f16_1", "--target", "webgpu", "--out", str(tmp_path / "a"),
                "--json")
    assert again.returncode == 0, again.stderr
    assert "f16-check" in json.loads(again.stdout)["reused"]  # same weights and lib: the verdict is reused
    hot = tmp_path / "hot"
    shutil.copytree(tiny_qwen2_dir, hot)
    w = load_file(hot / "model.safetensors")
    for k in w:
        if k.endswith("post_attention_layernorm.weight"):
            w[k] = w[k] * 3e4  # the MLP output leaves float16's range
    save_file(w, hot / "model.safetensors", metadata={"format": "pt"})
    p = cli("make", str(hot), "--quant", "q4f16_1", "--target", "webgpu", "--out", str(tmp_path / "b"))
    assert_one_line_error(p, "float16", "--quant q4f32_1")
    assert listing(tmp_path / "b") == []


@pytest.mark.slow
def test_make_links_step_trains_and_ships_recursivelink(tmp_path):
    from builder.make import LinksStep
    from train_links import format as fmt

    step = LinksStep(inner_steps=4, outer_steps=1, rounds=1, latent_steps=2)
    res = make("tiny-qwen3", "q0f32", tmp_path / "a", targets=("cpu",), show_progress=False, links=step)
    rl = res.out / "recursivelink.json"
    lf = fmt.load(rl, {"planner": 64, "critic": 64, "solver": 64})
    assert lf.meta["latent_steps"] == 2 and res.manifest["links"] == "recursivelink.json"
    assert res.manifest["files"]["recursivelink.json"]["sha256"] == verify_output(res.out)["files"][rl.name]["sha256"]
    again = make("tiny-qwen3", "q0f32", tmp_path / "a", targets=("cpu",), show_progress=False, links=step)
    assert "links" in again.reused
    shipped = make("tiny-qwen3", "q0f32", tmp_path / "b", targets=("cpu",), show_progress=False,
                   links=LinksStep(file=rl))
    assert (shipped.out / "recursivelink.json").read_bytes() == rl.read_bytes()


@pytest.mark.slow
def test_reused_convert_step_keeps_every_tokenizer_file(tmp_path, tiny_qwen2_dir):
    """added_tokens.json and chat_template.json survive a rebuild that reuses the convert step, as every file that
    mlc-chat-config.json's tokenizer_files names does."""
    src = tmp_path / "model"
    shutil.copytree(tiny_qwen2_dir, src)
    (src / "added_tokens.json").write_text(json.dumps({"<extra>": 49152}))
    (src / "chat_template.json").write_text(json.dumps({"chat_template": "{{ messages[0]['content'] }}"}))
    first = make(str(src), "q0f32", tmp_path / "out", targets=("cpu",), show_progress=False)
    named = json.loads((first.out / "mlc-chat-config.json").read_text())["tokenizer_files"]
    assert {"added_tokens.json", "chat_template.json"} <= set(named)
    again = make(str(src), "q0f32", tmp_path / "out", targets=("cpu",), show_progress=False)
    assert "convert" in again.reused
    for name in named:
        assert (again.out / name).is_file() and name in again.manifest["files"], name
    assert again.manifest["files"] == first.manifest["files"]


@pytest.mark.slow
def test_a_compiler_failure_names_its_stage_and_keeps_the_trace(cli, tmp_path):
    """A real failure inside TVM's export (the host C++ compiler fails): one line with the stage and TVM's own
    message, the full trace in a log named in the fix; --verbose prints that trace too."""
    out = tmp_path / "x.so"
    p = cli("compile", "tiny-qwen3", "--quant", "q0f32", "--target", "cpu", "--out", str(out), "--quiet",
            env={"CXX": "/bin/false"})
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("mlcbuild: error: compiling x.so failed while linking: RuntimeError: ")
    assert "/bin/false -shared" in p.stderr  # the compiler's command line, from TVM's message
    log = Path(p.stderr.split("full trace in ")[1].split(";")[0])
    body = log.read_text()
    assert "stage: link" in body and "Traceback" in body and "export_library" in body
    assert not out.exists() and not list(tmp_path.glob(".x.so*"))
    v = cli("compile", "tiny-qwen3", "--quant", "q0f32", "--target", "cpu", "--out", str(out), "--quiet",
            "--verbose", env={"CXX": "/bin/false"})
    assert v.returncode == 1 and "Traceback" in v.stderr and v.stderr.strip().splitlines()[-1].startswith(
        "mlcbuild: error: compiling x.so failed while linking")
