"""`mlcbuild doctor`: is everything a build and a browser run need present, at the pinned versions?"""

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass

from mlcbuild_common.errors import MlcbuildError

from . import pins
from .compile.toolchain import dist_version
from .paths import web_dir


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True  # a failed optional check is a warning: doctor still exits 0

    @property
    def failed(self) -> bool:
        return not self.ok and self.required

    def as_dict(self):
        return asdict(self)


def _run(cmd: list[str], **kw) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"<{e}>"
    return (p.stdout + p.stderr).strip()


def check_python() -> list[Check]:
    v = sys.version_info
    out = [Check("python", v >= (3, 11), f"{v.major}.{v.minor}.{v.micro}", "use Python >= 3.11")]
    for dist, want in pins.PYTHON_PACKAGES:
        have = dist_version(dist)
        fix = f"pip install {'--no-deps ' if dist in pins.NO_DEPS else ''}{dist}{'==' + want if want else ''}"
        if have is None:
            out.append(Check(dist, False, "not installed", fix))
        elif want and have != want:
            out.append(Check(dist, False, f"{have} (need {want})", fix))
        else:
            out.append(Check(dist, True, have))
    return out


def check_emcc() -> list[Check]:
    from .compile.toolchain import DEBIAN_NODE_PATH, emcc_version, find_emcc

    try:
        exe = find_emcc()
        ver = emcc_version(exe)
    except MlcbuildError as e:
        return [Check("emcc", False, e.format_message(), "apt-get install emscripten")]
    ok = ver == pins.EMSCRIPTEN
    checks = [Check("emcc", ok, f"{ver} at {exe}" + ("" if ok else f" (pinned {pins.EMSCRIPTEN})"),
                    "" if ok else f"install emscripten {pins.EMSCRIPTEN} (Debian bookworm's package)")]
    acorn = os.path.isdir(f"{DEBIAN_NODE_PATH}/acorn")
    checks.append(Check("emcc NODE_PATH quirk", acorn,
                        f"node-acorn in {DEBIAN_NODE_PATH}; mlcbuild sets NODE_PATH for emcc" if acorn
                        else f"{DEBIAN_NODE_PATH}/acorn missing", "apt-get install node-acorn"))
    return checks


def check_node() -> list[Check]:
    node = shutil.which("node")
    if not node:
        return [Check("node", False, "not installed", "apt-get install nodejs npm")]
    ver = _run([node, "--version"]).lstrip("v")
    major = int(ver.split(".")[0]) if ver[:1].isdigit() else 0
    checks = [Check("node", major >= pins.NODE_MIN_MAJOR, ver, f"install node >= {pins.NODE_MIN_MAJOR}")]
    npm = shutil.which("npm")
    checks.append(Check("npm", bool(npm), _run([npm, "--version"]).splitlines()[-1] if npm else "not installed",
                        "apt-get install npm"))
    for pkg, want in (("@mlc-ai/web-runtime", pins.WEB_RUNTIME), ("playwright-core", pins.PLAYWRIGHT_CORE),
                      ("@mlc-ai/web-tokenizers", pins.WEB_TOKENIZERS), ("@huggingface/jinja", pins.JINJA)):
        pj = web_dir() / "node_modules" / pkg / "package.json"
        have = json.loads(pj.read_text())["version"] if pj.is_file() else None
        detail = "not installed" if have is None else have + ("" if have == want else f" (need {want})")
        checks.append(Check(pkg, have == want, detail, f"npm ci --prefix {web_dir()}"))
    return checks


def check_chromium() -> list[Check]:
    from .run.browser import find_chromium

    exe = find_chromium()
    if not exe:
        return [Check("chromium", False, "not installed", "apt-get install chromium")]
    out = _run([exe, "--version"])
    m = re.search(r"(\d+)\.\d+\.\d+\.\d+", out)
    major = int(m.group(1)) if m else 0
    return [Check("chromium", major >= pins.CHROMIUM_MIN_MAJOR, m.group(0) if m else out[:80],
                  f"install chromium >= {pins.CHROMIUM_MIN_MAJOR}")]


def check_runtime_cache() -> list[Check]:
    from .compile.runtime import runtime_dir, verify

    try:
        d = runtime_dir()
        objs = verify(d)
    except MlcbuildError as e:
        return [Check("wasm runtime cache", False, e.format_message(), "mlcbuild runtime")]
    size = sum(p.stat().st_size for p in objs) / 1e6
    return [Check("wasm runtime cache", True, f"{len(objs)} objects, {size:.1f} MB, sha256 verified: {d}")]


def check_webgpu() -> list[Check]:
    from .run.browser import serve_and_run

    try:
        res = serve_and_run("harness/webgpu-probe.html", {}, timeout_s=60)
    except MlcbuildError as e:
        return [Check("webgpu", False, e.format_message(), "install chromium and run npm ci in web/")]
    r = res.get("result") or {}
    if not res["ok"] or not r.get("available"):
        return [Check("webgpu", False, r.get("reason") or res.get("error") or "no adapter",
                      "chromium needs --enable-unsafe-webgpu and a Vulkan driver (SwiftShader ships with it)")]
    fallback = " (fallback adapter)" if r.get("isFallbackAdapter") else ""
    return [
        Check("webgpu adapter", True, f"{r.get('vendor') or '?'} / {r.get('architecture') or '?'}{fallback}"),
        Check("webgpu shader-f16", bool(r["shaderF16"]), "yes" if r["shaderF16"] else "no: f16 builds cannot run here",
              "use f32 builds (q0f32, q4f32_1, q4f32_2), or a GPU and browser with shader-f16", required=False),
        Check("webgpu max storage binding", True, f"{r['maxStorageBufferBindingSize'] / 2**20:.0f} MiB"),
    ]


CPU_CHECK = "cpu (--cpu-dot int8)"


def check_cpu() -> list[Check]:
    """The host CPU the CPU libraries are tuned for, and whether `make --cpu-dot int8` can build here (optional)."""
    try:
        from .compile.cpu_int8_dot import has_vnni
        from .compile.cpu_schedule import host_target

        target = host_target()
        vnni = has_vnni(target)
    except Exception as e:  # noqa: BLE001 - TVM missing or broken: check_python says which
        return [Check(CPU_CHECK, False, f"<{e}>", "pip install the pinned apache-tvm", required=False)]
    detail = f"{target.mcpu}, {'with' if vnni else 'no'} AVX-512 VNNI"
    return [Check(CPU_CHECK, vnni, detail, "build with --cpu-dot f32 (the default) on this CPU", required=False)]


def run_checks(browser: bool = True) -> list[Check]:
    checks = check_python() + check_emcc() + check_node() + check_chromium() + check_runtime_cache() + check_cpu()
    if browser:
        checks += check_webgpu()
    return checks


def render_table(checks: list[Check]) -> str:
    w = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{'ok  ' if c.ok else 'FAIL' if c.required else 'warn'}  {c.name:<{w}}  {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"{'':4}  {'':<{w}}  fix: {c.fix}")
    return "\n".join(lines)
