#!/usr/bin/env python3
"""Benchmark `mlcbuild make` on the real Qwen3-0.6B architecture with random weights.

1. Generates (once, cached under <mlcbuild cache>/bench/) a Hugging Face folder with the Qwen/Qwen3-0.6B
   config, seeded random bf16 weights (normal 0.02, norms 1) in model.safetensors, and SmolLM2's tokenizer
   (vocab 49,152 < 151,936: only ids below 49,152 are ever fed; fine for timing).
2. Runs `python3 -m builder.cli make SRC --quant q4f16_1 --target webgpu --json` into a fresh directory,
   polling /proc every 50 ms for the RSS of the whole process tree, and splits the wall time into
   phases: before the first compile child, each compile child (webgpu, cpu), and after the last one
   (the f16 overflow check that q?f16 builds force, plus manifest hashing).
3. Builds `--quant q0f32 --target cpu`, then times 3 decode steps (after a 16-token prefill) with
   builder.engine.Engine and with transformers (float32, torch.set_num_threads(2)) on the same weights,
   each in its own process, and compares their logits.

Every measurement runs in its own process; this script only starts them and watches /proc.
Prints a table; the last stdout line is one JSON object with every figure (also appended to
--json-file if given).
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (
    REPO,
    add_json_file,
    append_line,
    bench_cache,
    last_json,
    loadavg,
    machine,
    now_iso,
    parser,
    print_table,
)
from proctree import run_monitored

GEN_VERSION = 1  # bump when the generated folder changes, so the cache key changes
SEED = 0
INIT_STD = 0.02
# the real Qwen/Qwen3-0.6B config.json values
QWEN3_0P6B = dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                  num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
                  rope_theta=1000000, rms_norm_eps=1e-6, tie_word_embeddings=True, torch_dtype="bfloat16",
                  bos_token_id=151643, eos_token_id=151645, attention_bias=False, hidden_act="silu")
TARGETS = {"total_s": 60.0, "peak_rss_mb": 2000.0, "weights_mb": 340.0}  # MB = 1e6 bytes
PREFILL_IDS = [(i * 7919 + 101) % 49152 for i in range(16)]  # inside SmolLM2's vocab
DECODE_IDS = [1234, 5678, 9012]


# ---------------------------------------------------------------------------------------------------
# children (each measurement in its own process)
# ---------------------------------------------------------------------------------------------------
def child_generate(dst: str, layers: int) -> None:
    """Write the HF folder: config.json, model.safetensors (bf16), tokenizer. Tensor by tensor."""
    import torch
    import transformers
    from safetensors.torch import save_file

    from builder.convert.reader import open_source
    from builder.fetch import tiny_tokenizer_source

    t0 = time.perf_counter()
    dst = Path(dst)
    cfg_kw = {**QWEN3_0P6B, "num_hidden_layers": int(layers)}
    cfg = transformers.Qwen3Config(**cfg_kw)
    cfg.architectures = ["Qwen3ForCausalLM"]
    cfg.save_pretrained(dst)
    with torch.device("meta"):  # names and shapes only, no memory
        meta = transformers.Qwen3ForCausalLM(cfg)
    gen = torch.Generator().manual_seed(SEED)
    tensors = {}
    for name, p in meta.named_parameters():  # tied lm_head is not a separate parameter: not saved
        if p.dim() > 1:
            t = torch.empty(p.shape, dtype=torch.float32).normal_(0.0, INIT_STD, generator=gen)
            tensors[name] = t.to(torch.bfloat16)
            del t
        else:
            tensors[name] = torch.ones(p.shape, dtype=torch.bfloat16)  # RMSNorm weights, as HF initialises them
    del meta
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    n = sum(t.numel() for t in tensors.values())
    del tensors
    open_source(tiny_tokenizer_source()).write_tokenizer(dst)
    (dst / "BENCH_README.txt").write_text(
        f"Qwen3-0.6B architecture with RANDOM weights (seed {SEED}, normal(0, {INIT_STD}), norms 1), written by "
        "bench/build_qwen3_0p6b.py. Tokenizer: SmolLM2's (vocab 49,152, smaller than the config's 151,936).\n")
    print(json.dumps({"params": n, "seconds": round(time.perf_counter() - t0, 2)}))


def child_engine(out_dir: str, logits_npy: str) -> None:
    import numpy as np
    import tvm

    from builder.run.engine import Engine

    t0 = time.perf_counter()
    eng = Engine(Path(out_dir), max_seq_len=256)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    logits = [eng.prefill(eng.embed(PREFILL_IDS))]
    prefill_s = time.perf_counter() - t0
    steps = []
    for tok in DECODE_IDS:
        t0 = time.perf_counter()
        logits.append(eng.decode(eng.embed([tok])[0]))
        steps.append(time.perf_counter() - t0)
    np.save(logits_npy, np.stack(logits).astype(np.float32))
    nthreads = tvm.get_global_func("runtime.NumThreads", allow_missing=True)
    print(json.dumps({"load_s": round(load_s, 2), "prefill16_s": round(prefill_s, 3),
                      "decode_steps_s": [round(s, 3) for s in steps],
                      "decode_median_s": round(statistics.median(steps), 3),
                      "tvm_threads": int(nthreads()) if nthreads else None,
                      "TVM_NUM_THREADS": os.environ.get("TVM_NUM_THREADS")}))


def child_torch(src: str, logits_npy: str) -> None:
    """transformers fp32 with 2 threads (the comparison asked for), then again with 1 thread: the TVM lib is
    single-threaded, and on a busy 2-core machine torch's 2-thread kernels stall on the busy core."""
    import numpy as np
    import torch
    import transformers

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    model.eval()
    res = {"load_s": round(time.perf_counter() - t0, 2), "torch": torch.__version__,
           "transformers": transformers.__version__}
    for threads in (2, 1):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = model(torch.tensor([PREFILL_IDS]), use_cache=True)
            prefill_s = time.perf_counter() - t0
            past, logits, steps = out.past_key_values, [out.logits[0, -1].float().numpy()], []
            for tok in DECODE_IDS:
                t0 = time.perf_counter()
                out = model(torch.tensor([[tok]]), past_key_values=past, use_cache=True)
                steps.append(time.perf_counter() - t0)
                past = out.past_key_values
                logits.append(out.logits[0, -1].float().numpy())
        if threads == 2:
            np.save(logits_npy, np.stack(logits).astype(np.float32))
            res.update({"prefill16_s": round(prefill_s, 3), "decode_steps_s": [round(s, 4) for s in steps],
                        "decode_median_s": round(statistics.median(steps), 4), "torch_threads": threads})
        else:
            res.update({"threads1_prefill16_s": round(prefill_s, 3),
                        "threads1_decode_steps_s": [round(s, 4) for s in steps],
                        "threads1_decode_median_s": round(statistics.median(steps), 4)})
    print(json.dumps(res))


def child_hashes(src: str, out_dir: str) -> None:
    """Time the hashing `make` does outside its timed steps: source_digest and the manifest's sha256s."""
    from builder.make import source_digest
    from mlcbuild_common.fsutil import sha256_file

    t0 = time.perf_counter()
    source_digest(Path(src))
    digest_s = time.perf_counter() - t0
    files = [p for p in Path(out_dir).iterdir() if p.is_file() and p.name != "manifest.json"]
    t0 = time.perf_counter()
    for p in sorted(files):
        sha256_file(p)
    manifest_s = time.perf_counter() - t0
    print(json.dumps({"source_digest_s": round(digest_s, 2), "manifest_sha256_s": round(manifest_s, 2),
                      "source_bytes": sum(p.stat().st_size for p in Path(src).iterdir() if p.is_file()),
                      "output_bytes": sum(p.stat().st_size for p in files)}))


CHILDREN = {"generate": child_generate, "engine": child_engine, "torch": child_torch, "hashes": child_hashes}


def run_child(kind: str, *args: str) -> dict:
    """Run one measurement child (this script, `--child kind args...`) and return its JSON line."""
    res = run_monitored([sys.executable, str(Path(__file__).resolve()), "--child", kind, *args])
    if res["returncode"] != 0:
        sys.stderr.write(res["stderr"])
        raise SystemExit(f"bench: child '{kind}' failed (exit {res['returncode']})")
    out = last_json(res["stdout"])
    out["_wall_s"], out["_peak_rss_mb"] = res["wall_s"], res["peak_tree_rss_mb"]
    return out


# ---------------------------------------------------------------------------------------------------
# orchestration
# ---------------------------------------------------------------------------------------------------
def ensure_source(layers: int) -> tuple[Path, dict | None]:
    """The cached random-weight folder for `layers` layers; generated (in a child) when missing."""
    sys.path.insert(0, str(REPO))
    from mlcbuild_common.fsutil import atomic_dir

    key = hashlib.sha256(json.dumps([GEN_VERSION, SEED, INIT_STD, QWEN3_0P6B, layers],
                                    sort_keys=True).encode()).hexdigest()[:12]
    final = bench_cache() / f"qwen3-0.6b-random-l{layers}-{key}"
    if (final / "model.safetensors").is_file() and (final / "tokenizer.json").is_file():
        return final, None
    print(f"generating {final} (once; not part of the build figures) ...", file=sys.stderr, flush=True)
    with atomic_dir(final) as tmp:
        gen = run_child("generate", str(tmp), str(layers))
    return final, gen


def run_make(src: Path, out_root: Path, quant: str, target: str) -> dict:
    cmd = [sys.executable, "-m", "builder.cli", "make", str(src), "--quant", quant, "--target", target,
           "--out", str(out_root), "--json"]
    res = run_monitored(cmd, cwd=str(REPO))
    if res["returncode"] != 0:
        sys.stderr.write(res["stderr"][-4000:])
        raise SystemExit(f"bench: `{' '.join(cmd[2:])}` failed (exit {res['returncode']})")
    js = json.loads(res["stdout"])
    files = js["manifest"]["files"]
    libs = js["manifest"]["libs"]
    t = js["timings"]
    staged = sum(v for k, v in t.items() if k.endswith("_s") and k != "total_s")  # every timed step
    return {"cmd": "mlcbuild " + " ".join(cmd[3:]), "out": js["out"], "reused": js["reused"],
            "timings": t, "untimed_in_make_s": round(t["total_s"] - staged, 2),
            "startup_s": round(res["wall_s"] - t["total_s"], 2),
            "weights_bytes": sum(r["size"] for n, r in files.items() if n.startswith("params_shard_")),
            "shards": sum(1 for n in files if n.startswith("params_shard_")),
            "libs": {k: {"file": v, "bytes": files[v]["size"]} for k, v in libs.items()},
            **{k: v for k, v in res.items() if k not in ("stdout", "stderr", "returncode")}}


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _verdict(value: float, limit: float) -> str:
    return "PASS" if value <= limit else "FAIL"


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--out", type=Path, default=None, help="output root (default: a fresh temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the build outputs (default: delete them)")
    ap.add_argument("--quick", action="store_true", help="4 layers instead of 28 (smoke run)")
    ap.add_argument("--only", choices=("all", "build", "decode"), default="all",
                    help="build: only the q4f16_1 webgpu build; decode: only the q0f32 build and the decode "
                         "comparison (default: all)")
    add_json_file(ap)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        sys.path.insert(0, str(REPO))
        CHILDREN[a.child[0]](*a.child[1:])
        return

    layers = 4 if a.quick else 28
    src, gen = ensure_source(layers)
    created = a.out is None
    out_root = Path(tempfile.mkdtemp(prefix="bench-qwen3-")) if created else a.out
    out_root.mkdir(parents=True, exist_ok=True)
    for sub in ("q4f16_1-webgpu", "q0f32-cpu"):
        if (out_root / sub).exists():
            shutil.rmtree(out_root / sub)  # fresh output dirs: nothing may be reused
    res = {"bench": "build_qwen3_0p6b", "date": now_iso(), "layers": layers, "quick": a.quick, "source": str(src),
           "generated": gen, "machine": {**machine(), "loadavg_start": loadavg()}, "targets": TARGETS}
    try:
        if a.only in ("all", "build"):
            print(f"building q4f16_1 webgpu from {src} ...", file=sys.stderr, flush=True)
            b = run_make(src, out_root / "q4f16_1-webgpu", "q4f16_1", "webgpu")
            res["q4f16_1_webgpu"] = b
            res["hashes"] = run_child("hashes", str(src), b["out"])
        if a.only in ("all", "decode"):
            print("building q0f32 cpu ...", file=sys.stderr, flush=True)
            c = run_make(src, out_root / "q0f32-cpu", "q0f32", "cpu")
            res["q0f32_cpu"] = c
            print("decode: mlcbuild Engine (CPU lib) ...", file=sys.stderr, flush=True)
            e = run_child("engine", c["out"], str(out_root / "logits_tvm.npy"))
            print("decode: transformers ...", file=sys.stderr, flush=True)
            tr = run_child("torch", str(src), str(out_root / "logits_torch.npy"))
            import numpy as np

            lt, lh = np.load(out_root / "logits_tvm.npy"), np.load(out_root / "logits_torch.npy")
            res["decode"] = {"engine": e, "torch": tr, "ratio": round(e["decode_median_s"] / tr["decode_median_s"], 1),
                             "ratio_torch_1thread": round(e["decode_median_s"] / tr["threads1_decode_median_s"], 1),
                             "max_abs_logit_diff": float(np.abs(lt - lh).max()),
                             "max_abs_logit": float(np.abs(lh).max())}
    finally:
        res["machine"]["loadavg_end"] = loadavg()
        if not a.keep:
            shutil.rmtree(out_root if created else out_root / "q4f16_1-webgpu", ignore_errors=True)
            if not created:
                shutil.rmtree(out_root / "q0f32-cpu", ignore_errors=True)
        else:
            print(f"outputs kept in {out_root}", file=sys.stderr)
    report(res)
    line = json.dumps(res, sort_keys=True)
    append_line(a.json_file, line)
    print(line)


def report(res: dict) -> None:
    rows = []
    if "q4f16_1_webgpu" in res:
        rows += _build_rows(res["q4f16_1_webgpu"], res["hashes"])
    if "q0f32_cpu" in res:
        rows += _decode_rows(res["q0f32_cpu"], res["decode"])
    print(f"Qwen3-0.6B config ({res['layers']} layers), random weights; {res['machine']['cpus']} cpus; "
          f"loadavg {res['machine']['loadavg_start']} -> {res['machine']['loadavg_end']}")
    print_table(rows, align="lr-")


def _build_rows(b: dict, h: dict) -> list[tuple[str, str, str]]:
    t = b["timings"]
    tot = b["wall_s"]
    post = b["phases"].get("post_compile", {}).get("seconds", 0.0)
    f16 = max(b["untimed_in_make_s"] - h["source_digest_s"] - h["manifest_sha256_s"], 0.0)
    cpu_part = t.get("compile_cpu_s", 0.0) + f16
    rows = [
        ("wall time, whole `make` process", f"{tot:.1f} s", _verdict(tot, TARGETS["total_s"]) + " (<= 60 s)"),
        ("  python start-up + imports", f"{b['startup_s']:.1f} s", ""),
        ("  fetch", f"{t['fetch_s']:.1f} s", ""),
        ("  source digest (sha256 of the source, untimed)", f"~{h['source_digest_s']:.1f} s", "measured apart"),
        ("  convert (+ tokenizer)", f"{t['convert_s']:.1f} s",
         f"pure conversion {t['convert_stats']['seconds']:.1f} s"),
        ("  compile webgpu", f"{t.get('compile_webgpu_s', 0):.1f} s", ""),
        ("  compile cpu (forced by q4f16)", f"{t.get('compile_cpu_s', 0):.1f} s", ""),
        ("  f16 check run on the CPU lib (untimed)", f"~{f16:.1f} s",
         f"monitor: {post:.1f} s after last compile"),
        ("  manifest sha256 (untimed)", f"~{h['manifest_sha256_s']:.1f} s", "measured apart"),
        ("  cpu part (compile cpu + f16 check)", f"{cpu_part:.1f} s", f"{100 * cpu_part / tot:.0f}% of wall"),
        ("peak RSS, process tree (50 ms samples)", _mb(b["peak_tree_rss_mb"] * 1e6),
         _verdict(b["peak_tree_rss_mb"], TARGETS["peak_rss_mb"]) + " (<= 2 GB)"),
        ("  largest single process (VmHWM)", _mb(b["max_single_hwm_mb"] * 1e6), b["max_single_hwm_cmd"][:40]),
    ]
    for name, ph in b["phases"].items():
        rows.append((f"  peak in phase {name}", _mb(ph["peak_rss_mb"] * 1e6),
                     f"{ph['seconds']:.1f} s; `make` process alone {ph['peak_main_rss_mb']:.0f} MB"))
    rows += [
        ("weights (params_shard_*)", f"{_mb(b['weights_bytes'])} / {b['shards']} shards",
         _verdict(b["weights_bytes"] / 1e6, TARGETS["weights_mb"]) + " (<= 340 MB)"),
        ("wasm (webgpu lib)", _mb(b["libs"]["webgpu"]["bytes"]), ""),
        ("cpu lib (.so)", _mb(b["libs"].get("cpu", {}).get("bytes", 0)), ""),
        ("reused steps", ", ".join(b["reused"]) or "none (fresh)", ""),
    ]
    return rows


def _decode_rows(c: dict, d: dict) -> list[tuple[str, str, str]]:
    e, t = d["engine"], d["torch"]
    return [
        ("q0f32 cpu build: wall / peak RSS", f"{c['wall_s']:.1f} s / {_mb(c['peak_tree_rss_mb'] * 1e6)}",
         f"convert {c['timings']['convert_s']:.1f} s, compile {c['timings']['compile_cpu_s']:.1f} s"),
        ("decode step, mlcbuild CPU lib (median of 3)", f"{e['decode_median_s']:.3f} s",
         f"steps {e['decode_steps_s']}, tvm threads {e['tvm_threads']}"),
        ("decode step, transformers fp32 (median of 3)", f"{t['decode_median_s']:.4f} s",
         f"steps {t['decode_steps_s']}, torch threads {t['torch_threads']}"),
        ("ratio mlcbuild / torch (2 threads)", f"{d['ratio']:.1f}x", ""),
        ("decode step, transformers fp32, 1 thread", f"{t['threads1_decode_median_s']:.4f} s",
         f"steps {t['threads1_decode_steps_s']}; ratio {d['ratio_torch_1thread']:.1f}x"),
        ("prefill 16 tokens, mlcbuild / torch", f"{e['prefill16_s']:.2f} s / {t['prefill16_s']:.3f} s", ""),
        ("load, mlcbuild / torch", f"{e['load_s']:.1f} s / {t['load_s']:.1f} s",
         f"peak RSS {e['_peak_rss_mb']:.0f} / {t['_peak_rss_mb']:.0f} MB"),
        ("max |logit diff| over prefill+3 decodes", f"{d['max_abs_logit_diff']:.2e}",
         f"max |logit| {d['max_abs_logit']:.2f}"),
    ]


if __name__ == "__main__":
    main()
