"""The playground for people (issue 24): roles and prompts edited on the page run the same in Python
(`mlcbuild run --roles`), every agent's turn is in the transcript, a share link restores the page from the URL alone,
and a downloaded run loads back. The tiny 3-agent system (tests/mas_system.py), r=1, m=2, a few tokens: SwiftShader
decodes a few tokens a second. One page run with an edited role feeds the browser tests (module fixture)."""

import json
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from mas_system import QUESTION, tiny_system

from builder.run.browser import run_page
from builder.run.serve import PlaygroundServer

ROUNDS, M, MAX_NEW, TEXT_TOKENS = 1, 2, 4, 2
REPO = Path(__file__).resolve().parent.parent
EDIT = " Check every number twice."  # appended to the critic's user template


def test_role_templates_same_rules_in_python_and_js():
    """builder/run/roles.py and web/src/mas/roles.js say the same thing about the same templates."""
    from builder.run.roles import template_errors

    cases = [(["plan"], "s", "Q: {question}\nPlan: {plan}"), (["plan"], "s", "Plan: {plan}"),
             (["plan"], "s", "Q: {question} {plann}"), ([], "{question} {x} {y}", ""),
             (["a", "b"], "{b}", "{question}")]
    js = ("import { templateErrors } from './src/mas/roles.js';\n"
          f"for (const c of {json.dumps(cases)}) console.log(JSON.stringify(templateErrors(...c)));")
    out = subprocess.run(["node", "--input-type=module", "-e", js], cwd=REPO / "web", capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert [json.loads(x) for x in out] == [template_errors(*c) for c in cases]
    assert [len(x) for x in [template_errors(*c) for c in cases]] == [0, 1, 2, 1, 1]


def test_roles_option_says_what_is_wrong_in_one_line(cli, tmp_path):
    """A bad roles file stops `run` and `eval` with one line, before any model loads (the build folders here do not
    even exist)."""
    links = REPO / "train_links" / "shipped" / "smollm2-135m-sequential.json"
    bad = tmp_path / "roles.json"
    bad.write_text(json.dumps({"format": "mlcbuild-roles", "version": 1,
                               "roles": {"critic": {"user": "Plan: {plann}"}}}))
    for cmd in (["run", "-q", "hi"], ["eval", "--limit", "1"]):
        p = cli(*cmd, "--agents", "nowhere1,nowhere2,nowhere3", "--links", str(links), "--roles", str(bad),
                timeout=120)
        assert p.returncode == 1, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"mlcbuild: error: --roles {bad}: role critic: no "
                                                       "{question}"), p.stderr
        assert "unknown slot {plann} (this role's slots: {plan})" in lines[0]
    bad.write_text(json.dumps({"format": "mlcbuild-roles", "version": 1, "roles": {"judge": {"user": "{question}"}}}))
    p = cli("run", "-q", "hi", "--agents", "a,b,c", "--links", str(links), "--roles", str(bad), timeout=120)
    assert "no role judge in pattern sequential (its roles are planner, critic, solver)" in p.stderr


def test_example_questions_are_current():
    """web/src/app/examples.js is what scripts/gen_examples.py writes from the built-in held-out split."""
    p = subprocess.run(["python3", str(REPO / "scripts" / "gen_examples.py"), "--check"], capture_output=True)
    assert p.returncode == 0, "web/src/app/examples.js is stale: run python3 scripts/gen_examples.py"


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    return tiny_system(tmp_path_factory.mktemp("people"), m=M, rounds=ROUNDS)


@pytest.fixture(scope="module")
def server(system):
    """One server (one origin and port) for every page of this module: a share link names its artifacts base."""
    with PlaygroundServer(system["tmp"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def edited(system, server, tmp_path_factory):
    """The page with the critic's user template edited (typed into its field), then "All three" pressed: one agent,
    text MAS and latent MAS side by side."""
    doc = json.loads(system["links_file"].read_text())
    trained = next(a for a in doc["agents"] if a["name"] == "critic")["role"]["user"]
    query = {"r": ROUNDS, "m": M, "max": MAX_NEW, "text_tokens": TEXT_TOKENS, "q": QUESTION,
             "builds": ",".join(f"/dist/{d.name}/" for d in system["dirs"]),
             "fill": json.dumps({"role-critic-user": trained + EDIT}), "click": "run-all"}
    shots = Path(__file__).resolve().parent / "artifacts" / "playground-people"
    shots.mkdir(parents=True, exist_ok=True)
    res = run_page(server.playground_url(urllib.parse.urlencode(query)), timeout_s=600,
                   screenshot=shots / "edited-run.png", screenshot_always=True)
    assert res["ok"], f"{res['error']}\n" + "\n".join(res["console"][-20:])
    return {"got": res["result"], "trained": trained}


@pytest.mark.browser
@pytest.mark.slow
def test_edited_role_changes_its_prompt_and_runs_the_same_in_python(system, edited, cli, tmp_path):
    from builder.run.latent import LatentMAS

    got = edited["got"]
    assert got["modes"] == ["single", "text", "latent"]
    assert got["roles_doc"] == {"format": "mlcbuild-roles", "version": 1, "pattern": "sequential",
                                "roles": {"critic": {"system": got["record"]["config"]["prompts"]["critic"]["system"],
                                                     "user": edited["trained"] + EDIT}}}
    # the critic's prompt grew by the edit's tokens (text MAS, r=1: its prompt is the template plus the planner's
    # message, which the edit does not touch), and only the critic's
    mas = LatentMAS(system["dirs"], system["links_file"])
    tok = mas.agents["critic"].tokenizer
    grew = len(tok(EDIT, add_special_tokens=False)["input_ids"])
    ref = mas.run(QUESTION, "text", max_new_tokens=MAX_NEW, text_tokens=TEXT_TOKENS, rounds=ROUNDS, m=M)
    before = {s["agent"]: s["tokens"] + s["reused"] for s in ref["metrics"]["stages"] if s["stage"] == "prefill"}
    after = got["text"]["agent_tokens"]
    assert after["critic"] - before["critic"] == grew > 0, (before, after)
    assert after["planner"] == before["planner"]
    # the transcript shows the critic's new prompt, in every multi-agent column, and each agent's turn once per round
    for mode in ("text", "latent"):
        turns = got["transcript"][mode]
        assert [t.split("\n")[0] for t in turns] == ["planner · round 1", "critic · round 1", "solver · round 1"]
        assert EDIT.strip() in turns[1] and EDIT.strip() not in turns[0], turns[1]
        assert "prefill" in turns[1] and " ms" in turns[1]
    assert "latent rows, mean norm" in got["transcript"]["latent"][1]  # the planner's block landing in ⟨plan⟩
    assert got["transcript"]["single"][0].startswith("solver")
    # the roles the page exports, through `mlcbuild run --roles`: the same latent answer
    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps(got["roles_doc"]))
    p = cli("run", "--agents", ",".join(str(d) for d in system["dirs"]), "--links", str(system["links_file"]),
            "-q", QUESTION, "--mode", "latent", "--rounds", str(ROUNDS), "--latent-steps", str(M),
            "--max-tokens", str(MAX_NEW), "--roles", str(roles), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["latent"]["answer"] == got["latent"]["answer"] == got["answers"]["latent"]
    edited_ref = LatentMAS(system["dirs"], system["links_file"], roles=json.loads(roles.read_text()))
    txt = edited_ref.run(QUESTION, "text", max_new_tokens=MAX_NEW, text_tokens=TEXT_TOKENS, rounds=ROUNDS, m=M)
    assert txt["answer"] == got["text"]["answer"] and txt["metrics"]["prompt_tokens"] == got["text"]["metrics"][
        "prompt_tokens"]


@pytest.mark.browser
@pytest.mark.slow
def test_share_link_restores_every_field_and_reruns_to_the_same_answer(edited, server, artifacts):
    """The share link alone, in a fresh browser profile (run_page's default): every field as it was, and the latent
    MAS gives the same answer."""
    got = edited["got"]
    url = got["share"] + "&auto=1&mode=latent"
    assert "fill=" not in url and "click=" not in url
    res = run_page(url, timeout_s=600, screenshot=artifacts / "shared.png", screenshot_always=True)
    assert res["ok"], f"{res['error']}\n" + "\n".join(res["console"][-20:])
    again = res["result"]
    want, have = got["record"]["config"], again["record"]["config"]
    for k in ("artifacts", "links", "builds", "r", "m", "max", "text_tokens", "q", "roles", "prompts"):
        assert have[k] == want[k], k
    assert have["roles"] == {"critic": {"system": want["prompts"]["critic"]["system"],
                                        "user": edited["trained"] + EDIT}}
    assert again["latent"]["answer"] == got["latent"]["answer"]
    assert again["transcript"]["latent"][1].split("prefill")[0] == got["transcript"]["latent"][1].split("prefill")[0]


@pytest.mark.browser
@pytest.mark.slow
def test_downloaded_run_loads_back_with_the_same_transcript(edited, system, server, artifacts):
    """The run file (what Download run saves) shown with ?view=: nothing runs, the page shows the same transcript,
    answers and table."""
    got = edited["got"]
    (system["tmp"] / "saved-run.json").write_text(json.dumps(got["record"]))
    res = run_page(server.playground_url("view=/dist/saved-run.json"), timeout_s=120,
                   screenshot=artifacts / "viewed.png", screenshot_always=True)
    assert res["ok"], f"{res['error']}\n" + "\n".join(res["console"][-20:])
    shown = res["result"]
    assert shown["view"] is True
    assert shown["transcript"] == got["transcript"]
    assert shown["answers"] == got["answers"] and shown["table"] == got["table"]
    rec = got["record"]
    assert rec["format"] == "mlcbuild-run" and rec["modes"] == ["single", "text", "latent"]
    lat = rec["results"]["latent"]
    assert [h["edge"] for h in lat["handoffs"]] == ["planner->critic:plan", "critic->solver:refined_plan"]
    assert all(h["rows"] == M and h["mean_row_norm"] > 0 and len(h["nearest"]) == 3 for h in lat["handoffs"])
    assert {s["stage"] for s in lat["metrics"]["stages"]} == {"prefill", "latent", "decode"}


@pytest.mark.browser
@pytest.mark.slow
def test_bad_template_is_marked_in_place_and_stops_the_run(system, server, artifacts):
    """A typed template with a misspelt slot: the message sits under the field, and Run says what to do (before any
    model loads)."""
    query = {"builds": ",".join(f"/dist/{d.name}/" for d in system["dirs"]), "click": "run-latent",
             "fill": json.dumps({"role-critic-user": "Plan: {plann}"})}
    res = run_page(server.playground_url(urllib.parse.urlencode(query)), timeout_s=120,
                   screenshot=artifacts / "bad-template.png", screenshot_always=True)
    assert not res["ok"] and res["error"].startswith("PromptTemplateError: role critic: no {question}"), res["error"]
    r = res["result"]
    assert r["field_errors"] == {"role-critic-error": "Fix this template: no {question}: the agent would never see "
                                 "the question; unknown slot {plann} (this role's slots: {plan}); no {plan}: the "
                                 "hand-off into it would be dropped."}
    assert "How to fix: fix the template marked in red under Prompts" in r["error"]["shown"]
    assert not any(c.startswith("pageerror") for c in res["console"]), res["console"]
