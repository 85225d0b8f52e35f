"""`mlcbuild verify-build DIR`: rebuild a build from what its manifest.json records (model, weights revision,
quantization, targets, links) into a temporary folder, then compare every file's sha256 with DIR's.

Builds are byte-identical whatever the environment (cwd, environment size, --out path; issue 27), so anyone can
check a release's build folder against the source this way. A CPU library is tuned for the host CPU (its model is
part of the compile key), so a .so made on another CPU model is expected to differ.
"""

import json
import sys
import tempfile
from pathlib import Path

import click

from mlcbuild_common.errors import MlcbuildError
from mlcbuild_common.fsutil import sha256_file

from . import __version__, pins
from .manifest import MANIFEST, read_manifest


def _files(root: Path) -> dict[str, str]:
    """Every regular file under `root` (relative path -> sha256)."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _field(manifest: dict, where: Path, *keys):
    value = manifest
    for k in keys:
        if not isinstance(value, dict) or k not in value:
            raise MlcbuildError(f"{where / MANIFEST}: not an mlcbuild manifest (no {'.'.join(keys)})",
                                "point at a folder `mlcbuild make` wrote")
        value = value[k]
    return value


def rebuild_args(build: Path, manifest: dict) -> dict:
    """The `make` arguments that reproduce `build`: model, quant, targets, opt level, revision, links."""
    from .make import LINKS_FILE, LinksStep
    from .presets import PRESETS

    model_id = str(_field(manifest, build, "source", "model_id"))
    name = _field(manifest, build, "name")
    revision = None
    if Path(model_id).is_absolute():  # a local HF folder or .gguf file: it has to be here
        if not Path(model_id).exists():
            raise MlcbuildError(f"{build}: its source {model_id} is not on this machine",
                                "put the model there (the same files) and verify again")
        model = model_id
    elif name in PRESETS:
        model = name
        if PRESETS[name].kind == "hf":  # the exact Hub commit the build was made from
            revision = _field(manifest, build, "source", "revision")
    else:
        raise MlcbuildError(f"{build}: built from {model_id} ({name}), which is no preset of mlcbuild {__version__}",
                            "see `mlcbuild models`")
    links, links_from = None, manifest.get("links_from")
    if links_from:
        own = build / LINKS_FILE
        if not own.is_file():
            raise MlcbuildError(f"{build}: the manifest lists {LINKS_FILE}, which is missing", "restore it")
        try:
            meta = json.loads(own.read_text())
            pattern = meta["pattern"]["name"]
        except (OSError, ValueError, KeyError, TypeError):
            raise MlcbuildError(f"{own}: not a RecursiveLinks file", "restore it") from None
        if links_from == "file":  # an input of the build: the rebuild takes the same file
            links = LinksStep(file=own)
        elif links_from == "shipped":
            links = LinksStep(pattern=pattern).resolve(_field(manifest, build, "source", "sha256"))
            if not links.shipped:
                raise MlcbuildError(f"{build}: its shipped links are not shipped with mlcbuild {__version__}",
                                    "verify with the mlcbuild version that made the build")
        else:  # trained at build time: trained again with the recorded pattern and steps (slow)
            training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
            steps = training.get("outer_steps", 300)
            links = LinksStep(train=True, pattern=pattern, outer_steps=steps)
    return {"model": model, "quant": _field(manifest, build, "quantization"),
            "targets": tuple(_field(manifest, build, "options", "targets")),
            "opt_level": _field(manifest, build, "options", "opt_level"), "revision": revision, "links": links,
            "cpu_dot": manifest["options"].get("cpu_dot", "f32")}


def compare(build: Path, rebuilt: Path) -> list[str]:
    """One line per file that differs, that only the rebuild has (missing) or that only `build` has (extra)."""
    have, want = _files(build), _files(rebuilt)
    lines = []
    for rel in sorted(have.keys() | want.keys()):
        if rel not in have:
            lines.append(f"missing  {rel}  (the rebuild makes it)")
        elif rel not in want:
            lines.append(f"extra    {rel}  (the rebuild does not make it)")
        elif have[rel] != want[rel]:
            lines.append(f"differs  {rel}  sha256 {have[rel][:16]} here, {want[rel][:16]} rebuilt")
    return lines


def verify_build(build: Path, show_progress: bool = True, say=click.echo) -> list[str]:
    """Rebuild `build` into a temporary folder; returns the difference lines (empty: byte-identical)."""
    from .make import make

    if not build.exists():
        raise MlcbuildError(f"{build}: no such folder", "point at a build folder (OUT/<name>-<quant>)")
    if not build.is_dir():
        raise MlcbuildError(f"{build}: not a folder", "point at a build folder (OUT/<name>-<quant>)")
    manifest = read_manifest(build)
    args = rebuild_args(build, manifest)
    made = manifest.get("versions", {})
    here = {"mlcbuild": __version__, "apache-tvm": pins.TVM, "emscripten": pins.EMSCRIPTEN}
    for tool, version in here.items():
        if made.get(tool) not in (None, version):
            say(f"note: built with {tool} {made[tool]}, this machine has {version}: expect differences")
    with tempfile.TemporaryDirectory(prefix="mlcbuild-verify-") as tmp:
        res = make(args["model"], args["quant"], Path(tmp), args["targets"], args["opt_level"], args["revision"],
                   show_progress=show_progress, links=args["links"], cpu_dot=args["cpu_dot"])
        return compare(build, res.out)


@click.command(name="verify-build")
@click.argument("build_dir", metavar="DIR", type=click.Path())
@click.option("--quiet", is_flag=True, help="No progress bars.")
def verify_cmd(build_dir, quiet):
    """Rebuild the build in DIR from its manifest into a temporary folder and compare every file's sha256.
    Prints each file that differs, is missing or is extra; exits 0 when all are identical, else 1."""
    build = Path(build_dir)
    diff = verify_build(build, show_progress=not quiet)
    for line in diff:
        click.echo(line)
    if diff:
        click.echo(f"{build}: {len(diff)} file(s) differ from a rebuild")
        sys.exit(1)
    click.echo(f"{build}: every file is byte-identical to a rebuild")
