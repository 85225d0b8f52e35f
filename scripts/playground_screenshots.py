#!/usr/bin/env python3
"""Write docs/playground-1440.png (light) and docs/playground-390.png (dark): the playground after a finished latent
run on a build folder with its links (default dist/, e.g. `mlcbuild make smollm2-135m --links --target all`), in
headless Chromium. SwiftShader emulates the GPU: a SmolLM2-135M run takes minutes.

    nice -n 19 python3 scripts/playground_screenshots.py [DIST]
"""

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(dist: Path) -> None:
    sys.path.insert(0, str(REPO))
    from builder.run.browser import find_chromium
    from builder.run.serve import PlaygroundServer

    docs = REPO / "docs"
    query = urllib.parse.urlencode({"auto": "1", "mode": "latent"})  # the page's defaults: its first example question
    with PlaygroundServer(dist) as srv:
        cmd = ["node", str(REPO / "web" / "tools" / "browse.mjs"), "--url", srv.playground_url(query),
               "--timeout", "1800000", "--screenshot", str(docs / "playground.png"), "--screenshot-always",
               "--widths", "1440,390:dark"]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MLCBUILD_CHROMIUM":
                                                                      find_chromium()}, timeout=2000)
    res = json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1])
    (docs / "playground.png").unlink(missing_ok=True)  # the default-size shot: only the two widths are kept
    if not res["ok"]:
        sys.exit(f"the run failed: {res['error']}")
    print(f"latent answer: {res['result']['latent']['answer']!r}; wrote docs/playground-1440.png, -390.png")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "dist").resolve())
