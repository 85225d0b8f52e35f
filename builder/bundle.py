"""`mlcbuild bundle OUT`: the playground as a static site (index.html + app.js, relative URLs only).

A thin wrapper over web/tools/bundle.mjs (esbuild), the same step `npm run bundle --prefix web -- OUT` runs, so the
tests, the Pages workflow and the release all make the site one way. Put build folders and builds.json in OUT/dist/
(the page's default artifacts base) or anywhere else and open OUT/index.html?artifacts=URL.
"""

import json
import shutil
import subprocess
from pathlib import Path

import click

from mlcbuild_common.errors import MlcbuildError, ToolMissing

from .paths import ensure_web_packages, web_dir


def bundle(out: Path, minify: bool = True) -> dict:
    """Write the static playground into `out` (other files there are left alone); returns {out, esbuild, files}."""
    if not shutil.which("node"):
        raise ToolMissing("node is not installed", "apt-get install nodejs npm")
    web = web_dir()
    ensure_web_packages(web, "esbuild")
    cmd = ["node", str(web / "tools" / "bundle.mjs"), str(Path(out).resolve())] + ([] if minify else ["--no-minify"])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise MlcbuildError(f"bundling the playground failed: {tail}", f"run: {' '.join(cmd)}")
    return json.loads(lines[-1])


@click.command(name="bundle")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--no-minify", is_flag=True, help="Readable app.js (for debugging).")
def bundle_cmd(out, no_minify):
    """Write the playground as a static site into OUT: serve it from any static host, under any sub-path."""
    res = bundle(Path(out), minify=not no_minify)
    for name, rec in res["files"].items():
        click.echo(f"  {name}  {rec['size']:,} bytes  sha256 {rec['sha256'][:16]}")
    click.echo(f"static playground in {res['out']} (esbuild {res['esbuild']}): put builds and builds.json in "
               f"{Path(res['out']) / 'dist'}/ or open index.html?artifacts=URL")
