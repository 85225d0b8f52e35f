"""`mlcbuild make`: fetch -> convert -> compile -> package, into DIR/<name>-<quant>/.

Every step has a key: a hash of its inputs. manifest.json records the keys, and on a re-run a step whose
key matches and whose files still verify (sha256) is reused, not redone. The build happens in a temp
folder beside the output and replaces it in one rename, so a failed or interrupted build leaves the
previous output (or nothing) and never a half-written one. No timestamps: identical inputs give
byte-identical outputs.
"""

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlcbuild_common.errors import MlcbuildError
from mlcbuild_common.fsutil import (
    atomic_dir,
    public_mode,
    sha256_file,
    source_digest,
    write_bytes_atomic,
    write_json_atomic,
)

from . import __version__, pins
from .buildlock import STEPS_RECORD, output_lock, remove_if_we_made_it, salvage_dir
from .compile.library import compile_model, lib_name
from .convert.source import TOKENIZER_FILES
from .fetch import Fetched, fetch
from .manifest import MANIFEST, read_manifest, verify_output
from .models import check_quant, model_config, param_specs

__all__ = ["MANIFEST", "LinksStep", "make", "verify_output"]
# the files (or name prefixes) each reusable step wrote: the convert step writes the tensor cache, the chat config
# and every tokenizer file a source may carry (convert.source.TOKENIZER_FILES)
STEP_FILES = {"convert": ("tensor-cache.json", "params_shard_", "mlc-chat-config.json", *TOKENIZER_FILES)}


@dataclass
class BuildResult:
    out: Path
    manifest: dict
    reused: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    salvaged: list[str] = field(default_factory=list)  # of `reused`: steps a killed run had finished
    shared_links: list[Path] = field(default_factory=list)  # OUT/links/ files joining this build with others


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def compiler_digest(target: str) -> str:
    """What a library depends on besides its inputs: our graph and schedule code, and for CPU libs the host
    CPU they are tuned for. A change to either invalidates the compile step."""
    here = Path(__file__).resolve().parent
    cpu = ("cpu_schedule.py", "cpu_attention.py", "cpu_decode_attention.py", "cpu_int8_dot.py")
    own = cpu if target == "cpu" else ("wasm.py", "gpu_attention.py", "gpu_schedule.py")
    shared = ("library.py", "stable_order.py", "checked_cse.py")
    files = sorted((here / "models").glob("*.py")) + [here / "compile" / n for n in (*shared, *own)]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    if target == "cpu":
        import platform

        h.update(f"{platform.machine()}:{_cpu_model()}".encode())
    return h.hexdigest()[:16]


def _cpu_model() -> str:
    """The first CPU's model name and feature flags (Linux); empty elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return "\n".join(next((ln for ln in lines if ln.startswith(k)), "") for k in ("model name", "flags"))


def _previous_manifest(final: Path) -> dict | None:
    """The manifest of an earlier build in `final`, or None (nothing reusable) when absent or unreadable."""
    try:
        return read_manifest(final) if (final / MANIFEST).is_file() else None
    except MlcbuildError:
        return None  # a damaged earlier build is rebuilt from scratch


def _preflight(targets) -> None:
    """Tools the compile step needs, checked before any download, conversion or graph work."""
    from .compile.toolchain import emcc_version, find_emcc, find_host_cc, tvm_version

    tvm_version()
    if "webgpu" in targets:
        emcc_version(find_emcc())
    if "cpu" in targets:
        find_host_cc()


def _check_writable(out_root: Path) -> None:
    """Fail before any work if nothing can be created under `out_root` (root ignores mode bits: try it)."""
    probe = out_root.absolute()
    while not probe.exists():
        probe = probe.parent
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise MlcbuildError(f"cannot write to {out_root} ({probe}: {e.strerror})", "pass a writable --out") from None


def _reuse(prev_dir: Path, prev: dict | None, step: str, key: str, names, tmp: Path) -> bool:
    """Link the previous output's files of `step` into `tmp` if its key matches and they verify."""
    if not prev or prev.get("steps", {}).get(step) != key:
        return False
    files = {n: r for n, r in prev["files"].items() if n in names or any(n.startswith(s) for s in names)}
    for name, rec in files.items():
        p = prev_dir / name
        if not p.is_file() or p.stat().st_size != rec["size"] or sha256_file(p) != rec["sha256"]:
            return False
    for name in files:
        try:
            os.link(prev_dir / name, tmp / name)
        except OSError:
            shutil.copy2(prev_dir / name, tmp / name)
        public_mode(tmp / name)  # a build made before files were published 0644 passes its 0600 on
    return bool(files)


def _salvaged(final: Path) -> tuple[Path, dict | None]:
    """The killed run's folder kept by the lock's sweep, and its steps record (shaped like a manifest)."""
    folder = salvage_dir(final)
    try:
        return folder, json.loads((folder / STEPS_RECORD).read_text())
    except (OSError, ValueError):
        return folder, None


def _record_step(tmp: Path, step: str, key: str, names) -> None:
    """Note in `tmp` that `step` finished, with its files' sizes and hashes, so that a run killed later leaves
    it for the next run to reuse (after checking the files again)."""
    path = tmp / STEPS_RECORD
    rec = json.loads(path.read_text()) if path.is_file() else {"steps": {}, "files": {}}
    for p in sorted(tmp.iterdir()):
        if p.is_file() and (p.name in names or any(p.name.startswith(n) for n in names)):
            rec["files"][p.name] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    rec["steps"][step] = key
    write_json_atomic(path, rec)


CHAT_CONFIG_FORMAT = 2  # bump when chat_config's fields change: it is part of the convert step's key


def chat_config(cfg, quant: str, tmp: Path, tokenizer_files: list[str], source_cfg: dict) -> dict:
    """mlc-chat-config.json: MLC's fields, the ones stock WebLLM reads (conv_template, tokenizer_info,
    penalties), and ours (chat_template for our own runtimes, hidden_size, exports_hidden_states)."""
    from .convert.conv_template import conv_template, tokenizer_info

    tok_cfg = json.loads((tmp / "tokenizer_config.json").read_text()) if (tmp / "tokenizer_config.json").is_file() \
        else {}
    tok_json = json.loads((tmp / "tokenizer.json").read_text()) if (tmp / "tokenizer.json").is_file() else {}
    eos = source_cfg.get("eos_token_id")
    conv, plain_why = conv_template(tmp, [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None])
    return {
        "version": "mlcbuild/1", "model_type": cfg.model_type, "quantization": quant,
        "model_config": cfg.as_dict(), "vocab_size": cfg.vocab_size,
        "context_window_size": cfg.context_window_size, "sliding_window_size": -1,
        "prefill_chunk_size": cfg.prefill_chunk_size, "attention_sink_size": -1, "tensor_parallel_shards": 1,
        "temperature": 0.7, "top_p": 0.95, "repetition_penalty": 1.0, "presence_penalty": 0.0,
        "frequency_penalty": 0.0, "conv_template": conv, "conv_template_note": plain_why,
        "tokenizer_info": tokenizer_info(tok_json),
        "bos_token_id": source_cfg.get("bos_token_id"), "eos_token_id": source_cfg.get("eos_token_id"),
        "pad_token_id": source_cfg.get("pad_token_id"),
        "chat_template": tok_cfg.get("chat_template"), "tokenizer_files": sorted(tokenizer_files),
        "hidden_size": cfg.hidden_size, "exports_hidden_states": True,
    }


@dataclass
class LinksStep:
    """RecursiveLinks as a build step: include a recursivelink.json after validating it against this model (an
    explicit file, or the one shipped with mlcbuild for these weights and pattern), or train a homogeneous set
    for this model (every role this model; planner -> critic -> solver by default) with train-links' recipe."""

    file: Path | None = None
    train: bool = False  # train even when a shipped file matches the weights
    shipped: bool = False  # `file` is the one shipped with mlcbuild for these weights
    inner_steps: int = 600
    outer_steps: int = 300
    rollout_steps: int = 0
    rounds: int = 3
    latent_steps: int = 16
    seed: int = 0
    pattern: str = "sequential"

    def resolve(self, digest: str) -> "LinksStep":
        """This step with `file` set to the shipped links for these weights, when there are some to use."""
        if self.file or self.train:
            return self
        from train_links.shipped import find_shipped

        hit = find_shipped(digest, self.pattern)
        return LinksStep(file=hit, shipped=True, pattern=self.pattern) if hit else self

    def key_parts(self, digest: str) -> list:
        if self.file:
            return ["links-file", sha256_file(self.file)]
        return ["links-train", digest, self.inner_steps, self.outer_steps, self.rollout_steps, self.rounds,
                self.latent_steps, self.seed, *([self.pattern] if self.pattern != "sequential" else [])]


LINKS_FILE = "recursivelink.json"


def make(model: str, quant: str | None = None, out_root: Path = Path("dist"), targets=("webgpu", "cpu"),
         opt_level: int = 1, revision: str | None = None, show_progress: bool = True,
         links: LinksStep | None = None, verbose: bool = False, wait: bool = True,
         cpu_dot: str = "f32") -> BuildResult:
    from .convert.reader import open_source
    from .presets import PRESETS

    t_start = time.perf_counter()
    timings = {}
    _preflight(targets)
    fetched: Fetched = fetch(model, revision, show_progress)
    preset = PRESETS.get(model)
    quant = check_quant(quant or (preset.default_quant if preset else "q4f16_1"))
    if "f16" in quant and "cpu" not in targets:  # the f16 safety check runs the CPU library
        targets = (*targets, "cpu")
    existed = out_root.exists()
    _check_writable(out_root)
    timings["fetch_s"] = round(time.perf_counter() - t_start, 2)

    source = open_source(fetched.path)
    cfg = model_config(source.config, where=str(fetched.path))
    specs = param_specs(cfg)
    final = out_root / f"{fetched.name}-{quant}"
    digest = source_digest(fetched.path)
    keys = {"convert": _key("convert", __version__, CHAT_CONFIG_FORMAT, digest, quant, [s.__dict__ for s in specs])}
    for t in targets:
        keys[f"compile-{t}"] = _key("compile", __version__, pins.TVM, pins.EMSCRIPTEN, cfg.as_dict(), quant, t,
                                    opt_level if t == "webgpu" else 0, compiler_digest(t),
                                    *(["cpu-dot-int8"] if t == "cpu" and cpu_dot == "int8" else []))
    if links:
        links = links.resolve(digest)
        keys["links"] = _key(__version__, *links.key_parts(digest))
    reused, salvaged, libs = [], [], {}
    try:
        with output_lock(final, wait):
            prev = _previous_manifest(final)  # read under the lock: a run we waited for may have finished it
            try:
                manifest = _build(final, prev, keys, source, cfg, specs, quant, targets, opt_level, fetched,
                                  digest, reused, salvaged, libs, timings, show_progress, links, verbose, cpu_dot)
            finally:  # finished or failed cleanly: what a killed run left is used up or stale
                shutil.rmtree(salvage_dir(final), ignore_errors=True)
    except OSError as e:
        remove_if_we_made_it(out_root, existed)
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise MlcbuildError(f"writing {final} failed: {e.strerror}", "free disk space or pick another --out") \
            from None
    except BaseException:  # failures, Ctrl-C, SIGTERM: the temp folder is already gone; no empty OUT/ either
        remove_if_we_made_it(out_root, existed)
        raise
    shared = place_shipped_sets(out_root) if links else []
    from .builds_index import update as update_builds_index  # builds.json: what the playground reads
    update_builds_index(out_root)
    timings["total_s"] = round(time.perf_counter() - t_start, 2)
    return BuildResult(final, manifest, reused, timings, salvaged, shared)


SHIPPED_SETS = "links"  # OUT/links/: shipped links files that join several builds of OUT


def place_shipped_sets(out_root: Path) -> list[Path]:
    """Copy into OUT/links/ every shipped links file joining two or more different models whose builds are all in
    OUT (e.g. Gemma 3 270M + SmolLM2-135M), so builds.json lists it and the playground offers it. Files already
    there with the same bytes are left alone; the copy is atomic."""
    from train_links.shipped import shipped_for_several

    weights = set()
    for m in Path(out_root).glob(f"*/{MANIFEST}"):
        try:
            weights.add(json.loads(m.read_text())["source"]["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged build is not a reason to fail this one
    if len(weights) < 2:
        return []  # one model: nothing to join (and the shipped files, megabytes of JSON, stay unread)
    placed = []
    for src in shipped_for_several(weights):
        dest = Path(out_root) / SHIPPED_SETS / src.name
        data = src.read_bytes()
        if not (dest.is_file() and dest.read_bytes() == data):
            dest.parent.mkdir(exist_ok=True)
            write_bytes_atomic(dest, data)
        placed.append(dest)
    return placed


def _build(final, prev, keys, source, cfg, specs, quant, targets, opt_level, fetched, digest, reused, salvaged,
           libs, timings, show_progress, links=None, verbose=False, cpu_dot="f32") -> dict:
    from .convert.convert import convert

    salvage, salvage_rec = _salvaged(final)

    def reuse(step: str, names) -> bool:
        """Take `step`'s files from the previous build, else from a killed run's finished steps."""
        if _reuse(final, prev, step, keys[step], names, tmp):
            reused.append(step)
        elif _reuse(salvage, salvage_rec, step, keys[step], names, tmp):
            reused.append(step)
            salvaged.append(step)
        else:
            return False
        return True

    with atomic_dir(final) as tmp:
        t0 = time.perf_counter()
        if not reuse("convert", STEP_FILES["convert"]):
            tok_files = source.write_tokenizer(tmp)
            stats = convert(source, specs, quant, tmp, show_progress=show_progress)
            write_json_atomic(tmp / "mlc-chat-config.json", chat_config(cfg, quant, tmp, tok_files, source.config))
            timings["convert_stats"] = {k: v for k, v in stats.items() if isinstance(v, (int, float))}
        _record_step(tmp, "convert", keys["convert"], STEP_FILES["convert"])
        timings["convert_s"] = round(time.perf_counter() - t0, 2)
        for t in targets:
            t0 = time.perf_counter()
            libs[t] = lib_name(fetched.name, quant, t)
            if not reuse(f"compile-{t}", (libs[t],)):
                compile_model(cfg, quant, t, tmp / libs[t], opt_level=opt_level, show_progress=show_progress,
                              verbose=verbose, cpu_dot=cpu_dot)
            _record_step(tmp, f"compile-{t}", keys[f"compile-{t}"], (libs[t],))
            timings[f"compile_{t}_s"] = round(time.perf_counter() - t0, 2)
        if links:
            t0 = time.perf_counter()
            if not reuse("links", (LINKS_FILE,)):
                _links_step(links, fetched, cfg, digest, tmp / LINKS_FILE, show_progress)
            _record_step(tmp, "links", keys["links"], (LINKS_FILE,))
            timings["links_s"] = round(time.perf_counter() - t0, 2)
        (tmp / STEPS_RECORD).unlink()  # the manifest says it all from here on
        manifest = {
            "format": "mlcbuild-manifest/1", "name": fetched.name, "quantization": quant,
            "model_type": cfg.model_type, "hidden_size": cfg.hidden_size,
            "source": {"model_id": fetched.model_id, "revision": fetched.revision, "sha256": digest,
                       "synthetic_random_weights": fetched.synthetic},
            "versions": {"mlcbuild": __version__, "apache-tvm": pins.TVM, "emscripten": pins.EMSCRIPTEN,
                         "@mlc-ai/web-runtime": pins.WEB_RUNTIME},
            "options": {"targets": list(targets), "opt_level": opt_level, "quantization": quant, "cpu_dot": cpu_dot},
            "libs": libs, "steps": keys, "links": LINKS_FILE if links else None,
            "links_from": None if not links else "shipped" if links.shipped else "file" if links.file else "trained",
            "files": {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
                      for p in sorted(tmp.iterdir()) if p.is_file() and p.name != MANIFEST},
        }
        write_json_atomic(tmp / MANIFEST, manifest)
        if "f16" in quant:  # before the output is swapped in: a failing check leaves nothing behind
            from .f16check import PROMPTS, check_f16_hidden

            key = _key("f16-check", keys["convert"], keys["compile-cpu"], PROMPTS)
            done = (prev or {}).get("f16_check", {})
            t0 = time.perf_counter()
            if done.get("key") == key and {"convert", "compile-cpu"} <= set(reused):
                reused.append("f16-check")  # same weights, same lib: the same verdict
                result = done
            else:
                result = {"key": key, **check_f16_hidden(tmp, cfg, quant, fetched.name)}
            timings["f16_check_s"] = round(time.perf_counter() - t0, 2)
            manifest["f16_check"] = result
            write_json_atomic(tmp / MANIFEST, manifest)
    return manifest


def _links_step(links: LinksStep, fetched: Fetched, cfg, digest: str, dst: Path, show_progress: bool) -> None:
    from train_links import format as fmt

    if links.file:
        lf = fmt.load(links.file)
        wrong = {a["name"]: a["hidden_size"] for a in lf.meta["agents"] if a["hidden_size"] != cfg.hidden_size}
        if wrong:
            raise MlcbuildError(f"{links.file}: agents {wrong} do not match {fetched.name} (hidden {cfg.hidden_size})",
                                "train links for this model: mlcbuild make ... --links")
        other = {a["name"] for a in lf.meta["agents"] if a.get("weights_sha256") not in (None, "", digest)}
        if other:
            raise MlcbuildError(f"{links.file}: agents {sorted(other)} were trained on other weights than "
                                f"{fetched.name} (weights sha256 {digest[:12]})",
                                "train links for this model: mlcbuild make ... --links --links-train")
        shutil.copyfile(links.file, dst)
        return
    from train_links.config import Config
    from train_links.patterns import get_pattern
    from train_links.pipeline import run

    from .fetch import model_source

    roles = len(get_pattern(links.pattern).agents)  # mixture: its default three experts and the summarizer
    with tempfile.TemporaryDirectory(prefix="mlcbuild-links-") as tmpd:
        run(Config(agents=[str(fetched.path)] * roles, pattern=links.pattern, rounds=links.rounds,
                   latent_steps=links.latent_steps, inner_steps=links.inner_steps, outer_steps=links.outer_steps,
                   rollout_steps=links.rollout_steps, seed=links.seed, out=str(dst),
                   checkpoint=str(Path(tmpd) / "links.ckpt"), progress=show_progress), echo=lambda s: None,
            resolve=model_source)
