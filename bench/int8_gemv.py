#!/usr/bin/env python3
"""One-row GEMV kernels alone: the default f32 schedule (cpu_schedule.LinearRule) against the opt-in int8-activation
kernel (cpu_int8_dot.py, `make --cpu-dot int8`), alternating, on SmolLM2-135M's shapes with random weights.

Times are medians of --reps repetitions, each the mean of enough calls to move about 200 M weights. All but the LM
head fit in this machine's caches, so those rows measure arithmetic; the LM head (28 MB) streams from memory.

  python3 bench/int8_gemv.py
"""

import json
import statistics
import time

import numpy as np
from common import add_json_file, append_line, loadavg, machine, now_iso, parser, print_table

SHAPES = [("qkv", "int4_min", 576, 960), ("o", "int4_min", 576, 576), ("gate/up", "int4_min", 576, 3072),
          ("down", "int4_min", 1536, 576), ("lm head", "int8", 576, 49152)]


def f32_kernel(fmt, k_len, out_len, target):
    import tvm
    from tvm import te

    from builder.compile.cpu_schedule import LinearRule
    from builder.models.layers import weight_value
    from builder.models.params import INT4_MIN, INT8

    x = te.placeholder((1, 1, k_len), "float32", name="x")
    per_word = 4 if fmt == INT8 else 8
    w = [te.placeholder((out_len, k_len // per_word), "uint32", name="qw"),
         te.placeholder((out_len, k_len // 32), "float32", name="qs")]
    if fmt == INT4_MIN:
        w.append(te.placeholder((out_len, k_len // 32), "float32", name="qm"))
    deq = te.compute((out_len, k_len), lambda o, j: weight_value(fmt, w, o, j, "float32"), name="dequantize")
    k = te.reduce_axis((0, k_len), name="k")
    y = te.compute((1, 1, out_len), lambda i, t, o: te.sum(x[i, t, k] * deq[o, k], axis=k), name="matmul")
    func = te.create_prim_func([x, *w, y]).with_attr("global_symbol", "main")
    with target:
        sch = LinearRule().apply(func, target, False)
    return tvm.compile(tvm.IRModule({"main": sch.mod["main"].with_attr("tirx.noalias", True)}), target=target)


def int8_kernel(fmt, k_len, out_len, target):
    import tvm

    from builder.compile.cpu_int8_dot import int8_dot_gemv

    func = int8_dot_gemv(fmt, k_len, out_len, False).with_attr("global_symbol", "main")
    return tvm.compile(tvm.IRModule({"main": func}), target=target)


def time_kernel(lib, args, calls):
    lib["main"](*args)
    t = time.perf_counter()
    for _ in range(calls):
        lib["main"](*args)
    return (time.perf_counter() - t) / calls * 1e6


def main():
    ap = parser(__doc__)
    ap.add_argument("--reps", type=int, default=5)
    add_json_file(ap)
    a = ap.parse_args()
    import tvm

    from builder.compile.cpu_int8_dot import has_vnni
    from builder.compile.cpu_schedule import host_target

    target = host_target()
    if not has_vnni(target):
        raise SystemExit("int8_gemv: this CPU has no AVX-512 VNNI, which the int8 kernels need")
    load, rng, rows, results = loadavg(), np.random.default_rng(0), [], []
    for name, fmt, k_len, out_len in SHAPES:
        per_word = 4 if fmt == "int8" else 8
        arrays = [rng.standard_normal((1, 1, k_len)).astype(np.float32),
                  rng.integers(0, 2**32, (out_len, k_len // per_word), dtype=np.uint64).astype(np.uint32),
                  (rng.random((out_len, k_len // 32)) * 0.02).astype(np.float32)]
        if fmt == "int4_min":
            arrays.append(-(rng.random((out_len, k_len // 32)) * 0.1).astype(np.float32))
        arrays.append(np.zeros((1, 1, out_len), np.float32))
        args = [tvm.runtime.tensor(t, tvm.cpu()) for t in arrays]
        libs = {"f32": f32_kernel(fmt, k_len, out_len, target), "int8": int8_kernel(fmt, k_len, out_len, target)}
        calls = max(5, int(2e8 // (k_len * out_len)))
        us = {n: [] for n in libs}
        for _ in range(a.reps):
            for n, lib in libs.items():
                us[n].append(time_kernel(lib, args, calls))
        med = {n: statistics.median(v) for n, v in us.items()}
        results.append({"kernel": name, "fmt": fmt, "k": k_len, "out": out_len, "f32_us": med["f32"],
                        "int8_us": med["int8"]})
        rows.append([name, fmt, f"{k_len} -> {out_len}", f"{med['f32']:.1f}", f"{med['int8']:.1f}",
                     f"{med['f32'] / med['int8']:.2f}x"])
    print_table(rows, ["kernel", "weights", "shape", "f32 us", "int8 us", "speed-up"], "lllrrr")
    line = json.dumps({"when": now_iso(), "machine": machine(), "load_before": load, "load_after": loadavg(),
                       "results": results})
    print(line)
    append_line(a.json_file, line)


if __name__ == "__main__":
    main()
