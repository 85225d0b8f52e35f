"""The sampling functions WebLLM calls (builder/models/sampling.py), compiled for CPU, against numpy."""

import numpy as np
import pytest
import tvm
from tvm import relax

from builder.models.sampling import FUNCTIONS, add_sampling

V = 777  # not a multiple of 32: the bitmask's last word is partial


@pytest.fixture(scope="module")
def vm():
    ex = tvm.compile(add_sampling(tvm.IRModule(), V, gpu=False), "llvm")
    return relax.VirtualMachine(ex, tvm.cpu())


def t(a):
    return tvm.runtime.tensor(np.ascontiguousarray(a), tvm.cpu())


def top_p_ref(sorted_probs, ids, u, top_p):
    cum = np.cumsum(sorted_probs)
    kept = int(np.searchsorted(cum, top_p) + 1)  # shortest prefix whose mass reaches top_p
    kept = min(max(kept, 1), len(cum))
    mass = cum[kept - 1]
    pick = int(np.argmax(cum[:kept] > u * mass)) if (cum[:kept] > u * mass).any() else kept - 1
    return ids[pick]


def test_softmax_argsort_and_top_p_match_numpy(vm):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(3, 1, V)) * 4).astype("float32")
    temps = np.array([1e-6, 0.7, 1.3], "float32")  # WebLLM sends temperature 0 as 1e-6
    probs = vm["softmax_with_temperature"](t(logits), t(temps)).numpy()
    z = logits / temps[:, None, None]
    ref = np.exp(z - z.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    assert np.abs(probs - ref).max() < 1e-5
    assert (probs[0, 0] == 1.0).sum() == 1 and probs[0, 0].argmax() == logits[0, 0].argmax()

    res = vm["argsort_probs"](t(probs.reshape(3, V)))
    sp, si = res[0].numpy(), res[1].numpy()
    assert (np.diff(sp, axis=-1) <= 0).all()
    assert (np.take_along_axis(probs.reshape(3, V), si, 1) == sp).all()
    assert (np.sort(si, axis=-1) == np.arange(V)).all()  # a permutation of the vocabulary

    u = rng.random(40).astype("float32")
    rows = (np.arange(40) % 3).astype("int32")
    top_p = np.array([1.0, 0.5, 0.9], "float32")
    got = vm["sample_with_top_p"](res[0], res[1], t(u), t(rows), t(top_p)).numpy()
    want = [top_p_ref(sp[r], si[r], u[i], top_p[r]) for i, r in enumerate(rows)]
    assert got.tolist() == [int(w) for w in want]
    assert set(got[rows == 0]) == {logits[0, 0].argmax()}  # temperature ~0 is greedy whatever u is


def test_inplace_bias_penalty_bitmask_match_numpy(vm):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, V)).astype("float32")
    x = t(logits)
    rows, toks, bias = np.array([0, 1, 1], "int32"), np.array([5, 7, 776], "int32"), np.array([2, -3, .5], "float32")
    vm["apply_logit_bias_inplace"](x, t(rows), t(toks), t(bias))
    want = logits.copy()
    want[rows, toks] += bias
    assert np.array_equal(x.numpy(), want)

    seq_rows, pos2seq = np.array([1, 0], "int32"), np.array([0, 0, 1], "int32")
    toks, counts = np.array([3, 9, 3], "int32"), np.array([1, 4, 2], "int32")
    pen = np.array([[0.5, 0.25, 1.3], [0.0, 0.0, 2.0]], "float32")  # presence, frequency, repetition
    before = x.numpy()
    vm["apply_penalty_inplace"](x, t(seq_rows), t(pos2seq), t(toks), t(counts), t(pen))
    for j in range(3):
        q = pos2seq[j]
        v = before[seq_rows[q], toks[j]] - pen[q, 0] - counts[j] * pen[q, 1]
        want[seq_rows[q], toks[j]] = v / pen[q, 2] if v > 0 else v * pen[q, 2]
    assert np.allclose(x.numpy(), want, atol=1e-6)

    allowed = rng.random((2, V)) < 0.3
    words = np.zeros((2, (V + 31) // 32), "uint32")
    for q, tok in zip(*np.nonzero(allowed), strict=True):
        words[q, tok // 32] |= np.uint32(1) << np.uint32(tok % 32)
    before = x.numpy()
    vm["apply_bitmask_inplace"](x, t(np.array([1, 0], "int32")), t(words.view("int32")))
    after = x.numpy()
    for q, row in ((0, 1), (1, 0)):
        assert np.array_equal(after[row][allowed[q]], before[row][allowed[q]])
        assert (after[row][~allowed[q]] == np.finfo("float32").min).all()


def test_every_built_library_exports_them(tmp_path):
    from builder.make import make
    from builder.run.engine import Engine

    out = make("tiny-qwen3", "q0f32", tmp_path, targets=("cpu",), show_progress=False).out
    eng = Engine(out)
    assert set(FUNCTIONS) <= set(eng.meta["functions"])
    logits = eng.prefill(eng.embed([1, 2, 3]))  # [V]: the last position's logits, as WebLLM reads them
    probs = eng.vm["softmax_with_temperature"](t(logits.reshape(1, 1, -1)), t(np.array([1e-6], "float32")))
    assert int(probs.numpy().argmax()) == int(np.argmax(logits))
