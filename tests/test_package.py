"""mlcbuild as an installed package: a wheel built from this tree, installed into a fresh venv outside the checkout,
carries everything the CLI needs (web/, patches/, shipped links) and works from there: --version, imports, serve
(the playground from package data), doctor, make and ask. The venv sees the machine's site-packages only as plain
paths for the heavy dependencies (torch, tvm); the checkout's editable install is not on its path."""

import os
import shutil
import site
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", "node_modules", "build", "dist", "*.egg-info", "__pycache__", "artifacts",
                              ".pytest_cache", ".ruff_cache", ".venv")


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=SKIP)  # build from a copy: no build/ or egg-info left in the checkout
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(root / "wheel"), str(src)], check=True, capture_output=True, text=True)
    (wheel,) = (root / "wheel").glob("mlcbuild-*.whl")
    env_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # dependencies from the machine's site-packages as plain sys.path entries: their .pth hooks (the editable
    # install of this checkout among them) are not run
    (Path(purelib) / "machine-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True, text=True)
    return {"wheel": wheel, "bin": env_dir / "bin", "cwd": root}


def _env(venv) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "PATH": f"{venv['bin']}:{env['PATH']}"}


def _run(venv, *args, timeout=900):
    return subprocess.run([*args], capture_output=True, text=True, cwd=venv["cwd"], env=_env(venv), timeout=timeout)


@pytest.mark.slow
def test_wheel_carries_the_data_the_cli_needs(venv):
    names = zipfile.ZipFile(venv["wheel"]).namelist()
    for want in ("builder/_data/web/index.html", "builder/_data/web/package-lock.json",
                 "builder/_data/web/src/mas/loop.js", "builder/_data/web/tools/browse.mjs",
                 "builder/_data/patches/tvm-web/overlay/src/support/utils.h",
                 "builder/_data/patches/tvm-web/source/attn_utils-plain-aux-sliding.patch",
                 "train_links/shipped/__init__.py",
                 "mlcbuild_common/errors.py", "builder/compile/library.py", "builder/run/latent.py"):
        assert want in names, want
    assert not any("node_modules" in n for n in names)
    shipped = sorted(p.name for p in (REPO / "train_links" / "shipped").glob("*.json"))
    assert all(f"train_links/shipped/{n}" in names for n in shipped)


@pytest.mark.slow
def test_installed_package_imports_serves_and_builds(venv, tmp_path):
    p = _run(venv, "python", "-c", "import builder, train_links, mlcbuild_common as c; print(builder.__file__); "
             "print(train_links.__file__); print(c.__file__)")
    assert p.returncode == 0, p.stderr
    assert all(str(venv["bin"].parent) in line for line in p.stdout.split()), p.stdout  # not the checkout
    p = _run(venv, "mlcbuild", "--version")
    assert p.returncode == 0 and "apache-tvm 0.27.0.post1" in p.stdout, p.stdout + p.stderr

    dist = tmp_path / "dist"
    dist.mkdir()
    srv = subprocess.Popen(["mlcbuild", "serve", str(dist), "--port", "0"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=venv["cwd"], env=_env(venv))
    try:
        url, t0 = None, time.time()
        while url is None and time.time() - t0 < 300:
            line = srv.stdout.readline()
            assert line or srv.poll() is None, srv.stderr.read()
            if line.startswith("playground: "):
                u = urllib.parse.urlsplit(line.split()[1])
                url = f"{u.scheme}://{u.netloc}/"
        assert url, "serve printed no URL"
        page = urllib.request.urlopen(url).read().decode()
        ours = (REPO / "web" / "index.html").read_text()
        assert page == ours  # the packaged copy, byte for byte
        js = urllib.request.urlopen(url + "src/mas/loop.js").read().decode()
        assert js == (REPO / "web" / "src" / "mas" / "loop.js").read_text()
    finally:
        srv.terminate()
        srv.wait(30)

    p = _run(venv, "mlcbuild", "doctor", "--no-browser")
    assert p.returncode == 0, p.stdout + p.stderr
    out = tmp_path / "out"
    p = _run(venv, "mlcbuild", "make", "tiny-qwen3", "--quant", "q0f32", "--target", "cpu", "--out", str(out),
             "--quiet")
    assert p.returncode == 0, p.stderr
    (build,) = [d for d in out.iterdir() if d.is_dir() and not d.name.startswith(".")]
    p = _run(venv, "mlcbuild", "ask", str(build), "What is 2 + 3?", "--max-tokens", "4", "--json")
    assert p.returncode == 0 and '"answer"' in p.stdout, p.stderr
