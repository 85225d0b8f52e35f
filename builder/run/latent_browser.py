"""`mlcbuild run --browser`: the same RecursiveMAS loop, run by the playground's JS (web/src/mas) on the agents'
WebGPU libraries in headless Chromium, for the same table the Python runner prints."""

import json
import tempfile
from pathlib import Path
from urllib.parse import quote

from mlcbuild_common.errors import MlcbuildError

from .browser import serve_and_run


def page_url(agent_urls: list[str], links_url: str, case_url: str) -> str:
    """The harness page for one case; every value is quoted (a "+" in a query value reads as a space, and the
    shipped Gemma 3 + SmolLM2 links file has one in its name)."""
    agents = ",".join(quote(u, safe="/") for u in agent_urls)
    return (f"harness/latent-check.html?agents={agents}&links={quote(links_url, safe='/')}"
            f"&case={quote(case_url, safe='/')}")


def run_browser(build_dirs: list[Path], links_file: Path, question: str, modes: list[str], rounds: int | None,
                m: int | None, max_tokens: int, text_tokens: int, timeout_s: float = 3600) -> dict:
    """{mode: {answer, metrics}} plus load_ms, from web/harness/latent-check.html."""
    mounts, urls = {}, []
    for d in build_dirs:
        d = Path(d).resolve()
        if not (d / "manifest.json").is_file():
            raise MlcbuildError(f"{d}: no manifest.json; not an mlcbuild output", "run `mlcbuild make` first")
        mount = next((k for k, v in mounts.items() if v == d), f"/agent{len(mounts)}/")
        mounts[mount] = d
        urls.append(mount)
    links = Path(links_file).resolve()
    with tempfile.TemporaryDirectory(prefix="mlcbuild-run-") as tmp:
        case = {"question": question, "rounds": rounds, "m": m, "max_new_tokens": max_tokens,
                "text_tokens": text_tokens, "modes": modes}
        (Path(tmp) / "case.json").write_text(json.dumps(case))
        page = page_url(urls, f"/links/{links.name}", "/case/case.json")
        res = serve_and_run(page, {**mounts, "/links/": links.parent, "/case/": Path(tmp)}, timeout_s=timeout_s)
    if not res["ok"]:
        raise MlcbuildError(f"the browser run failed: {res['error']}",
                            "check the builds have WebGPU libs (`--target all`) and run `mlcbuild doctor`")
    out = res["result"]
    return {"load_ms": out["load_ms"], **{md: {"answer": out[md]["answer"], "metrics": out[md]["metrics"]}
                                          for md in modes}}
