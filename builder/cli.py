"""The `mlcbuild` command line: a thin Click layer over the library functions in builder/."""

import sys

import click

from mlcbuild_common.errors import MlcbuildError
from train_links.patterns import PATTERNS

from . import __version__, pins
from .clickutil import Group, emit_json


@click.group(cls=Group, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlcbuild",
                      message="%(prog)s %(version)s\npins:\n  " + pins.summary().replace("\n", "\n  "))
def cli():
    """Build WebGPU model libraries that export hidden states, and run RecursiveMAS latent loops."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option("--no-browser", is_flag=True, help="Skip launching Chromium to probe WebGPU.")
def doctor(as_json, no_browser):
    """Check the toolchain: Python packages, emscripten, node, Chromium, wasm runtime, WebGPU."""
    from .doctor import render_table, run_checks

    checks = run_checks(browser=not no_browser)
    if as_json:
        emit_json({"ok": not any(c.failed for c in checks), "checks": [c.as_dict() for c in checks]})
    else:
        click.echo(render_table(checks))
    bad = [c for c in checks if c.failed]
    if bad:
        if not as_json:
            click.echo(f"\n{len(bad)} check(s) failed; run the fix shown beside each.", err=True)
        sys.exit(1)


@cli.command()
@click.option("--force", is_flag=True, help="Rebuild even when a verified cached build exists.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def runtime(force, quiet, as_json):
    """Build (or reuse) TVM's wasm runtime objects with emscripten, cached per TVM and emcc version."""
    from .compile.runtime import ensure_runtime

    rt = ensure_runtime(force=force, progress=not (quiet or as_json))
    info = {"dir": str(rt.dir), "reused": rt.reused, "seconds": round(rt.seconds, 2),
            "objects": {p.name: p.stat().st_size for p in rt.objects}}
    if as_json:
        emit_json(info)
    elif not quiet:
        verb = "reused" if rt.reused else "built"
        click.echo(f"wasm runtime {verb} in {rt.seconds:.1f} s: {rt.dir}")


@cli.command()
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def selfcheck(quiet, as_json):
    """Compile a small TVM module for WebGPU, run it in headless Chromium and compare with numpy."""
    from .selfcheck import run_selfcheck

    res = run_selfcheck(progress=not (quiet or as_json))
    if as_json:
        emit_json(res)
    else:
        click.echo(f"webgpu selfcheck: {'OK' if res['ok'] else 'FAILED'}  max abs err {res['max_abs_err']:.2e}"
                   f"  adapter {res['adapter']}  ({res['seconds']:.1f} s)")
    if not res["ok"]:
        raise MlcbuildError("the WebGPU module's results differ from numpy", "see the numbers above")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the presets as JSON.")
def models(as_json):
    """List the model presets `make` knows (tiny-* are random-weight test models)."""
    from .presets import DEFAULT, PRESETS

    rows = [{"name": p.name, "kind": p.kind, "source": p.source, "default_quant": p.default_quant,
             "description": p.description + (" [default]" if p.name == DEFAULT else "")} for p in PRESETS.values()]
    if as_json:
        emit_json(rows)
        return
    w = max(len(r["name"]) for r in rows)
    for r in rows:
        click.echo(f"{r['name']:<{w}}  {r['kind']:<4}  {r['default_quant']:<8}  {r['description']}")


EVAL_BATCH = 8  # `eval --batch` default: measured in bench/RESULTS.md ("`mlcbuild eval --batch`", 40 rows)
TARGET_CHOICES = click.Choice(["webgpu", "cpu", "all"])
AGENT_BUILDS = click.option("--agents", required=True,
                            help="Build folders (OUT/<name>-<quant>), one per pattern agent, in order.")
LINKS_FILE = click.option("--links", "links_file", required=True, type=click.Path(dir_okay=False, exists=True),
                          help="recursivelink.json trained for these agents.")
ROUNDS = click.option("--rounds", type=click.IntRange(1, 64), default=None, help="Default: the links' r.")
LATENT_STEPS = click.option("--latent-steps", type=click.IntRange(1, 4096), default=None,
                            help="Default: the links' m.")
FORCE_LINKS = click.option("--force-links", is_flag=True,
                           help="Run links trained on other weights than the builds' (warns).")
ROLES = click.option("--roles", "roles_file", type=click.Path(dir_okay=False), default=None,
                     help="Role prompts edited in the playground (its Download roles JSON): system and user templates "
                     "with {question} and the role's slot markers; roles left out keep their trained prompts.")


def _load_roles(path):
    from .run.roles import load

    return load(path) if path else None


MAX_SEQ_LEN = click.option("--max-seq-len", type=click.IntRange(16, 1 << 20), default=None,
                           help="KV cache positions per sequence (default 2048 for ask, 1024 per agent for run and "
                           "eval; at most the model's context).")


def _targets(target: str) -> tuple[str, ...]:
    return ("webgpu", "cpu") if target == "all" else (target,)


@cli.command()
@click.argument("model")
@click.option("--quant", "-q", default=None,
              help="q0f32, q0f16, q4f32_1, q4f16_1, q4f32_2 or q4f16_2 (default: the preset's).")
@click.option("--out", "-o", "out", default="dist", show_default=True, type=click.Path(file_okay=False),
              help="Output root; the build goes to OUT/<name>-<quant>/.")
@click.option("--target", "-t", default="all", show_default=True, type=TARGET_CHOICES)
@click.option("--opt", "opt_level", default=1, show_default=True, type=click.IntRange(0, 3),
              help="wasm link optimisation level (-O1 for tests, -O2/-O3 for releases).")
@click.option("--revision", default=None, help="Hugging Face revision (branch, tag or commit).")
@click.option("--cpu-dot", type=click.Choice(["f32", "int8"]), default="f32", show_default=True,
              help="CPU library's one-row (decode) kernels: f32 (the answers of PyTorch and the browser), or int8 "
              "activations with integer dot products, as llama.cpp does (faster; answers can change; needs AVX-512 "
              "VNNI).")
@click.option("--links", is_flag=True, help="Also ship RecursiveLinks (planner -> critic -> solver, all this "
              "model) as recursivelink.json: the links shipped with mlcbuild when they were trained on these exact "
              "weights, else trained now. Shipped links joining this model with other builds in OUT (e.g. "
              "gemma3-270m + smollm2-135m) are copied to OUT/links/ for run, eval and the playground.")
@click.option("--links-train", is_flag=True, help="With --links: train even when shipped links match.")
@click.option("--pattern", type=click.Choice(list(PATTERNS)),
              default="sequential", show_default=True, help="With --links: the collaboration pattern the links are "
              "for (every role this model).")
@click.option("--links-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Ship this trained recursivelink.json instead (validated against the model and its weights).")
@click.option("--links-steps", default=300, show_default=True, type=click.IntRange(0, 100000),
              help="Teacher-forced outer steps when training links.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest summary as JSON.")
@click.option("--verbose", is_flag=True, help="On a compiler failure, print its full trace (else kept in a log).")
@click.option("--no-wait", is_flag=True, help="Fail at once when another run is writing the same build folder "
              "(default: wait for it).")
def make(model, quant, out, target, opt_level, revision, cpu_dot, links, links_train, pattern, links_file,
         links_steps, quiet, as_json, verbose, no_wait):
    """Fetch, convert, compile and package MODEL (a preset, an HF directory or a .gguf file)."""
    from pathlib import Path

    from .make import LinksStep
    from .make import make as run_make
    from .summary import render_summary

    step = LinksStep(file=Path(links_file)) if links_file else \
        LinksStep(train=links_train, outer_steps=links_steps, pattern=pattern) if links or links_train else None
    res = run_make(model, quant, Path(out), _targets(target), opt_level, revision,
                   show_progress=not (quiet or as_json), links=step, verbose=verbose, wait=not no_wait,
                   cpu_dot=cpu_dot)
    if as_json:
        emit_json({"out": str(res.out), "reused": res.reused, "salvaged": res.salvaged, "timings": res.timings,
                   "manifest": res.manifest, "shared_links": [str(p) for p in res.shared_links]})
    elif not quiet:
        click.echo(render_summary(res))


@cli.command()
@click.argument("model")
@click.option("--revision", default=None, help="Hugging Face revision (branch, tag or commit).")
@click.option("--quiet", is_flag=True)
def fetch(model, revision, quiet):
    """Resolve MODEL to local files (download, locate the offline GGUF, or synthesize a tiny model)."""
    from .fetch import fetch as run_fetch

    f = run_fetch(model, revision, show_progress=not quiet)
    click.echo(str(f.path))


@cli.command()
@click.argument("model")
@click.option("--quant", "-q", default="q4f16_1", show_default=True)
@click.option("--out", "-o", "out", required=True, type=click.Path(file_okay=False))
@click.option("--quiet", is_flag=True)
def convert(model, quant, out, quiet):
    """Convert MODEL's weights to the MLC layout (params_shard_*.bin + tensor-cache.json) in OUT."""
    from pathlib import Path

    from mlcbuild_common.fsutil import atomic_dir

    from .convert.convert import convert as run_convert
    from .convert.reader import open_source
    from .fetch import fetch as run_fetch
    from .models import check_quant, model_config, param_specs

    check_quant(quant)
    src = open_source(run_fetch(model, show_progress=not quiet).path)
    cfg = model_config(src.config)
    with atomic_dir(Path(out)) as tmp:
        src.write_tokenizer(tmp)
        stats = run_convert(src, param_specs(cfg), quant, tmp, show_progress=not quiet)
    click.echo(f"{stats.get('params', '?')} parameters, {stats.get('bytes', 0) / 1e6:.1f} MB -> {out}")


@cli.command(name="compile")
@click.argument("model")
@click.option("--quant", "-q", default="q4f16_1", show_default=True)
@click.option("--target", "-t", default="webgpu", show_default=True, type=click.Choice(["webgpu", "cpu"]))
@click.option("--out", "-o", "out", required=True, type=click.Path(dir_okay=False), help="Library file to write.")
@click.option("--opt", "opt_level", default=1, show_default=True, type=click.IntRange(0, 3))
@click.option("--quiet", is_flag=True)
@click.option("--verbose", is_flag=True, help="On a compiler failure, print its full trace (else kept in a log).")
def compile_cmd(model, quant, target, out, opt_level, quiet, verbose):
    """Compile MODEL's graph (config only, no weights) to a WebGPU .wasm or a CPU .so."""
    from pathlib import Path

    from .compile.library import compile_model
    from .convert.reader import open_source
    from .fetch import fetch as run_fetch
    from .models import check_quant, model_config

    check_quant(quant)
    cfg = model_config(open_source(run_fetch(model, show_progress=not quiet).path).config)
    r = compile_model(cfg, quant, target, Path(out), opt_level=opt_level, show_progress=not quiet, verbose=verbose)
    click.echo(f"{out}: {r['bytes'] / 1e6:.1f} MB (graph {r['graph_s']} s, compile {r['compile_s']} s, "
               f"link {r['link_s']} s)")


@cli.command()
@click.argument("build_dir", type=click.Path(file_okay=False))
@click.argument("question")
@click.option("--max-tokens", default=32, show_default=True, type=click.IntRange(1, 4096))
@MAX_SEQ_LEN
@click.option("--json", "as_json", is_flag=True, help="Print the answer and timings as JSON.")
def ask(build_dir, question, max_tokens, max_seq_len, as_json):
    """Greedy answer to QUESTION from the CPU library of a build (BUILD_DIR = OUT/<name>-<quant>)."""
    import time
    from pathlib import Path

    from .run.engine import Engine

    eng = Engine(Path(build_dir), max_seq_len=max_seq_len or 2048)
    ids = eng.chat_ids([{"role": "user", "content": question}])
    t0 = time.perf_counter()
    out = eng.generate(ids, max_tokens)
    secs = time.perf_counter() - t0
    answer = eng.tokenizer().decode(out, skip_special_tokens=True).strip()
    info = {"answer": answer, "prompt_tokens": len(ids), "generated_tokens": len(out), "seconds": round(secs, 2)}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"Q: {question}\nA: {answer}\n({len(ids)} prompt + {len(out)} generated tokens in {secs:.1f} s, "
                   f"CPU lib, greedy)")


@cli.command()
@AGENT_BUILDS
@LINKS_FILE
@click.option("--question", "-q", required=True)
@click.option("--mode", default="both", show_default=True,
              type=click.Choice(["latent", "text", "single", "both", "all"]),
              help="both: latent and text; all: single agent, text MAS and latent MAS side by side.")
@ROUNDS
@LATENT_STEPS
@click.option("--max-tokens", default=32, show_default=True, type=click.IntRange(1, 4096),
              help="The final answer's budget (every mode).")
@click.option("--text-tokens", default=256, show_default=True, type=click.IntRange(1, 4096),
              help="Text mode: each agent writes until its turn ends, at most this many tokens.")
@click.option("--browser", is_flag=True, help="Run the playground's JS loop on the WebGPU libraries in headless "
              "Chromium instead of the Python loop on the CPU libraries.")
@FORCE_LINKS
@MAX_SEQ_LEN
@ROLES
@click.option("--json", "as_json", is_flag=True)
def run(agents, links_file, question, mode, rounds, latent_steps, max_tokens, text_tokens, browser, force_links,
        max_seq_len, roles_file, as_json):
    """Run the RecursiveMAS loop: latent hand-offs, text hand-offs, the final agent alone, and compare them."""
    from pathlib import Path

    dirs = [Path(a.strip()) for a in agents.split(",") if a.strip()]
    modes = {"both": ["latent", "text"], "all": ["single", "text", "latent"]}.get(mode, [mode])
    roles = _load_roles(roles_file)
    if roles and browser:
        raise MlcbuildError("--roles works on the CPU libraries only", "drop --browser, or edit the roles in the "
                            "playground (mlcbuild serve)")
    if browser:
        from .run.latent_browser import run_browser

        if not as_json:
            click.echo("running in headless Chromium on WebGPU (SwiftShader here: minutes, not seconds)...", err=True)
        out = run_browser(dirs, Path(links_file), question, modes, rounds, latent_steps, max_tokens, text_tokens)
        res = {md: out[md] for md in modes}
    else:
        from .run.latent import LatentMAS

        mas = LatentMAS(dirs, Path(links_file), max_seq_len=max_seq_len or 1024, force_links=force_links,
                        warn=lambda s: click.echo(s, err=True), roles=roles)
        res = {md: mas.run(question, md, max_new_tokens=max_tokens, text_tokens=text_tokens, rounds=rounds,
                           m=latent_steps) for md in modes}
    if as_json:
        emit_json({md: {k: v for k, v in r.items() if k != "handoffs"} for md, r in res.items()})
        return
    where = "browser, WebGPU libs" if browser else "Python, CPU libs"
    label = {"single": "single agent", "text": "text MAS", "latent": "latent MAS"}
    for md, r in res.items():
        click.echo(f"[{label[md]}] {r['answer'].strip()}")
    click.echo(f"\n{where}\n{'mode':<7} {'prompt tok':>10} {'reused tok':>10} {'generated':>10} {'latent steps':>13} "
               f"{'e2e s':>8} {'hand-off bytes':>15}")
    for md, r in res.items():
        m = r["metrics"]
        hb = m.get("handoff_bytes")  # latent: f32 frames between machines (docs/wire.md); text: the messages
        hb = "-" if md == "single" or hb is None else hb
        click.echo(f"{md:<7} {m['prompt_tokens']:>10} {m['reused_tokens']:>10} {m['generated_tokens']:>10} "
                   f"{m['latent_steps']:>13} {m['e2e_latency_s']:>8.2f} {hb:>15}")
    if {"latent", "text"} <= set(res):
        lat, txt = res["latent"]["metrics"], res["text"]["metrics"]
        fewer = 1 - lat["generated_tokens"] / txt["generated_tokens"] if txt["generated_tokens"] else 0.0
        click.echo(f"latent vs text: {txt['e2e_latency_s'] / lat['e2e_latency_s']:.2f}x faster end to end, "
                   f"{fewer:.1%} fewer generated tokens")


@cli.command(name="eval")
@AGENT_BUILDS
@LINKS_FILE
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="JSONL rows {question, answer, kind?}, or 'builtin' (the default: the built-in held-out split, "
              "new instances of the training templates) or 'disjoint' (the template-disjoint test split: wordings "
              "that no training template produces).")
@click.option("--modes", default="single,text,latent", show_default=True,
              help="Comma-separated: single (the final agent alone), prompt-tuned (it with --prompt's trained slot "
              "vectors), text (text MAS), latent (latent MAS), and controls of the latent MAS: shuffled (senders "
              "work on the next question of the same family), shuffled-cross (on a question of another family), "
              "zero (every hand-off replaced by zeros).")
@click.option("--prompt", "prompt_file", type=click.Path(dir_okay=False), default=None,
              help="The slot prompt from `mlcbuild train-prompt`, for --modes prompt-tuned.")
@click.option("--family", multiple=True,
              help="Only rows of this task family (a row's kind), e.g. the one left out of training with "
              "train-links --exclude-family. Repeatable.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Only N rows, spread evenly over the data (every family of the built-in split stays in).")
@ROUNDS
@LATENT_STEPS
@click.option("--max-tokens", default=40, show_default=True, type=click.IntRange(1, 4096),
              help="The final answer's budget (every mode); worked answers (the computation, then the answer) need "
              "about 30 tokens.")
@click.option("--text-tokens", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Text MAS: each agent writes until its turn ends, at most this many tokens.")
@click.option("--batch", default=EVAL_BATCH, show_default=True, type=click.IntRange(1, 64),
              help="Rows run together: each agent's decode steps for all of them are one forward (the same outputs "
              "as one row at a time, faster).")
@FORCE_LINKS
@MAX_SEQ_LEN
@ROLES
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary and every row's outputs as JSON.")
def eval_cmd(agents, links_file, data, modes, prompt_file, family, limit, rounds, latent_steps, max_tokens, text_tokens,
             batch, force_links, max_seq_len, roles_file, quiet, as_json):
    """Exact-match accuracy of one agent, a text MAS and the latent MAS on held-out rows (CPU libraries)."""
    from pathlib import Path

    from mlcbuild_common.progress import bar
    from train_links.data import builtin, load_jsonl

    from .run.evaluate import MODES, evaluate, render
    from .run.latent import LatentMAS

    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    bad = [m for m in chosen if m not in MODES]
    if bad or not chosen:
        raise MlcbuildError(f"--modes: unknown mode(s) {bad or modes!r}", f"use a comma-separated subset of {MODES}")
    if "prompt-tuned" in chosen and not prompt_file:
        raise MlcbuildError("--modes prompt-tuned needs --prompt FILE", "train one with mlcbuild train-prompt")
    if data == "disjoint":
        from train_links.tasks_disjoint import disjoint_test

        rows = disjoint_test()
    else:
        rows = load_jsonl(data) if data and data != "builtin" else builtin()[1]
    if family:
        kinds = sorted({r.get("kind") for r in rows if r.get("kind")})
        rows = [r for r in rows if r.get("kind") in family]
        if not rows:
            raise MlcbuildError(f"--family {', '.join(family)}: no row of {data or 'builtin'} has that kind",
                                f"use one of {', '.join(kinds) or '(the rows have no kind field)'}")
    if limit and limit < len(rows):
        rows = [rows[i * len(rows) // limit] for i in range(limit)]
    mas = LatentMAS([Path(a.strip()) for a in agents.split(",") if a.strip()], Path(links_file),
                    max_seq_len=max_seq_len or 1024, force_links=force_links, warn=lambda s: click.echo(s, err=True),
                    roles=_load_roles(roles_file))
    if rounds or latent_steps:
        mas.rounds, mas.m = rounds or mas.rounds, latent_steps or mas.m
    slot_prompt = None
    if prompt_file and "prompt-tuned" in chosen:
        from train_links import prompt_tuning

        final = mas.agents[mas.pattern.final]
        slot_prompt = prompt_tuning.load(prompt_file, final.engine.hidden_size)
        prompt_tuning.check_fits(slot_prompt, final.role, final.engine.manifest.get("source", {}).get("sha256"),
                                 prompt_file)
    with bar(len(rows) * len(chosen), "eval", not (quiet or as_json), unit="run") as b:
        res = evaluate(mas, rows, chosen, max_tokens, text_tokens, progress=b, slot_prompt=slot_prompt, batch=batch)
    res["config"] = {"batch": batch, "agents": agents, "links": str(links_file), "data": data or "builtin held-out",
                     "family": list(family), "prompt": prompt_file, "roles": roles_file,
                     "rounds": mas.rounds, "latent_steps": mas.m, "max_tokens": max_tokens, "text_tokens": text_tokens}
    if as_json:
        emit_json(res)
    else:
        click.echo(render(res))


def _register_more():
    from builder.train_cmd import train_links_cmd, train_prompt_cmd  # light: click only; torch loads on use

    from .builds_index import index_cmd
    from .bundle import bundle_cmd
    from .run.serve import serve_cmd
    from .verify import verify_cmd

    cli.add_command(train_links_cmd)
    cli.add_command(train_prompt_cmd)
    cli.add_command(serve_cmd)
    cli.add_command(bundle_cmd)
    cli.add_command(index_cmd)
    cli.add_command(verify_cmd)


_register_more()


def main():
    cli.main()


if __name__ == "__main__":
    main()
