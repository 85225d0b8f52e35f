"""Batched sequences on the CPU runtime (builder/run/batch.py): several sequences in one KV cache, their decode steps
run as one forward. Tiny models built locally; every sequence's logits are compared with the same sequence run
alone, at q0f32 (float weights) and q4f32_2 (int4 with minimum, int8 embedding and LM head: every GEMV kernel)."""

import numpy as np
import pytest

from builder.make import make
from builder.run.engine import Engine


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    cache = {}

    def get(quant):
        if quant not in cache:
            cache[quant] = Engine(make("tiny-llama", quant, out, targets=("cpu",), show_progress=False).out)
        return cache[quant]

    return get


def _alone(eng, prompt, steps):
    """Greedy logits of one sequence on its own: its prefill, then `steps` decode steps."""
    seq = eng.sequence()
    out = [seq.prefill(eng.embed(prompt))]
    for _ in range(steps):
        out.append(seq.decode(eng.embed([int(np.argmax(out[-1]))])[0]))
    return np.stack(out)


@pytest.mark.parametrize("quant", ["q0f32", "q4f32_2"])
def test_batched_decode_gives_lone_logits(engines, quant):
    """Four sequences of 5, 17, 33 and 2 prompt tokens: their batched greedy steps give the logits (and so the
    tokens) each gets alone, within 1e-5 (the kernels sum a batched row in a lone row's order: 0 measured). The
    shortest sequence leaves after three steps, and the other three go on as a batch of three."""
    eng = engines(quant)
    rng = np.random.default_rng(5)
    prompts = [rng.integers(0, eng.vocab_size, n).tolist() for n in (5, 17, 33, 2)]
    steps = [6, 6, 6, 3]
    want = [_alone(eng, p, s) for p, s in zip(prompts, steps, strict=True)]
    batch = eng.batch(len(prompts))
    got = [[batch.prefill(i, eng.embed(p))] for i, p in enumerate(prompts)]
    for step in range(max(steps)):
        live = [i for i in range(len(prompts)) if step < steps[i]]
        nxt = [int(np.argmax(got[i][-1])) for i in live]
        logits = batch.decode(live, eng.embed(nxt))
        for row, i in enumerate(live):
            got[i].append(logits[row])
    for i, w in enumerate(want):
        assert np.abs(np.stack(got[i]) - w).max() <= 1e-5, f"sequence {i}"
        assert [int(np.argmax(x)) for x in got[i]] == [int(np.argmax(x)) for x in w]
    assert batch.lengths == [len(p) + s for p, s in zip(prompts, steps, strict=True)]


def test_batched_latent_steps_and_truncate(engines):
    """decode_hidden over a batch equals each sequence's lone decode_hidden (a latent step feeds a hidden state back
    as the next input); truncating one sequence to its prompt and stepping again repeats its first step."""
    eng = engines("q4f32_2")
    rng = np.random.default_rng(9)
    prompts = [rng.integers(0, eng.vocab_size, n).tolist() for n in (7, 12, 3)]
    batch = eng.batch(3)
    last = np.stack([batch.hidden(i, eng.embed(p))[-1] for i, p in enumerate(prompts)])
    first = batch.decode_hidden([0, 1, 2], last)
    for i, p in enumerate(prompts):
        seq = eng.sequence()
        h = seq.hidden(eng.embed(p))[-1]
        assert np.abs(seq.decode_hidden(h) - first[i]).max() <= 1e-5
    batch.truncate(1, len(prompts[1]))
    again = batch.decode_hidden([1], last[1:2])
    assert np.abs(again[0] - first[1]).max() <= 1e-5
    with pytest.raises(ValueError, match="twice"):
        batch.decode_hidden([0, 0], last[:2])


def test_a_batch_wider_than_one_forward(engines):
    """17 sequences step in forwards of at most STEP_ROWS rows (15 + 2), and a lone last one through the one-row
    function: every row's logits are its lone step's (at 16 rows in one forward the GEMM would take over)."""
    from builder.run.batch import STEP_ROWS

    eng = engines("q4f32_2")
    rng = np.random.default_rng(2)
    prompts = [rng.integers(0, eng.vocab_size, 3 + i).tolist() for i in range(STEP_ROWS + 2)]
    batch = eng.batch(len(prompts))
    first = [batch.prefill(i, eng.embed(p)) for i, p in enumerate(prompts)]
    nxt = eng.embed([int(np.argmax(x)) for x in first])
    got = batch.decode(list(range(len(prompts))), nxt)
    lone = batch.decode([0], nxt[:1])  # sequence 0's second step (the same input again), alone in its forward
    for i, p in enumerate(prompts):
        seq = eng.sequence()
        seq.prefill(eng.embed(p))
        assert np.abs(seq.decode(nxt[i]) - got[i]).max() <= 1e-5, f"sequence {i}"
        if i == 0:
            assert np.abs(seq.decode(nxt[0]) - lone[0]).max() <= 1e-5


@pytest.mark.parametrize("quant", ["q0f32", "q4f32_2"])
def test_prompts_sharing_forwards_get_lone_bits(engines, quant):
    """prefill_many / hidden_many: prompts of 16 rows or more go through shared forwards (here more rows than one
    chunk holds, so they split over several forwards), shorter ones alone; every prompt's hidden states and last
    logits are exactly a lone sequence's, and a decode step after them too."""
    from builder.compile.cpu_schedule import FEW_ROWS as SCHEDULE_FEW_ROWS
    from builder.run.batch import FEW_ROWS

    assert FEW_ROWS == SCHEDULE_FEW_ROWS
    eng = engines(quant)
    rng = np.random.default_rng(11)
    sizes = [17, 5, 40, 16, 33, eng.chunk - 20, 15, 24]
    prompts = [eng.embed(rng.integers(0, eng.vocab_size, n)) for n in sizes]
    batch, ids = eng.batch(len(sizes)), list(range(len(sizes)))
    assert len(batch._groups(ids, prompts)) < len(sizes)  # some prompts do share a forward
    logits = batch.prefill_many(ids, prompts)
    nxt = eng.embed([int(np.argmax(x)) for x in logits])
    after = batch.decode(ids, nxt)
    hid = eng.batch(len(sizes)).hidden_many(ids, prompts)
    for i, p in enumerate(prompts):
        seq = eng.sequence()
        assert np.array_equal(seq.hidden(p), hid[i]), f"prompt {i} ({sizes[i]} rows)"
        seq = eng.sequence()
        assert np.array_equal(seq.prefill(p), logits[i]), f"prompt {i} ({sizes[i]} rows)"
        assert np.abs(seq.decode(nxt[i]) - after[i]).max() <= 1e-5, f"prompt {i}"
