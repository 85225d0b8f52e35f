#!/usr/bin/env python3
"""Our CPU library against llama.cpp's llama-bench on the same GGUF and thread count: prefill, decode, latent step.

llama-bench is built once from the pinned PyPI sdist (builder/pins.py LLAMA_CPP_SDIST, checksum verified) into
<cache>/bench/llamacpp with cmake (not part of CI: it takes a few minutes on 2 cores). Ours is `mlcbuild make
MODEL --target cpu` (the preset's default quantization) driven by builder.run.engine.Engine in a child process
whose thread pool is sized first. The two alternate repetition by repetition, so load from other jobs hits both.

Per repetition: a PROMPT-token prefill into an empty cache (tokens/s), GEN decode steps from an empty cache (as
llama-bench's tg test does: mean step), and GEN latent steps (decode_last_hidden, no LM head). Also printed: the
bytes of weights a decode step reads over its time, beside this machine's read bandwidth (a parallel vector sum
over 256 MiB, compiled with TVM for this CPU). Figures are medians over --reps.

  python3 bench/vs_llamacpp.py                          # smollm2-135m and gemma3-270m
  python3 bench/vs_llamacpp.py --model smollm2-135m --reps 7
  python3 bench/vs_llamacpp.py --cpu-dot f32,int8       # also the opt-in int8-activation library, alternating
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

from common import REPO, add_json_file, append_line, bench_cache, loadavg, machine, now_iso, parser, print_table

PROMPT, GEN = 128, 64


# -- llama.cpp --------------------------------------------------------------------------------------------------------

def llama_bench() -> Path:
    """Path of llama-bench, built from the pinned sdist on first use."""
    from builder.pins import LLAMA_CPP_SDIST

    name, version, sha = LLAMA_CPP_SDIST
    root = bench_cache() / "llamacpp" / version
    exe = root / "build" / "bin" / "llama-bench"
    if exe.exists():
        return exe
    if not shutil.which("cmake"):
        sys.exit("vs_llamacpp: cmake is not installed: apt-get install cmake (and ninja-build for a faster build)")
    root.mkdir(parents=True, exist_ok=True)
    sdist = root / f"{name.replace('-', '_')}-{version}.tar.gz"
    if not sdist.exists() or hashlib.sha256(sdist.read_bytes()).hexdigest() != sha:
        index = urllib.request.urlopen(f"https://pypi.org/simple/{name}/").read().decode()
        url = next(part.split('"')[0] for part in index.split('href="')[1:] if sdist.name in part.split('"')[0])
        print(f"downloading {sdist.name}", file=sys.stderr)
        tmp = sdist.with_suffix(".part")
        urllib.request.urlretrieve(url.split("#")[0], tmp)
        if hashlib.sha256(tmp.read_bytes()).hexdigest() != sha:
            tmp.unlink()
            sys.exit(f"vs_llamacpp: {sdist.name} does not match its pinned sha256: refusing to build it")
        tmp.replace(sdist)
    src = root / "src"
    if not (src / "CMakeLists.txt").exists():
        shutil.rmtree(src, ignore_errors=True)
        with tarfile.open(sdist) as tar:  # the sdist holds llama.cpp's source tree under <name>/llama.cpp
            members = [m for m in tar.getmembers() if "/llama.cpp/" in m.name + "/"]
            tar.extractall(root / "unpacked", members=members, filter="data")
        next((root / "unpacked").glob("*/llama.cpp")).rename(src)
        shutil.rmtree(root / "unpacked")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    print("building llama-bench (a few minutes)", file=sys.stderr)
    subprocess.run(["cmake", "-S", src, "-B", root / "build", *gen, "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON",
                    "-DLLAMA_CURL=OFF", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                    "-DLLAMA_BUILD_SERVER=OFF"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", root / "build", "--target", "llama-bench", "-j", str(os.cpu_count())],
                   check=True, stdout=subprocess.DEVNULL)
    return exe


def llama_rep(exe: Path, gguf: Path, threads: int) -> dict:
    """One repetition of llama-bench's pp PROMPT and tg GEN tests (each after its own warm-up run)."""
    out = subprocess.run([exe, "-m", gguf, "-t", str(threads), "-p", str(PROMPT), "-n", str(GEN), "-r", "1",
                          "-o", "json"], check=True, capture_output=True, text=True).stdout
    res = {}
    for r in json.loads(out):
        if r["n_prompt"]:
            res["prefill_tok_s"] = r["avg_ts"]
        else:
            res["decode_ms"] = 1000 / r["avg_ts"]
    return res


# -- ours (child process) -------------------------------------------------------------------------------------------

def child(build: str, threads: int) -> None:
    """Loads the library with `threads` threads, then answers one JSON line per line of stdin."""
    os.environ["TVM_NUM_THREADS"] = str(threads)
    from builder.run.engine import Engine

    eng = Engine(Path(build), max_seq_len=PROMPT + GEN + 8)
    ids = [(i * 7919 + 101) % eng.vocab_size for i in range(PROMPT)]
    emb = eng.embed(ids)

    def timed(fn, steps):
        eng.reset()
        x = emb[0]
        t = time.perf_counter()
        for _ in range(steps):
            fn(x)
        return (time.perf_counter() - t) / steps * 1000

    timed(eng.decode, 4)  # warm-up, as llama-bench does
    for _ in sys.stdin:
        eng.reset()
        t = time.perf_counter()
        eng.prefill(emb)
        prefill_s = time.perf_counter() - t
        rec = {"prefill_tok_s": PROMPT / prefill_s, "decode_ms": timed(eng.decode, GEN),
               "latent_ms": timed(eng.decode_hidden, GEN)}
        print(json.dumps(rec), flush=True)


def weight_bytes(build: Path) -> int:
    """Bytes of weights a decode step reads: every stored tensor, less the embedding table when an LM head of its
    own exists (then a step reads one row of it)."""
    cache = json.loads((build / "tensor-cache.json").read_text())
    recs = [r for shard in cache["records"] for r in shard["records"]]
    total = sum(r["nbytes"] for r in recs)
    if any(r["name"].startswith("lm_head.") for r in recs):
        total -= sum(r["nbytes"] for r in recs if r["name"].startswith("model.embed_tokens."))
    return total


def read_bandwidth(threads: int) -> float:
    """GB/s of a parallel vector sum over 256 MiB of f32, best of 6, in a child with `threads` threads."""
    out = subprocess.run([sys.executable, __file__, "--bandwidth-child", "--threads", str(threads)], check=True,
                         capture_output=True, text=True, cwd=REPO).stdout
    return float(out.strip().splitlines()[-1])


def bandwidth_child(threads: int, mib: int = 256) -> None:
    os.environ["TVM_NUM_THREADS"] = str(threads)
    import numpy as np
    import tvm
    from tvm.script import tirx as T

    from builder.compile.cpu_schedule import host_target

    n, parts = mib * 2**18, 64
    per = n // parts

    @T.prim_func
    def total(a: T.Buffer((n,), "float32"), out: T.Buffer((parts, 4, 8), "float32")):
        for p in T.parallel(parts):
            for u, lane in T.grid(4, 8):
                out[p, u, lane] = T.float32(0)
            for i in range(per // 32):
                for u in T.unroll(4):  # four independent sums: the loop is bound by loads, not add latency
                    for lane in T.vectorized(8):
                        out[p, u, lane] = out[p, u, lane] + a[p * per + i * 32 + u * 8 + lane]

    f = tvm.compile(tvm.IRModule({"main": total}), target=host_target())
    a = tvm.runtime.tensor(np.ones(n, "float32"))
    o = tvm.runtime.tensor(np.zeros((parts, 4, 8), "float32"))
    best = 1e9
    for _ in range(6):
        t = time.perf_counter()
        f["main"](a, o)
        best = min(best, time.perf_counter() - t)
    assert o.numpy().sum() == n
    print(n * 4 / best / 1e9)


def run_model(model: str, exe: Path, threads: int, reps: int, dots: list[str]) -> list[dict]:
    """One result per CPU dot (`make --cpu-dot`), every library and llama.cpp alternating in each repetition."""
    from builder.fetch import fetch
    from builder.make import make

    gguf = Path(fetch(model, show_progress=False).path)
    builds = {d: Path(make(model, None, bench_cache() / ("vs_llamacpp" if d == "f32" else f"vs_llamacpp-{d}"),
                           targets=("cpu",), show_progress=True, cpu_dot=d).out) for d in dots}
    procs = {d: subprocess.Popen([sys.executable, __file__, "--child", str(b), "--threads", str(threads)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
             for d, b in builds.items()}
    ours, theirs = {d: [] for d in dots}, []
    try:
        for _ in range(reps):
            theirs.append(llama_rep(exe, gguf, threads))
            for d, proc in procs.items():
                proc.stdin.write("rep\n")
                proc.stdin.flush()
                ours[d].append(json.loads(proc.stdout.readline()))
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    results = []
    for d, build in builds.items():
        res = {"model": model, "build": build.name, "cpu_dot": d, "gguf": gguf.name, "threads": threads,
               "reps": reps, "llamacpp": {k: med(theirs, k) for k in theirs[0]},
               "ours": {k: med(ours[d], k) for k in ours[d][0]}, "weight_bytes": weight_bytes(build)}
        res["decode_ratio"] = res["ours"]["decode_ms"] / res["llamacpp"]["decode_ms"]
        res["prefill_ratio"] = res["ours"]["prefill_tok_s"] / res["llamacpp"]["prefill_tok_s"]
        res["latent_over_decode"] = res["ours"]["latent_ms"] / res["ours"]["decode_ms"]
        res["decode_gb_s"] = res["weight_bytes"] / (res["ours"]["decode_ms"] / 1000) / 1e9
        results.append(res)
    return results


def main():
    ap = parser(__doc__)
    ap.add_argument("--model", action="append", help="default: smollm2-135m and gemma3-270m")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cpu-dot", default="f32", help="comma-separated `make --cpu-dot` kinds to time side by side, "
                    "e.g. f32,int8 (default: f32)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--bandwidth-child", action="store_true", help=argparse.SUPPRESS)
    add_json_file(ap)
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.threads)
    if a.bandwidth_child:
        return bandwidth_child(a.threads)
    exe = llama_bench()
    load = loadavg()
    bw = read_bandwidth(a.threads)
    rows, results = [], []
    for model in a.model or ["smollm2-135m", "gemma3-270m"]:
        for r in run_model(model, exe, a.threads, a.reps, a.cpu_dot.split(",")):
            results.append(r)
            o, ll = r["ours"], r["llamacpp"]
            rows.append([f"{r['build']} ({r['cpu_dot']})", r["gguf"], f"{o['decode_ms']:.2f}",
                         f"{ll['decode_ms']:.2f}", f"{r['decode_ratio']:.2f}x", f"{o['prefill_tok_s']:.0f}",
                         f"{ll['prefill_tok_s']:.0f}", f"{r['prefill_ratio']:.2f}x", f"{o['latent_ms']:.2f}",
                         f"{r['latent_over_decode']:.2f}", f"{r['decode_gb_s']:.1f}"])
    print_table(rows, ["ours", "llama.cpp on", "decode ms", "llama.cpp", "ratio", f"prefill {PROMPT} tok/s",
                       "llama.cpp", "ratio", "latent ms", "latent/decode", "decode GB/s"], "llrrrrrrrrr")
    print(f"machine read bandwidth: {bw:.1f} GB/s ({a.threads} threads); decode ratio <= 1.0x is the target")
    line = json.dumps({"when": now_iso(), "machine": machine(), "load_before": load, "load_after": loadavg(),
                       "read_gb_s": bw, "results": results})
    print(line)
    append_line(a.json_file, line)


if __name__ == "__main__":
    main()
