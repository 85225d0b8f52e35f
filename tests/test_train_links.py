"""RecursiveLink training on tiny random models: modules, latent rollout, gradients through rounds, inner/outer
training, heterogeneous dims, recursivelink.json round trips. Real torch, no mocks."""

import copy
import math

import pytest
import torch

from builder.fetch import model_source
from mlcbuild_common.errors import MlcbuildError
from train_links import format as fmt
from train_links.agents import make_agents
from train_links.data import builtin
from train_links.links import InnerLink, OuterLink, expected_shapes
from train_links.patterns import sequential
from train_links.rollout import answer_loss, latent_rollout
from train_links.system import LinkSet, run_latent
from train_links.train import OuterTrainer, inner_cosine, inner_pairs, mean_answer_ce, train_inner

torch.set_num_threads(1)


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _own_tokenizer(texts):
    """A small byte-level BPE (vocab 400) trained here: a tokenizer unlike SmolLM2's 49152-token one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer, tk.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tk.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|im_start|>", "<|im_end|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|im_end|>")
    tok.chat_template = CHATML
    return tok


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """Tiny models of two families, two hidden sizes and two tokenizers: Qwen3 d=64 with SmolLM2's tokenizer, and
    Llama d=96 with its own 400-token BPE."""
    import transformers

    from builder.fetch import fetch

    src = fetch("tiny-qwen3", show_progress=False).path
    root = tmp_path_factory.mktemp("hetero")
    texts = [r["question"] + " " + r["refined_plan"] for r in builtin()[0]] + [x.system + x.user
                                                                               for x in sequential().roles]
    toks = {"qwen3-d64": transformers.AutoTokenizer.from_pretrained(src), "llama-d96": _own_tokenizer(texts)}
    out = {}
    for name, cls, model_cls, kw in [
        ("qwen3-d64", transformers.Qwen3Config, transformers.Qwen3ForCausalLM,
         dict(hidden_size=64, intermediate_size=128, head_dim=16)),
        ("llama-d96", transformers.LlamaConfig, transformers.LlamaForCausalLM,
         dict(hidden_size=96, intermediate_size=192)),
    ]:
        d, tok = root / name, toks[name]
        tok.save_pretrained(d)
        torch.manual_seed(1)
        cfg = cls(vocab_size=len(tok), num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=512, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  tie_word_embeddings=True, **kw)
        model_cls(cfg).save_pretrained(d)
        out[name] = str(d)
    return out


@pytest.fixture(scope="session")
def seq_agents():
    """planner / critic / solver sharing one tiny Qwen3 (d=64)."""
    p = sequential()
    return p, {a.name: a for a in make_agents(["tiny-qwen3"] * 3, p, resolve=model_source)}


@pytest.fixture(scope="session")
def hetero_agents(tiny_dirs):
    """planner Qwen3 d=64 -> critic Llama d=96 (other tokenizer) -> solver Qwen3 d=64 (and back to the planner)."""
    p = sequential()
    specs = [tiny_dirs["qwen3-d64"], tiny_dirs["llama-d96"], tiny_dirs["qwen3-d64"]]
    return p, {a.name: a for a in make_agents(specs, p, resolve=model_source)}


@pytest.fixture(scope="session")
def rows():
    return builtin()


# 1. modules --------------------------------------------------------------------------------------------------------

def test_links_land_at_target_embedding_scale():
    torch.manual_seed(0)
    x = torch.randn(32, 64) * 5
    inner, outer = InnerLink(64, target_norm=0.7), OuterLink(64, 96, target_norm=1.3)
    assert inner(x).norm(dim=1).mean().item() == pytest.approx(0.7, rel=0.02)
    assert outer(x).norm(dim=1).mean().item() == pytest.approx(1.3, rel=0.02)
    assert outer.width == 192  # bottleneck 2 * d_tgt
    for link in (inner, outer):
        want = expected_shapes(link.kind, link.d_src, link.d_tgt, link.width)
        assert {k: tuple(v.shape) for k, v in link.state_dict().items()} == want
    same = OuterLink(64, 64)  # identity residual: an untrained same-size link passes the direction through
    assert torch.nn.functional.cosine_similarity(same(x), same.ln_tgt(x), dim=1).min() > 0.99


# 2. agents, slots, rollout -------------------------------------------------------------------------------------------

def test_prompt_slots_splice_latent_blocks(seq_agents):
    p, agents = seq_agents
    critic = agents["critic"]
    assert [v for k, v in critic.pieces if k != "text"] == ["question", "plan"]
    assert critic.turn_end == "<|im_end|>"
    empty = critic.prompt_embeds({"question": "What is 2 + 3?"}, {})
    block = torch.randn(5, critic.d)
    full = critic.prompt_embeds({"question": "What is 2 + 3?"}, {"plan": block})
    assert full.shape[0] == empty.shape[0] + 5
    # the block sits exactly where "{plan}" was: after everything before the slot
    n_before = sum(v.shape[0] for k, v in critic.pieces[:3] if k == "text") + len(critic.encode("What is 2 + 3?"))
    assert torch.equal(full[n_before:n_before + 5], block)
    text = "".join(critic.tokenizer.decode(v) if k == "text" else f"<{v}>" for k, v in critic.pieces)
    assert "Plan: <plan>" in text and text.startswith("<|im_start|>system")


def test_latent_rollout_matches_a_full_forward(seq_agents):
    """Each KV-cache step must equal a cache-free forward over [prompt; inner(h_1); ...]."""
    _, agents = seq_agents
    a = agents["planner"]
    inner = InnerLink(a.d, target_norm=a.emb_stats()["mean"])
    prompt = a.prompt_embeds({"question": "Ana has 3 coins."}, {})
    with torch.no_grad():
        block = latent_rollout(a, prompt, inner, 4)
        seq = prompt
        h = a.body(inputs_embeds=seq[None]).last_hidden_state[0, -1]
        for i in range(4):
            seq = torch.cat([seq, inner(h)[None]])
            h = a.body(inputs_embeds=seq[None]).last_hidden_state[0, -1]
            assert torch.allclose(block[i], h, atol=1e-4), i
    assert block.shape == (4, a.d)


# 4. outer loop: gradients -------------------------------------------------------------------------------------------

def test_gradients_reach_every_outer_link_through_three_rounds(hetero_agents, rows):
    p, agents = hetero_agents
    links = LinkSet(agents, p, seed=0)
    loss = answer_loss(agents["solver"], run_latent(agents, links, p, rows[0][0]["question"], 3, 3),
                       agents["solver"].answer_ids(rows[0][0]["answer"]))
    loss.backward()
    assert set(links.outer) == {"planner->critic:plan", "critic->solver:refined_plan", "solver->planner:feedback"}
    for key, link in links.outer.items():
        for name, prm in link.named_parameters():
            g = prm.grad
            assert g is not None and torch.isfinite(g).all(), (key, name)
            assert g.abs().sum() > 0, (key, name)
        print(f"{key}: grad norm {torch.cat([q.grad.flatten() for q in link.parameters()]).norm():.3e}")


# 3. inner loop -----------------------------------------------------------------------------------------------------

def test_inner_training_raises_heldout_next_token_cosine(seq_agents, rows):
    _, agents = seq_agents
    train, held = rows
    a = agents["solver"]
    inner = InnerLink(a.d, target_norm=a.emb_stats()["mean"])
    pairs, held_pairs = inner_pairs(a, train[:60]), inner_pairs(a, held[:20])
    before = inner_cosine(inner, held_pairs)
    train_inner(inner, pairs, steps=150, lr=1e-3, seed=0)
    after = inner_cosine(inner, held_pairs)
    print(f"held-out next-token cosine: {before:.3f} -> {after:.3f}")
    assert after > before + 0.1


@pytest.mark.parametrize("stage", ["teacher", "rollout"])
def test_outer_training_lowers_heldout_answer_ce(seq_agents, rows, stage):
    """Either stage alone lowers the held-out answer CE measured through the inference computation (rollouts)."""
    p, agents = seq_agents
    train, held = rows
    links = LinkSet(agents, p, seed=0)
    untrained = copy.deepcopy(links)
    steps = dict(teacher_steps=16, rollout_steps=0) if stage == "teacher" else dict(teacher_steps=0, rollout_steps=16)
    OuterTrainer(agents, links, p, train, rounds=2, m=3, lr=2e-3, batch=4, seed=0, **steps).run()
    before = mean_answer_ce(agents, untrained, p, held[:8], 2, 3)
    after = mean_answer_ce(agents, links, p, held[:8], 2, 3)
    print(f"{stage}: held-out answer CE: untrained links {before:.4f} -> trained links {after:.4f}")
    assert math.isfinite(after) and after < before - 0.05


def test_teacher_forced_blocks_are_the_senders_hidden_states(seq_agents, rows):
    """The critic's block in a teacher-forced step is its last-layer hidden states over its ground-truth turn, read
    after a prompt holding outer(planner's block): checked against a forward of that one row by hand."""
    from train_links import teacher

    p, agents = seq_agents
    links = LinkSet(agents, p, seed=0)
    batch = rows[0][:3]  # rows of different lengths share one right-padded forward
    seen = {}
    real = teacher._pad

    def spy(seqs):
        seen.setdefault(len(seen), seqs)
        return real(seqs)

    teacher._pad = spy
    try:
        with torch.no_grad():
            losses = teacher.teacher_forced_losses(agents, links, p, batch, rounds=1)
    finally:
        teacher._pad = real
    assert losses.shape == (3,) and torch.isfinite(losses).all()
    planner, critic, solver = agents["planner"], agents["critic"], agents["solver"]
    row = batch[1]
    with torch.no_grad():
        turn = planner.answer_ids(row["plan"])
        x = torch.cat([planner.prompt_embeds({"question": row["question"]}, {}), planner.embed(turn)])
        h = planner.body(inputs_embeds=x[None]).last_hidden_state[0, -len(turn):]
        want = critic.prompt_embeds({"question": row["question"]}, {"plan": links.outer["planner->critic:plan"](h)})
        assert torch.allclose(seen[1][1][:len(want)], want, atol=1e-5)
        ans = solver.answer_ids(row["answer"])
        turn2 = critic.answer_ids(row["refined_plan"])
        h2 = critic.body(inputs_embeds=torch.cat([want, critic.embed(turn2)])[None]).last_hidden_state[0, -len(turn2):]
        prompt = solver.prompt_embeds({"question": row["question"]},
                                      {"refined_plan": links.outer["critic->solver:refined_plan"](h2)})
        assert float(losses[1]) == pytest.approx(float(answer_loss(solver, prompt, ans)), rel=1e-4)


def test_batched_rollout_equals_the_row_by_row_reference(seq_agents, rows):
    """train_links.batched (left-padded rows) computes what system.run_latent computes for each row alone."""
    from train_links.batched import generate_batch, run_latent_batch
    from train_links.rollout import generate

    p, agents = seq_agents
    links = LinkSet(agents, p, seed=0)
    qs = [r["question"] for r in rows[1][:3]]
    with torch.no_grad():
        got = run_latent_batch(agents, links, p, qs, 2, 3)
        texts = generate_batch(agents["solver"], got, 6)
        for q, g, t in zip(qs, got, texts, strict=True):
            want = run_latent(agents, links, p, q, 2, 3)
            assert torch.allclose(g, want, atol=1e-4)
            assert t == generate(agents["solver"], want, 6)


def test_ridge_start_carries_the_text_across(seq_agents, rows):
    """The closed-form outer start maps a sender's hidden states to the receiver's embedding of the next token:
    on held-out pairs its output is closer to those embeddings than the default start's."""
    from train_links.init import init_outer

    p, agents = seq_agents
    planner, critic = agents["planner"], agents["critic"]
    fit, held = inner_pairs(planner, rows[0][:40]), inner_pairs(planner, rows[1][:10])
    default = LinkSet(agents, p, seed=0).outer["planner->critic:plan"]
    ridge = copy.deepcopy(default)
    init_outer(ridge, planner, critic, fit, rows[0][:40])
    target = critic.embed(held.ids)
    with torch.no_grad():
        cos = [float(torch.nn.functional.cosine_similarity(m(held.h), target, dim=-1).mean()) for m in (default, ridge)]
    print(f"held-out cosine to the next token's embedding: default start {cos[0]:.3f}, ridge start {cos[1]:.3f}")
    assert cos[1] > cos[0] + 0.1


def test_checkpoint_resume_matches_an_uninterrupted_run(seq_agents, rows, tmp_path):
    """Stopped inside the teacher-forced stage and resumed: the same links, through the rollout stage too."""
    p, agents = seq_agents
    kw = dict(teacher_steps=3, rollout_steps=2, rounds=2, m=2, lr=1e-3, batch=2, seed=3)
    a = LinkSet(agents, p, seed=0)
    OuterTrainer(agents, a, p, rows[0], **kw).run()
    b = LinkSet(agents, p, seed=0)
    OuterTrainer(agents, b, p, rows[0], ckpt=tmp_path / "c.pt", ckpt_every=1, **kw).run(until=2)
    c = LinkSet(agents, p, seed=0)  # a fresh process would start from a fresh init, then load the checkpoint
    t = OuterTrainer(agents, c, p, rows[0], ckpt=tmp_path / "c.pt", **kw)
    assert t.resume() and t.step == 2
    t.run()
    for (k, va), vc in zip(a.state_dict().items(), c.state_dict().values(), strict=True):
        assert torch.equal(va, vc), k


# 5 + 7. heterogeneous agents, recursivelink.json ----------------------------------------------------------------------

def test_heterogeneous_dims_train_and_round_trip(hetero_agents, rows, tmp_path):
    p, agents = hetero_agents
    assert (agents["planner"].d, agents["critic"].d) == (64, 96)
    assert len(agents["critic"].tokenizer) < 1000 < len(agents["planner"].tokenizer)  # different tokenizers
    links = LinkSet(agents, p, seed=0)
    for name, a in agents.items():
        train_inner(links.inner[name], inner_pairs(a, rows[0][:10]), steps=20)
    losses = OuterTrainer(agents, links, p, rows[0], teacher_steps=2, rollout_steps=1, rounds=2, m=2, batch=2).run()
    assert all(math.isfinite(x) for x in losses)
    path = fmt.save(tmp_path / "rl.json", agents, p, links, m=2, rounds=2, training={"steps": 3})
    lf = fmt.load(path, agent_dims={n: a.d for n, a in agents.items()})
    assert lf.meta["agents"][1]["hidden_size"] == 96 and lf.meta["training"] == {"steps": 3}
    fresh = LinkSet(agents, lf.pattern, seed=7)
    lf.load_into(fresh)
    q = rows[1][0]["question"]
    with torch.no_grad():
        assert torch.equal(run_latent(agents, links, p, q, 2, 2), run_latent(agents, fresh, lf.pattern, q, 2, 2))
    from train_links.evaluate import evaluate  # all four settings, text MAS re-tokenizing across tokenizers

    res = evaluate(agents, p, rows[1][:2], 2, 2, LinkSet(agents, p, seed=0), links, max_new=3, text_tokens=3)
    assert len(res) == 4 and all(math.isfinite(r["answer_ce"]) for k, r in res.items() if k.startswith("latent"))


# patterns as data ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mixture", "distillation", "deliberation"])
def test_other_patterns_run_and_train_every_outer_link(seq_agents, rows, name):
    from train_links.patterns import get_pattern

    p = get_pattern(name, 3)
    model = seq_agents[1]["planner"]
    from train_links.agents import Agent

    agents = {r.name: Agent(r, model.model, model.tokenizer, "tiny-qwen3") for r in p.roles}
    links = LinkSet(agents, p, seed=0)
    final = agents[p.final]
    answer_loss(final, run_latent(agents, links, p, rows[0][0]["question"], 2, 2),
                final.answer_ids(rows[0][0]["answer"])).backward()
    assert len(links.outer) == len(p.edges) and len(links.inner) == len(p.agents)
    for key, link in links.outer.items():
        assert link.w_res.weight.grad is not None and link.w_res.weight.grad.abs().sum() > 0, key


def test_pattern_validation_errors():
    from train_links.patterns import Edge, Pattern, get_pattern

    seq = sequential()
    assert seq.to_json()["edges"][2] == {"src": "solver", "dst": "planner", "slot": "feedback", "next_round": True}
    with pytest.raises(MlcbuildError, match="unknown pattern 'tree'"):
        get_pattern("tree")
    with pytest.raises(MlcbuildError, match="has no slot 'plan'"):
        Pattern("x", seq.roles, seq.stages, (Edge("planner", "solver", "plan"),), "solver").validate()
    with pytest.raises(MlcbuildError, match="must be alone in the last stage"):
        Pattern("x", seq.roles, seq.stages, (), "critic").validate()
    with pytest.raises(MlcbuildError, match="needs 3 agents"):
        make_agents(["tiny-qwen3"] * 2, seq, resolve=model_source)


# 4. bf16 ---------------------------------------------------------------------------------------------------------

def test_bf16_agents_train(rows):
    p = sequential()
    agents = {a.name: a for a in make_agents(["tiny-qwen3"] * 3, p, dtype=torch.bfloat16, resolve=model_source)}
    assert agents["solver"].dtype == torch.bfloat16
    links = LinkSet(agents, p, seed=0)
    train_inner(links.inner["planner"], inner_pairs(agents["planner"], rows[0][:4]), steps=3)
    losses = OuterTrainer(agents, links, p, rows[0], teacher_steps=1, rollout_steps=1, rounds=2, m=2, batch=2).run()
    assert all(math.isfinite(x) for x in losses)
    assert all(prm.dtype == torch.float32 for prm in links.parameters())


def test_contrast_hinge_uses_same_family_partners_and_adds_to_the_loss(seq_agents, rows):
    """--contrast: each row's partner is another training row of its own kind, drawn from (seed, step) only; the
    step's objective is the answer CE plus W * hinge(margin - (CE with the partner's hand-offs - own CE))."""
    from train_links import teacher

    p, agents = seq_agents
    train = rows[0][:40]
    links = LinkSet(agents, p, seed=0)
    t = OuterTrainer(agents, links, p, train, teacher_steps=2, rounds=1, m=2, batch=6, seed=5, contrast=2.0,
                     margin=0.5)
    idx = list(range(6))
    partners = t.partners(idx)
    assert partners == OuterTrainer(agents, links, p, train, teacher_steps=2, rounds=1, m=2, batch=6, seed=5,
                                    contrast=2.0).partners(idx)
    for i, j in zip(idx, partners, strict=True):
        if j is not None:
            assert j != i and train[j]["kind"] == train[i]["kind"]
    assert any(j is not None for j in partners)
    batch = [train[i] for i in idx]
    partner_rows = [None if j is None else train[j] for j in partners]
    with torch.no_grad():
        got = t.loss_sum(batch, partner_rows)
        own = teacher.teacher_forced_losses(agents, links, p, batch, 1)
        at = [k for k, j in enumerate(partner_rows) if j is not None]
        other = teacher.teacher_forced_losses(agents, links, p, [batch[k] for k in at], 1,
                                              sender_rows=[partner_rows[k] for k in at])
    want = own.sum() + 2.0 * torch.relu(0.5 - (other - own[at])).sum()
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(other, own[at])  # the partner's hand-offs change the answer's likelihood
    losses = t.run()
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


def test_keep_single_adds_the_one_agent_kl_with_partner_hand_offs(seq_agents, rows):
    """--keep-single: the step's objective is the answer CE plus W * KL(the solver alone || the solver given a
    same-family partner's hand-offs), each row's KL summed over its answer positions and divided by their
    count; the term is positive and its gradient reaches the outer links."""
    from train_links import teacher

    p, agents = seq_agents
    train = rows[0][:40]
    links = LinkSet(agents, p, seed=0)
    t = OuterTrainer(agents, links, p, train, teacher_steps=2, rounds=1, m=2, batch=6, seed=5, keep_single=0.5)
    idx = list(range(6))
    partner_rows = [None if j is None else train[j] for j in t.partners(idx)]
    batch = [train[i] for i in idx]
    at = [k for k, j in enumerate(partner_rows) if j is not None]
    assert at
    got = t.loss_sum(batch, partner_rows)
    with torch.no_grad():
        own = teacher.teacher_forced_losses(agents, links, p, batch, 1)
        solver = agents[p.final]
        kl = 0.0
        for k in at:
            ids = solver.answer_ids(batch[k].get("target") or batch[k]["answer"])
            alone = solver.prompt_embeds({"question": batch[k]["question"]}, {})
            seq = torch.cat([alone, solver.embed(ids)])[None]
            lg_one = solver.model(inputs_embeds=seq).logits[0, len(alone) - 1:len(alone) - 1 + len(ids)].double()
            lg_other = teacher.teacher_forced_losses(agents, links, p, [batch[k]], 1, sender_rows=[partner_rows[k]],
                                                     logits=True)[0].double()
            p_one = lg_one.softmax(-1)
            kl += float((p_one * (lg_one.log_softmax(-1) - lg_other.log_softmax(-1))).sum(-1).mean())
    assert kl > 0
    assert abs(got.item() - (own.sum().item() + 0.5 * kl)) < 1e-3 * max(1.0, kl)
    got.backward()
    assert any(prm.grad is not None and prm.grad.abs().sum() > 0 for prm in links.outer.parameters())
    losses = t.run()
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
