"""The sampling functions WebLLM's chat pipeline looks up in a model library, written for our builds.

WebLLM (0.2.86) refuses a library that lacks any of them, and calls them on the logits our `prefill` and
`decode` return (f32 in every build, so one set of kernels serves f32 and f16 libraries alike):

| function                  | arguments                                              | returns / effect             |
|---------------------------|--------------------------------------------------------|------------------------------|
| softmax_with_temperature  | logits [b, n, V], temperature [b]                      | probs [b, n, V]              |
| argsort_probs             | probs [b, V]                                           | (sorted probs, token ids)    |
| sample_with_top_p         | sorted probs [b, V], ids [b, V] i32, uniform [s],      | tokens [s] i32               |
|                           | sample rows [s] i32, top_p [b]                         |                              |
| apply_logit_bias_inplace  | logits [b, V], rows [k] i32, tokens [k] i32, bias [k]  | logits[row, token] += bias   |
| apply_penalty_inplace     | logits [b, V], seq rows [q] i32, pos2seq [k] i32,      | presence/frequency subtract, |
|                           | tokens [k] i32, counts [k] i32, penalties [q, 3]       | then repetition scaling      |
| apply_bitmask_inplace     | logits [b, V], seq rows [q] i32, bitmask [q, V/32] i32 | masked-out tokens -> -max    |

The in-place kernels are ours in TIR; one thread per touched element on WebGPU, plain loops on CPU.
`sample_with_top_p` walks a row serially (one thread per sample): it reads at most 2 V floats.
"""

import tvm
from tvm import relax, tirx
from tvm.script import tirx as T

FUNCTIONS = ("softmax_with_temperature", "argsort_probs", "sample_with_top_p", "apply_logit_bias_inplace",
             "apply_penalty_inplace", "apply_bitmask_inplace")
THREADS = 256  # WebGPU's default maxComputeInvocationsPerWorkgroup


def _loops(gpu: bool):
    """(outer, inner) loop makers: workgroups x threads on WebGPU, two plain loops on CPU."""
    def outer(n):
        return T.thread_binding(n, thread="blockIdx.x") if gpu else T.serial(n)

    def inner(n):
        return T.thread_binding(n, thread="threadIdx.x") if gpu else T.serial(n)

    return outer, inner


def logit_bias_kernel(vocab: int, gpu: bool):
    outer, inner = _loops(gpu)

    # fmt: off
    @T.prim_func(s_tir=True)
    def logit_bias(var_logits: T.handle, var_rows: T.handle, var_tokens: T.handle, var_bias: T.handle):
        B = T.int32()
        K = T.int32()
        logits = T.match_buffer(var_logits, (B, vocab), "float32")
        rows = T.match_buffer(var_rows, (K,), "int32")
        tokens = T.match_buffer(var_tokens, (K,), "int32")
        bias = T.match_buffer(var_bias, (K,), "float32")
        for bx in outer((K + THREADS - 1) // THREADS):
            for tx in inner(THREADS):
                with T.sblock("bias"):
                    if bx * THREADS + tx < K:
                        j: T.let[T.int32] = bx * THREADS + tx
                        logits[rows[j], tokens[j]] = logits[rows[j], tokens[j]] + bias[j]
    # fmt: on
    return logit_bias.with_attr("tirx.is_scheduled", True)


def penalty_kernel(vocab: int, gpu: bool):
    outer, inner = _loops(gpu)

    # fmt: off
    @T.prim_func(s_tir=True)
    def penalty(var_logits: T.handle, var_seq_rows: T.handle, var_pos2seq: T.handle, var_tokens: T.handle,
                var_counts: T.handle, var_penalties: T.handle):
        B = T.int32()
        Q = T.int32()
        K = T.int32()
        logits = T.match_buffer(var_logits, (B, vocab), "float32")
        seq_rows = T.match_buffer(var_seq_rows, (Q,), "int32")
        pos2seq = T.match_buffer(var_pos2seq, (K,), "int32")
        tokens = T.match_buffer(var_tokens, (K,), "int32")
        counts = T.match_buffer(var_counts, (K,), "int32")
        penalties = T.match_buffer(var_penalties, (Q, 3), "float32")  # presence, frequency, repetition
        for bx in outer((K + THREADS - 1) // THREADS):
            for tx in inner(THREADS):
                with T.sblock("penalty"):
                    if bx * THREADS + tx < K:
                        j: T.let[T.int32] = bx * THREADS + tx
                        q: T.let[T.int32] = pos2seq[j]
                        x: T.let[T.float32] = (logits[seq_rows[q], tokens[j]] - penalties[q, 0]
                                               - T.Cast("float32", counts[j]) * penalties[q, 1])
                        logits[seq_rows[q], tokens[j]] = T.if_then_else(x > T.float32(0), x / penalties[q, 2],
                                                                        x * penalties[q, 2])
    # fmt: on
    return penalty.with_attr("tirx.is_scheduled", True)


def bitmask_kernel(vocab: int, gpu: bool):
    outer, inner = _loops(gpu)
    words = (vocab + 31) // 32

    # fmt: off
    @T.prim_func(s_tir=True)
    def bitmask(var_logits: T.handle, var_seq_rows: T.handle, var_mask: T.handle):
        B = T.int32()
        Q = T.int32()
        logits = T.match_buffer(var_logits, (B, vocab), "float32")
        seq_rows = T.match_buffer(var_seq_rows, (Q,), "int32")
        mask = T.match_buffer(var_mask, (Q, words), "int32")
        for bx in outer((Q * vocab + THREADS - 1) // THREADS):
            for tx in inner(THREADS):
                with T.sblock("bitmask"):
                    if bx * THREADS + tx < Q * vocab:
                        q: T.let[T.int32] = (bx * THREADS + tx) // vocab
                        t: T.let[T.int32] = (bx * THREADS + tx) % vocab
                        if T.bitwise_and(T.shift_right(mask[q, t // 32], t % 32), 1) == 0:
                            logits[seq_rows[q], t] = T.min_value("float32")
    # fmt: on
    return bitmask.with_attr("tirx.is_scheduled", True)


def sort_kernel(vocab: int, gpu: bool):
    """Rows sorted by probability, descending, ties by token id: a bitonic network over the row padded to a
    power of two (TVM's GPU sort binds blockIdx.z, which its WebGPU code generator rejects)."""
    outer, inner = _loops(gpu)
    size = 1 << max(vocab - 1, 1).bit_length()
    log2 = size.bit_length() - 1
    per_row = max(size // THREADS, 1)
    width = min(size, THREADS)

    # fmt: off
    @T.prim_func(s_tir=True)
    def bitonic(var_probs: T.handle, var_keys: T.handle, var_ids: T.handle):
        B = T.int32()
        probs = T.match_buffer(var_probs, (B, vocab), "float32")
        keys = T.match_buffer(var_keys, (B, size), "float32")
        ids = T.match_buffer(var_ids, (B, size), "int32")
        for bx in outer(B * per_row):
            for tx in inner(width):
                with T.sblock("pad"):
                    r: T.let[T.int32] = bx // per_row
                    i: T.let[T.int32] = bx % per_row * width + tx
                    keys[r, i] = T.if_then_else(i < vocab, probs[r, T.min(i, vocab - 1)], T.float32(-1))
                    ids[r, i] = i
        for stage in T.serial(log2):
            for step in T.serial(stage + 1):
                for bx in outer(B * per_row):
                    for tx in inner(width):
                        with T.sblock("exchange"):
                            r: T.let[T.int32] = bx // per_row
                            i: T.let[T.int32] = bx % per_row * width + tx
                            mate: T.let[T.int32] = T.bitwise_xor(i, T.shift_right(T.shift_left(1, stage), step))
                            if mate > i:
                                ki: T.let[T.float32] = keys[r, i]
                                kl: T.let[T.float32] = keys[r, mate]
                                ii: T.let[T.int32] = ids[r, i]
                                il: T.let[T.int32] = ids[r, mate]
                                l_first: T.let[T.bool] = kl > ki or (kl == ki and il < ii)
                                i_first: T.let[T.bool] = ki > kl or (ki == kl and ii < il)
                                down: T.let[T.bool] = T.bitwise_and(i, T.shift_left(2, stage)) == 0
                                if (down and l_first) or (not down and i_first):
                                    keys[r, i] = kl
                                    keys[r, mate] = ki
                                    ids[r, i] = il
                                    ids[r, mate] = ii
    # fmt: on
    return bitonic.with_attr("tirx.is_scheduled", True), size


def top_p_kernel(vocab: int, gpu: bool):
    """Per sample: keep the shortest prefix of the sorted row whose mass reaches top_p (at least one token),
    then pick the first token whose running sum passes uniform * that mass."""
    outer, inner = _loops(gpu)

    # fmt: off
    @T.prim_func(s_tir=True)
    def top_p(var_probs: T.handle, var_ids: T.handle, var_uniform: T.handle, var_rows: T.handle,
              var_top_p: T.handle, var_out: T.handle):
        B = T.int32()
        S = T.int32()
        probs = T.match_buffer(var_probs, (B, vocab), "float32")
        ids = T.match_buffer(var_ids, (B, vocab), "int32")
        uniform = T.match_buffer(var_uniform, (S,), "float32")
        rows = T.match_buffer(var_rows, (S,), "int32")
        top_p_of = T.match_buffer(var_top_p, (B,), "float32")
        out = T.match_buffer(var_out, (S,), "int32")
        for bx in outer(S):
            for tx in inner(1):
                with T.sblock("sample"):
                    mass = T.sblock_alloc_buffer((1,), "float32", scope="local")
                    kept = T.sblock_alloc_buffer((1,), "int32", scope="local")
                    run = T.sblock_alloc_buffer((1,), "float32", scope="local")
                    pick = T.sblock_alloc_buffer((1,), "int32", scope="local")
                    r: T.let[T.int32] = rows[bx + tx]
                    mass[0] = T.float32(0)
                    kept[0] = 0
                    for j in T.serial(vocab):
                        if mass[0] < top_p_of[r] or kept[0] == 0:
                            mass[0] = mass[0] + probs[r, j]
                            kept[0] = j + 1
                    run[0] = T.float32(0)
                    pick[0] = -1
                    for j in T.serial(vocab):
                        if j < kept[0] and pick[0] < 0:
                            run[0] = run[0] + probs[r, j]
                            if run[0] > uniform[bx + tx] * mass[0]:
                                pick[0] = j
                    out[bx + tx] = ids[r, T.if_then_else(pick[0] < 0, kept[0] - 1, pick[0])]
    # fmt: on
    return top_p.with_attr("tirx.is_scheduled", True)


def add_sampling(mod: tvm.IRModule, vocab: int, gpu: bool) -> tvm.IRModule:
    """`mod` with the six functions above (relax entry points, TIR kernels where relax has no op)."""
    bb = relax.BlockBuilder(mod)
    f32, i32 = "float32", "int32"
    b, n, k, q, s = (tirx.Var(name, "int64") for name in ("batch", "num_pos", "num_tok", "num_seq", "num_samples"))

    def var(name, shape, dtype):
        return relax.Var(name, relax.TensorType(shape, dtype))

    sorter, padded = sort_kernel(vocab, gpu)
    kernels = {"tir_sort": bb.add_func(sorter, "tir_sort")}
    kernels.update({name: bb.add_func(make(vocab, gpu), name) for name, make in (
        ("tir_logit_bias", logit_bias_kernel), ("tir_penalty", penalty_kernel), ("tir_bitmask", bitmask_kernel),
        ("tir_top_p", top_p_kernel))})

    logits3, temp = var("logits", [b, n, vocab], f32), var("temperature", [b], f32)
    with bb.function("softmax_with_temperature", [logits3, temp]):
        with bb.dataflow():
            scaled = bb.emit(relax.op.divide(logits3, relax.op.reshape(temp, relax.ShapeExpr([b, 1, 1]))))
            out = bb.emit_output(relax.op.nn.softmax(scaled, axis=-1))
        bb.emit_func_output(out)

    probs = var("probs", [b, vocab], f32)
    with bb.function("argsort_probs", [probs]):
        with bb.dataflow():
            both = bb.emit(relax.call_tir(kernels["tir_sort"], [probs], [relax.TensorType([b, padded], f32),
                                                                         relax.TensorType([b, padded], i32)]))
            ranked = bb.emit(relax.op.strided_slice(relax.TupleGetItem(both, 0), [1], [0], [vocab]))
            order = bb.emit(relax.op.strided_slice(relax.TupleGetItem(both, 1), [1], [0], [vocab]))
            out = bb.emit_output(relax.Tuple([ranked, order]))
        bb.emit_func_output(out)

    sorted_probs, ids = var("sorted_probs", [b, vocab], f32), var("sorted_ids", [b, vocab], i32)
    uniform, rows, top_p = var("uniform_samples", [s], f32), var("sample_indices", [s], i32), var("top_p", [b], f32)
    with bb.function("sample_with_top_p", [sorted_probs, ids, uniform, rows, top_p]):
        out = bb.emit(relax.call_tir(kernels["tir_top_p"], [sorted_probs, ids, uniform, rows, top_p],
                                     relax.TensorType([s], i32)))
        bb.emit_func_output(out)

    inplace = {
        "apply_logit_bias_inplace": ("tir_logit_bias", [var("pos2seq_id", [k], i32), var("token_ids", [k], i32),
                                                       var("logit_bias", [k], f32)]),
        "apply_penalty_inplace": ("tir_penalty", [var("seq_ids", [q], i32), var("pos2seq_id", [k], i32),
                                                  var("token_ids", [k], i32), var("token_cnt", [k], i32),
                                                  var("penalties", [q, 3], f32)]),
        "apply_bitmask_inplace": ("tir_bitmask", [var("seq_ids", [q], i32),
                                                  var("bitmask", [q, (vocab + 31) // 32], i32)]),
    }
    for name, (kernel, rest) in inplace.items():
        lg = var("logits", [b, vocab], f32)
        with bb.function(name, [lg, *rest]):
            out = bb.emit(relax.call_tir_inplace(kernels[kernel], [lg, *rest], 0, lg.ty))
            bb.emit_func_output(out)
    return bb.get()
