"""Opt-in one-row CPU GEMVs with 8-bit activations and integer dot products (`make --cpu-dot int8`).

The default CPU kernels dequantize each weight to f32 and multiply it by the f32 activation: every weight costs an
unpack, a convert and two FMAs, so a decode step is bound by arithmetic, not by memory (bench/RESULTS.md). This is
what llama.cpp does instead: quantize the activation row once per call to int8 in groups of 32 (one scale per
group, round to nearest), then take each group's dot product in int32 with AVX-512 VNNI (`vpdpbusd`: unsigned
weight bytes times signed activation bytes, 4 products summed into each int32 lane), and scale once per group:

    int4 + min (q4*_2):  y = sum_g  scale_g * dx_g * sum_k q_k xq_k   +  sum_g  min_g * xsum_g
    int4 symmetric:      y = sum_g  scale_g * (dx_g * sum_k q_k xq_k  -  7 * xsum_g)
    int8 (LM head):      y = sum_g  scale_g * (dx_g * sum_k b_k xq_k  -  128 * xsum_g)

xsum_g is the exact f32 sum of the group's activations. The weights are read in their stored layout. For int4,
the low nibbles of a word (columns 0, 2, 4, 6) and its high nibbles (1, 3, 5, 7) become bytes with one mask each;
the activation bytes are packed in the same order when they are quantized.

The answers move: each activation moves by up to 1/254 of its group's largest magnitude. So this is not the
default. Only one-row kernels use it (decode, decode_last_hidden, and the LM head of a prefill's last row); the
many-row kernels (prefill, batched steps) keep f32.
"""

from tvm import tirx
from tvm.ir import TensorLoad
from tvm.script import tirx as T

from ..models.params import GROUP_SIZE, INT4, INT4_MIN, INT8, INT8_ZERO, MAX_INT

ROW_BLOCK = 16  # output rows per task on the pool (the task's scratch is allocated once per block)
INTERLEAVE = 2  # int4 rows summed side by side: two independent FMA chains


def swap_in(func, sch, mm, deq, k_len: int, out_len: int, consumers: list):
    """Our kernel in place of `func` (a one-row matmul_nt kernel, scheduled as `sch`, with blocks `mm` and
    `deq`, the dequantize stage or None), with `func`'s parameters in `func`'s order; None where it does not apply
    (f16, a float weight, an epilogue other than one add)."""
    if deq is None or k_len % GROUP_SIZE or out_len % ROW_BLOCK:
        return None
    reads = [r.source for r in sch.get(deq).reads]
    words = [b for b in reads if b.dtype == "uint32"]
    floats = [b for b in reads if b.dtype == "float32" and len(b.shape) == 2]
    x = [r.source for r in sch.get(mm).reads if len(r.region) == 3]
    out = sch.get(mm).writes[0].source
    if len(words) != 1 or len(x) != 1 or x[0].dtype != "float32" or out.dtype != "float32":
        return None
    per_word = k_len // int(words[0].shape[-1])
    fmt = {8: INT4_MIN if len(floats) == 2 else INT4, 4: INT8}.get(per_word)
    if fmt is None or len(floats) != (2 if fmt == INT4_MIN else 1):
        return None
    roles = {"x": x[0], "qw": words[0]}
    if fmt == INT4_MIN:  # q * scale + min: the minimum is the add's second operand
        value = sch.get(deq).body.value
        if not (isinstance(value, tirx.Add) and isinstance(value.b, TensorLoad)):
            return None
        roles["qm"] = value.b.source
        roles["qs"] = next(b for b in floats if not b.same_as(roles["qm"]))
    else:
        roles["qs"] = floats[0]
    if consumers:
        add = sch.get(consumers[0])
        loads = [v for v in (getattr(add.body.value, "a", None), getattr(add.body.value, "b", None))
                 if isinstance(v, TensorLoad)]
        if len(consumers) != 1 or not isinstance(add.body.value, tirx.Add) or len(loads) != 2 \
                or not any(v.source.same_as(out) for v in loads):
            return None
        roles["res"] = next(v.source for v in loads if not v.source.same_as(out))
        out = add.writes[0].source
    roles["y"] = out
    by_name = {b.name: role for role, b in roles.items()}
    if len(by_name) != len(roles) or len(func.params) != len(roles) \
            or any(p.name not in by_name for p in func.params):
        return None
    kernel = int8_dot_gemv(fmt, k_len, out_len, "res" in roles)
    mine = dict(zip([r for r in ("x", "qw", "qs", "qm", "res", "y") if r in roles], kernel.params, strict=True))
    params = [mine[by_name[p.name]] for p in func.params]
    swapped = tirx.PrimFunc(params, kernel.body, kernel.ret_type, func.attrs)
    return swapped.with_attr("tirx.noalias", True).with_attr("tirx.is_scheduled", True)


def has_vnni(target) -> bool:
    """Whether the target CPU has 128-bit VNNI (AVX-512 VNNI with VL)."""
    from tvm.target.codegen import target_has_features

    try:
        return bool(target_has_features("avx512vnni", target) and target_has_features("avx512vl", target))
    except Exception:  # noqa: BLE001 - an LLVM without these feature names: not this CPU
        return False


def int8_dot_gemv(fmt: str, k_len: int, out_len: int, residual: bool):
    """y[0, 0, o] = sum_k x[0, 0, k] * W[o, k] (+ res[0, 0, o]) with W stored as `fmt`; parameters in the order
    x, q_weight, q_scale[, q_min][, res], y."""
    groups, nibbles = k_len // GROUP_SIZE, fmt != INT8
    words = k_len // (8 if nibbles else 4)
    n = GROUP_SIZE // (8 if nibbles else 4)  # words per group = vector lanes: 4 (128 bits) or 8 (256 bits)
    lanes, i32, i8, f32 = tirx.Ramp(0, 1, n), f"int32x{n}", f"int8x{4 * n}", f"float32x{n}"
    vnni = f"llvm.x86.avx512.vpdpbusd.{32 * n}"
    zero = MAX_INT if fmt == INT4 else INT8_ZERO  # subtracted per weight (INT4_MIN adds its minimum instead)
    ilv = INTERLEAVE if nibbles else 1  # int8 rows (the LM head) stream one at a time: see _gemv_bytes

    def byte_of(x, inv, k):  # activation k as a signed byte, in the low 8 bits of an int32
        return T.Cast("int32", T.round(x[0, 0, k] * inv)) & 255

    # fmt: off
    @T.macro
    def quantize(x, xa, xb, dx, xs, amax):
        for g in T.serial(groups):
            amax[0] = T.float32(0)
            xs[g] = T.float32(0)
            for i in T.serial(GROUP_SIZE):
                amax[0] = T.max(amax[0], T.fabs(x[0, 0, g * GROUP_SIZE + i]))
                xs[g] = xs[g] + x[0, 0, g * GROUP_SIZE + i]
            dx[g] = amax[0] / T.float32(127)
            inv: T.let[T.float32] = T.if_then_else(amax[0] > T.float32(0), T.float32(127) / amax[0], T.float32(0))
            if nibbles:  # xa: the bytes of columns 0, 2, 4, 6 of each word; xb: of 1, 3, 5, 7
                for w in T.serial(GROUP_SIZE // 8):
                    for h in T.serial(2):
                        c: T.let[T.int32] = g * GROUP_SIZE + w * 8 + h
                        packed: T.let[T.int32] = (byte_of(x, inv, c) | (byte_of(x, inv, c + 2) << 8)
                                                  | (byte_of(x, inv, c + 4) << 16) | (byte_of(x, inv, c + 6) << 24))
                        if h == 0:
                            xa[g * 4 + w] = packed
                        else:
                            xb[g * 4 + w] = packed
            else:  # int8 words hold 4 consecutive columns: bytes in column order
                for w in T.serial(GROUP_SIZE // 4):
                    c: T.let[T.int32] = g * GROUP_SIZE + w * 4
                    xa[g * 8 + w] = (byte_of(x, inv, c) | (byte_of(x, inv, c + 1) << 8)
                                     | (byte_of(x, inv, c + 2) << 16) | (byte_of(x, inv, c + 3) << 24))

    @T.macro
    def dot_rows(qw, qs, qm, res, y, xa, xb, dx, xs):
        for ob in T.parallel(out_len // ROW_BLOCK):
            with T.sblock("rows"):
                acc = T.sblock_alloc_buffer((ilv, n), "float32", scope="local")
                off = T.sblock_alloc_buffer((ilv,), "float32", scope="local")
                isum = T.sblock_alloc_buffer((n,), "int32", scope="local")
                for r in T.serial(ROW_BLOCK // ilv):
                    for i in T.unroll(ilv):
                        acc[i, lanes] = T.broadcast(T.float32(0), n)
                        off[i] = T.float32(0)
                    for g in T.serial(groups):
                        for i in T.unroll(ilv):
                            o: T.let[T.int32] = ob * ROW_BLOCK + r * ilv + i
                            wv: T.let = T.reinterpret(i32, qw[o, T.ramp(g * n, 1, n)])
                            if nibbles:  # low nibbles, then high nibbles, as bytes
                                mask: T.let = T.broadcast(T.int32(0x0F0F0F0F), n)
                                lo: T.let = T.call_llvm_pure_intrin(i32, vnni, T.broadcast(T.int32(0), n),
                                                                    T.reinterpret(i8, wv & mask),
                                                                    T.reinterpret(i8, xa[T.ramp(g * n, 1, n)]))
                                hi: T.let = T.shift_right(wv, T.broadcast(T.int32(4), n)) & mask
                                isum[lanes] = T.call_llvm_pure_intrin(i32, vnni, lo, T.reinterpret(i8, hi),
                                                                      T.reinterpret(i8, xb[T.ramp(g * n, 1, n)]))
                            else:
                                isum[lanes] = T.call_llvm_pure_intrin(i32, vnni, T.broadcast(T.int32(0), n),
                                                                      T.reinterpret(i8, wv),
                                                                      T.reinterpret(i8, xa[T.ramp(g * n, 1, n)]))
                            acc[i, lanes] = acc[i, lanes] + T.Cast(f32, isum[lanes]) * T.broadcast(qs[o, g] * dx[g], n)
                            if fmt == INT4_MIN:
                                off[i] = off[i] + qm[o, g] * xs[g]
                            else:
                                off[i] = off[i] - T.float32(zero) * qs[o, g] * xs[g]
                    for i in T.unroll(ilv):
                        o: T.let[T.int32] = ob * ROW_BLOCK + r * ilv + i
                        for c in T.unroll(n):
                            off[i] = off[i] + acc[i, c]
                        if residual:
                            y[0, 0, o] = off[i] + res[0, 0, o]
                        else:
                            y[0, 0, o] = off[i]
    # fmt: on
    return _assemble(fmt, k_len, out_len, residual, words, groups, quantize, dot_rows)


def _assemble(fmt, k_len, out_len, residual, words, groups, quantize, dot_rows):
    """The PrimFunc with the parameters `fmt` and `residual` need: x, qw, qs[, qm][, res], y."""
    wshape, gshape, vec, out = (out_len, words), (out_len, groups), (1, 1, k_len), (1, 1, out_len)

    # fmt: off
    @T.macro
    def body(x, qw, qs, qm, res, y):
        xa = T.decl_buffer((words,), "int32")
        xb = T.decl_buffer((words,), "int32")
        dx = T.decl_buffer((groups,), "float32")
        xs = T.decl_buffer((groups,), "float32")
        amax = T.decl_buffer((1,), "float32", scope="local")
        quantize(x, xa, xb, dx, xs, amax)
        dot_rows(qw, qs, qm, res, y, xa, xb, dx, xs)

    if fmt == INT4_MIN and residual:
        @T.prim_func(s_tir=True)
        def f(x: T.Buffer(vec, "float32"), qw: T.Buffer(wshape, "uint32"), qs: T.Buffer(gshape, "float32"),
              qm: T.Buffer(gshape, "float32"), res: T.Buffer(out, "float32"), y: T.Buffer(out, "float32")):
            body(x, qw, qs, qm, res, y)
    elif fmt == INT4_MIN:
        @T.prim_func(s_tir=True)
        def f(x: T.Buffer(vec, "float32"), qw: T.Buffer(wshape, "uint32"), qs: T.Buffer(gshape, "float32"),
              qm: T.Buffer(gshape, "float32"), y: T.Buffer(out, "float32")):
            body(x, qw, qs, qm, None, y)
    elif residual:
        @T.prim_func(s_tir=True)
        def f(x: T.Buffer(vec, "float32"), qw: T.Buffer(wshape, "uint32"), qs: T.Buffer(gshape, "float32"),
              res: T.Buffer(out, "float32"), y: T.Buffer(out, "float32")):
            body(x, qw, qs, None, res, y)
    else:
        @T.prim_func(s_tir=True)
        def f(x: T.Buffer(vec, "float32"), qw: T.Buffer(wshape, "uint32"), qs: T.Buffer(gshape, "float32"),
              y: T.Buffer(out, "float32")):
            body(x, qw, qs, None, None, y)
    # fmt: on
    return f.with_attr("tirx.noalias", True).with_attr("tirx.is_scheduled", True)
