"""The latent RecursiveMAS loop in the browser (web/src/mas/, WebGPU on SwiftShader) vs the Python reference on the
CPU libraries (builder.latent.LatentMAS) and vs PyTorch (train_links.system.run_latent + rollout.generate).

The same tiny 3-agent set as tests/test_latent.py: planner tiny-qwen3, critic tiny-llama, solver tiny-qwen3 (two
families, one tokenizer; planner and solver share one loaded model), q0f32, m=4, r=2, 8 new tokens. A few fast Node
checks (no browser) cover the link math, f16 links, corrupted files and the chat-template rendering on their own."""

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from mas_system import AGENTS, QUESTION, links_for_dims, run_latent_page, tiny_links

from builder.make import make
from builder.paths import web_dir
from builder.run.latent import LatentMAS
from mlcbuild_common.errors import MlcbuildError
from train_links import format as fmt
from train_links.agents import split_prompt
from train_links.links import make_link
from train_links.rollout import generate
from train_links.system import run_latent

WEB = web_dir()
ROUNDS, M, MAX_NEW, TEXT_TOKENS = 2, 4, 8, 4

browser = [pytest.mark.browser, pytest.mark.slow]


# -- fixtures --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def links_system(tmp_path_factory):
    """PyTorch agents and perturbed links, saved as f32 and f16 recursivelink.json (no builds)."""
    tmp = tmp_path_factory.mktemp("latent-webgpu")
    agents, links, pattern = tiny_links(m=M, rounds=ROUNDS)
    rl = fmt.save(tmp / "recursivelink.json", agents, pattern, links, m=M, rounds=ROUNDS)
    rl16 = fmt.save(tmp / "recursivelink-f16.json", agents, pattern, links, m=M, rounds=ROUNDS, dtype="f16")
    return {"tmp": tmp, "agents": agents, "links": links, "pattern": pattern, "links_file": rl, "links_f16": rl16}


@pytest.fixture(scope="module")
def system(links_system):
    """...plus WebGPU + CPU builds of both models, side by side with the links under one served folder."""
    tmp = links_system["tmp"]
    dirs = {a: make(a, "q0f32", tmp, targets=("webgpu", "cpu"), show_progress=False).out for a in set(AGENTS)}
    return {**links_system, "dirs": [dirs[a] for a in AGENTS]}


def run_page(system, artifacts, links_name, dirs=None, modes=("latent", "text"), timeout_s=900):
    case = {"question": QUESTION, "rounds": ROUNDS, "m": M, "max_new_tokens": MAX_NEW, "text_tokens": TEXT_TOKENS,
            "modes": list(modes)}
    return run_latent_page(system["tmp"], system["dirs"] if dirs is None else dirs, links_name, case,
                           artifacts / "latent-check.png", timeout_s)


@pytest.fixture(scope="module")
def page(system):
    """One browser run of latent and text mode (the expensive part: ~2 minutes on SwiftShader)."""
    art = Path(__file__).resolve().parent / "artifacts" / "test_latent_webgpu"
    art.mkdir(parents=True, exist_ok=True)
    res = run_page(system, art, system["links_file"].name)
    assert res["ok"], f"{res['error']}\n" + "\n".join(res["console"][-20:])
    return res["result"]


@pytest.fixture(scope="module")
def python_mas(system):
    return LatentMAS(system["dirs"], system["links_file"])


def cosine_rows(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


# -- the browser loop vs Python and PyTorch --------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.slow
def test_browser_prompts_match_split_prompt(page, python_mas):
    """Chat template rendered by @huggingface/jinja, split and tokenized by web-tokenizers == split_prompt."""
    for name, agent in python_mas.agents.items():
        js = page["agents"][name]
        py = [{"kind": "text", "ids": v.tolist()} if k == "text" else {"kind": k, "name": v} for k, v in agent.pieces]
        assert js["pieces"] == py, name
        assert js["turn_end"] == agent.turn_end
        assert js["stop"] == sorted(agent.stop)
        assert page["hidden_sizes"][name] == agent.engine.hidden_size


@pytest.mark.browser
@pytest.mark.slow
def test_browser_latent_loop_matches_python_and_pytorch(page, python_mas, system):
    got = page["latent"]
    ref = python_mas.run(QUESTION, "latent", max_new_tokens=MAX_NEW, rounds=ROUNDS, m=M)
    trace = []
    with torch.no_grad():
        emb = run_latent(system["agents"], system["links"], system["pattern"], QUESTION, ROUNDS, M, trace=trace)
        want = generate(system["agents"]["solver"], emb, MAX_NEW)
    order = [(h["edge"], h["round"]) for h in got["handoffs"]]
    assert order == [(h["edge"], h["round"]) for h in ref["handoffs"]] == [(t["edge"], t["round"]) for t in trace]
    for g, py, pt in zip(got["handoffs"], ref["handoffs"], trace, strict=True):
        block = np.array(g["block"], dtype=np.float32)
        assert block.shape == (M, g["dim"]) == py["block"].shape, g["edge"]
        assert cosine_rows(block, py["block"]).min() >= 0.9999, (g["edge"], g["round"])
        assert cosine_rows(block, pt["block"].numpy()).min() >= 0.9999, (g["edge"], g["round"])
    assert got["answer"] == ref["answer"] == want
    m = got["metrics"]
    assert m["latent_steps"] == M * (3 * ROUNDS - 1) == ref["metrics"]["latent_steps"]
    assert m["prompt_tokens"] == ref["metrics"]["prompt_tokens"] > 0
    assert m["reused_tokens"] == ref["metrics"]["reused_tokens"] > 0  # KV prefixes kept across rounds, both sides
    assert m["generated_tokens"] == ref["metrics"]["generated_tokens"] == len(got["answer_ids"]) <= MAX_NEW
    assert m["completion_tokens"] == m["generated_tokens"] and m["e2e_latency_s"] > 0
    assert m["prefill_tokens_per_s"] > 0 and m["decode_tokens_per_s"] > 0
    assert [(s["agent"], s["round"], s["stage"]) for s in m["stages"]] == \
        [(s["agent"], s["round"], s["stage"]) for s in ref["metrics"]["stages"]]
    print(f"browser latent: answer {got['answer']!r}, e2e {m['e2e_latency_s']:.1f} s, "
          f"prefill {m['prefill_tokens_per_s']:.1f} tok/s, decode {m['decode_tokens_per_s']:.2f} tok/s, "
          f"load {page['load_ms'] / 1000:.1f} s")


@pytest.mark.browser
@pytest.mark.slow
def test_run_command_in_the_browser_prints_what_python_prints(system, python_mas, cli):
    """`mlcbuild run --browser`: the JS loop on the WebGPU libs, through the CLI; same work and answers as Python."""
    agents = ",".join(str(d) for d in system["dirs"])
    args = ["run", "--agents", agents, "--links", str(system["links_file"]), "-q", QUESTION, "--rounds", "2",
            "--latent-steps", "2", "--max-tokens", "3", "--text-tokens", "2"]
    p = cli(*args, "--browser", "--json")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    for mode in ("latent", "text"):
        ref = python_mas.run(QUESTION, mode, max_new_tokens=3, text_tokens=2, rounds=2, m=2)
        assert got[mode]["answer"] == ref["answer"], mode
        for k in ("prompt_tokens", "reused_tokens", "generated_tokens", "latent_steps"):
            assert got[mode]["metrics"][k] == ref["metrics"][k], (mode, k)
    table = cli(*args, "--browser", "--mode", "latent")
    assert table.returncode == 0 and "browser, WebGPU libs" in table.stdout and "latent" in table.stdout


@pytest.mark.browser
@pytest.mark.slow
def test_browser_text_baseline_matches_python(page, python_mas):
    got = page["text"]
    ref = python_mas.run(QUESTION, "text", max_new_tokens=MAX_NEW, text_tokens=TEXT_TOKENS, rounds=ROUNDS, m=M)
    assert got["handoffs"] == [] and got["metrics"]["latent_steps"] == 0
    assert got["answer"] == ref["answer"]
    for k in ("prompt_tokens", "reused_tokens", "generated_tokens"):
        assert got["metrics"][k] == ref["metrics"][k], k
    assert [(s["agent"], s["round"], s["stage"], s["tokens"]) for s in got["metrics"]["stages"]] == \
        [(s["agent"], s["round"], s["stage"], s["tokens"]) for s in ref["metrics"]["stages"]]
    assert got["metrics"]["generated_tokens"] > page["latent"]["metrics"]["generated_tokens"]


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("case", ["other-dims", "too-few-agents"])
def test_browser_refuses_links_for_other_models(system, artifacts, case):
    """A clear LinkMismatchError on the page (published, not a crash), before any model weights load."""
    if case == "other-dims":
        bad = links_for_dims(system["links_file"], system["tmp"] / "recursivelink-d32.json", 32)
        fmt.load(bad)  # a valid file...
        with pytest.raises(MlcbuildError, match="hidden size 32 here but 64 in the model"):
            fmt.load(bad, {"planner": 64, "critic": 64, "solver": 64})  # ...for other models
        res = run_page(system, artifacts, bad.name, timeout_s=180)
        want = "agent planner has hidden size 32 in the links but 64 in the model"
    else:
        res = run_page(system, artifacts, system["links_file"].name, dirs=system["dirs"][:2], timeout_s=180)
        want = "pass one build folder per agent"
    assert not res["ok"]
    assert res["error"].startswith("LinkMismatchError: "), res["error"]
    assert want in res["error"]
    assert not any(c.startswith("pageerror") for c in res["console"]), res["console"]


# -- fast Node checks of the JS modules (no browser, no builds) ------------------------------------------------------

def run_node(script: str, payload: dict, tmp_path) -> dict:
    """Run an ES-module script with node in web/ (so web/node_modules resolves); `payload` is at globalThis.INPUT."""
    if not shutil.which("node"):
        pytest.fail("node is not installed (apt-get install nodejs npm)")
    if not (WEB / "node_modules" / "@huggingface" / "jinja").is_dir():
        pytest.fail(f"web/node_modules is incomplete: run npm ci --prefix {WEB}")
    inp = tmp_path / "node-input.json"
    inp.write_text(json.dumps(payload))
    prelude = (f"import {{ readFileSync }} from 'node:fs';\n"
               f"globalThis.INPUT = JSON.parse(readFileSync({json.dumps(str(inp))}, 'utf8'));\n"
               f"const WEB = {json.dumps(str(WEB))};\n")
    p = subprocess.run(["node", "--input-type=module", "-e", prelude + script], capture_output=True, text=True,
                       cwd=WEB, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


LINKS_SCRIPT = """
const { parseLinks, erf } = await import(WEB + '/src/mas/links.js');
const out = { links: {}, errors: {} };
const x = Float32Array.from(INPUT.x.flat());
for (const [tag, path] of Object.entries(INPUT.files)) {
  const ls = await parseLinks(JSON.parse(readFileSync(path, 'utf8')), path);
  for (const [name, link] of Object.entries(ls.links)) out.links[`${tag}|${name}`] = Array.from(link.forward(x));
}
for (const [tag, path] of Object.entries(INPUT.bad)) {
  try { await parseLinks(JSON.parse(readFileSync(path, 'utf8')), path, INPUT.dims); out.errors[tag] = null; }
  catch (e) { out.errors[tag] = `${e.name}: ${e.message}`; }
}
out.erf = INPUT.erf_x.map(erf);
console.log(JSON.stringify(out));
"""


def test_js_links_match_pytorch_f32_f16_and_refuse_bad_files(links_system, tmp_path):
    ls = links_system
    x = (np.random.default_rng(0).standard_normal((3, 64)) * 2).astype(np.float32)
    corrupt = json.loads(ls["links_file"].read_text())
    t = corrupt["links"][0]["tensors"]["w1.weight"]
    t["data"] = ("A" if t["data"][0] != "A" else "B") + t["data"][1:]
    (tmp_path / "corrupt.json").write_text(json.dumps(corrupt))
    other = links_for_dims(ls["links_file"], tmp_path / "d32.json", 32)
    erf_x = np.linspace(-7, 7, 1001).tolist()
    out = run_node(LINKS_SCRIPT, {"x": x.tolist(), "erf_x": erf_x, "dims": {"planner": 64, "critic": 64, "solver": 64},
                                  "files": {"f32": str(ls["links_file"]), "f16": str(ls["links_f16"])},
                                  "bad": {"corrupt": str(tmp_path / "corrupt.json"), "other": str(other)}}, tmp_path)
    for tag, path in (("f32", ls["links_file"]), ("f16", ls["links_f16"])):
        lf = fmt.load(path)
        for name, tensors in lf.tensors.items():
            kind = "inner" if name.startswith("inner:") else "outer"
            link = make_link(kind, 64, 64, tensors["w1.weight"].shape[0])
            link.load_state_dict(tensors)
            with torch.no_grad():
                want = link(torch.from_numpy(x)).numpy()
            got = np.array(out["links"][f"{tag}|{name}"], dtype=np.float32).reshape(want.shape)
            assert np.abs(got - want).max() <= 1e-5, (tag, name)
    assert max(abs(math.erf(v) - e) for v, e in zip(erf_x, out["erf"], strict=True)) <= 1e-14
    assert out["errors"]["corrupt"].startswith("LinkFormatError: ") and "sha256 mismatch" in out["errors"]["corrupt"]
    assert out["errors"]["other"].startswith("LinkMismatchError: ")
    assert "hidden size 32 in the links but 64 in the model" in out["errors"]["other"]


PROMPT_SCRIPT = """
globalThis.location = { href: 'file://' + WEB + '/node_modules/@mlc-ai/web-tokenizers/lib/index.js' };
await import(WEB + '/node_modules/@mlc-ai/web-tokenizers/lib/index.js');  // UMD: sets globalThis.tokenizers
const { TextCodec, splitPrompt, renderChat } = await import(WEB + '/src/mas/prompt.js');
const tj = readFileSync(INPUT.tokenizer);
const codec = await TextCodec.fromFiles({ tokenizerJSON: tj.buffer.slice(tj.byteOffset, tj.byteOffset + tj.length),
  tokenizerConfig: JSON.parse(readFileSync(INPUT.tokenizer_config, 'utf8')) });
const out = { renders: [], splits: [], decode: codec.decode(INPUT.decode_ids) };
for (const t of INPUT.templates) {
  for (const c of INPUT.chats) {
    for (const gen of [true, false]) out.renders.push(renderChat(t, codec.specialTokens, c, gen));
  }
  codec.chatTemplate = t; codec.template = null;
  out.splits.push(INPUT.roles.map((r) => splitPrompt(codec, r, r.name)));
}
console.log(JSON.stringify(out));
"""

# Templates in the styles found on the Hub (whitespace control, namespaces, loop variables, special-token variables).
TEMPLATES = [
    None,  # the model's own (SmolLM2's ChatML)
    "{{- bos_token }}{%- for m in messages %}{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{- m['content'] | trim }}{{- '<|eot_id|>' }}{%- endfor %}\n{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n",
    "{%- if tools %}{{- raise_exception('no tools') }}{%- endif %}\n"
    "{%- set ns = namespace(sys='') %}\n{%- for message in messages %}\n"
    "    {%- if message.role == 'system' %}{%- set ns.sys = message.content %}{%- endif %}\n{%- endfor %}\n"
    "{%- if ns.sys %}\n<|im_start|>system\n{{ ns.sys }}<|im_end|>\n{% endif %}\n"
    "{%- for message in messages if message.role != 'system' %}\n"
    "<|im_start|>{{ message.role }}\n{{ message.content }}{% if not loop.last or message.role != 'assistant' %}"
    "<|im_end|>{% endif %}\n\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n<|im_start|>assistant\n<think>\n\n</think>\n\n{%- endif %}",
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'] + '\\n<</SYS>>\\n\\n' }}"
    "{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}",
]


def test_js_chat_templates_render_and_split_like_transformers(links_system, tmp_path):
    """apply_chat_template(add_generation_prompt=...) and split_prompt, reproduced in JS on several templates."""
    from transformers.utils.chat_template_utils import render_jinja_template

    tok = links_system["agents"]["planner"].tokenizer
    src = tok.name_or_path
    pattern = links_system["pattern"]
    roles = [{"name": r.name, "system": r.system, "user": r.user, "slots": list(r.slots)} for r in pattern.roles]
    chats = [[{"role": "system", "content": r.system}, {"role": "user", "content": r.user}] for r in pattern.roles]
    chats.append([*chats[0], {"role": "assistant", "content": "RESPONSE_PROBE"}])
    templates = [t or tok.chat_template for t in TEMPLATES]
    ids = list(range(0, 20)) + [905, 19556, 30, 216]
    out = run_node(PROMPT_SCRIPT, {"tokenizer": f"{src}/tokenizer.json",
                                   "tokenizer_config": f"{src}/tokenizer_config.json", "templates": templates,
                                   "chats": chats, "roles": roles, "decode_ids": ids}, tmp_path)
    want = []
    for t in templates:
        for c in chats:
            for gen in (True, False):
                r, _ = render_jinja_template([c], chat_template=t, add_generation_prompt=gen, **tok.special_tokens_map)
                want.append(r[0])
    assert out["renders"] == want
    saved = tok.chat_template
    try:
        for t, js in zip(templates, out["splits"], strict=True):
            tok.chat_template = t
            for role, got in zip(pattern.roles, js, strict=True):
                pieces, turn_end = split_prompt(tok, role, role.name)
                py = [{"kind": "text", "ids": v.tolist()} if k == "text" else {"kind": k, "name": v} for k, v in pieces]
                assert got["pieces"] == py and got["turnEnd"] == turn_end, (t[:40], role.name)
    finally:
        tok.chat_template = saved
    assert out["decode"] == tok.decode(ids, skip_special_tokens=True)
