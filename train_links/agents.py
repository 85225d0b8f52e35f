"""A frozen causal LM with a role: its chat-templated prompt is split at slot markers so latent blocks
(already in this agent's input-embedding space) can be spliced in between the embedded text pieces."""

from dataclasses import dataclass, field
from pathlib import Path

import torch

from mlcbuild_common.errors import MlcbuildError

from .links import embedding_norm_stats
from .patterns import MARKER, Role

TEXT_FIELDS = ("question",)  # filled with tokenized text; every other marker is a latent slot


@dataclass
class Agent:
    role: Role
    model: torch.nn.Module
    tokenizer: object
    model_id: str = ""
    weights_sha256: str = ""  # the model source's content hash (a build manifest's source.sha256)
    pieces: list = field(default_factory=list)  # [("text", ids) | ("field", name) | ("slot", name)]
    turn_end: str = ""  # text that closes an assistant turn, e.g. "<|im_end|>"

    def __post_init__(self):
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.pieces = self._split_template()
        self._emb_stats = None

    @property
    def name(self) -> str:
        return self.role.name

    @property
    def d(self) -> int:
        return self.model.config.hidden_size

    @property
    def dtype(self):
        return self.model.get_input_embeddings().weight.dtype

    @property
    def body(self):
        """The decoder without the LM head: latent steps never need logits."""
        return self.model.base_model

    def emb_stats(self) -> dict:
        if self._emb_stats is None:
            self._emb_stats = embedding_norm_stats(self.model.get_input_embeddings().weight)
        return self._emb_stats

    def _split_template(self) -> list:
        pieces, self.turn_end = split_prompt(self.tokenizer, self.role, self.name)
        return pieces

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    def prompt_embeds(self, fields: dict[str, str], slots: dict[str, torch.Tensor | str | None]) -> torch.Tensor:
        """[L, d] prompt embeddings; a slot value is a latent block [n, d] (this agent's space), text, or None."""
        parts = []
        for kind, val in self.pieces:
            if kind == "text":
                parts.append(self.embed(val))
            elif kind == "field":
                parts.append(self.embed(self.encode(fields.get(val, ""))))
            else:
                v = slots.get(val)
                if isinstance(v, str):
                    parts.append(self.embed(self.encode(v)))
                elif v is not None:
                    parts.append(v.to(self.dtype))
        return torch.cat([p for p in parts if p.shape[0]], dim=0)

    def answer_ids(self, answer: str) -> torch.Tensor:
        """Target tokens of an answer turn: the answer text, then the end-of-turn marker."""
        return self.encode(answer + self.turn_end)


def render(tokenizer, messages, gen: bool) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
    # no chat template: a plain layout, so base models still work
    text = "".join(f"{m['role']}: {m['content']}\n\n" for m in messages)
    return text + ("assistant: " if gen else "")


def split_prompt(tokenizer, role: Role, name: str = "") -> tuple[list, str]:
    """The role's chat-templated prompt as pieces [("text", ids) | ("field", name) | ("slot", name)], plus the
    text that closes an assistant turn. Shared by training (PyTorch) and the compiled-library runners."""
    msgs = [{"role": "system", "content": role.system}, {"role": "user", "content": role.user}]
    text = render(tokenizer, msgs, gen=True)
    probe = "RESPONSE_PROBE"
    full = render(tokenizer, [*msgs, {"role": "assistant", "content": probe}], gen=False)
    tail = full[len(text):] if full.startswith(text) else full[full.find(probe):]
    turn_end = tail[tail.find(probe) + len(probe):].strip() or (tokenizer.eos_token or "")

    def encode(t):
        return torch.tensor(tokenizer(t, add_special_tokens=False)["input_ids"], dtype=torch.long)

    pieces, pos = [], 0
    for m in MARKER.finditer(text):
        marker = m.group(1)
        if marker not in TEXT_FIELDS and marker not in role.slots:
            continue  # a literal brace in the prompt, not a marker
        pieces.append(("text", encode(text[pos:m.start()])))
        pieces.append(("field" if marker in TEXT_FIELDS else "slot", marker))
        pos = m.end()
    pieces.append(("text", encode(text[pos:])))
    missing = set(role.slots) - {n for k, n in pieces if k == "slot"}
    if missing:
        raise MlcbuildError(f"agent {name or role.name}: the chat template dropped slot(s) {sorted(missing)}",
                            "use a model whose chat template keeps the system and user text")
    return pieces, turn_end


def local_source(spec: str) -> tuple[Path, str]:
    """An agent given as a local HF folder or .gguf file; its id is its resolved path. (mlcbuild passes its own
    resolver, which also knows preset names: train_links stays below the pipeline and never imports it.)"""
    p = Path(spec).expanduser()
    if not p.exists():
        raise MlcbuildError(f"agent {spec}: no such file or folder",
                            "pass a Hugging Face causal-LM folder or a .gguf file (mlcbuild train-links also "
                            "takes preset names)")
    return p.resolve(), str(p.resolve())


def load_model(spec: str, dtype: torch.dtype = torch.float32, resolve=local_source):
    """A model spec -> (model, tokenizer, model_id, weights_sha256); `resolve(spec)` gives (path, model_id)."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mlcbuild_common.fsutil import source_digest

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    p, model_id = resolve(spec)
    p = Path(p)
    kw = {"gguf_file": p.name} if p.suffix == ".gguf" else {}
    root = p.parent if p.suffix == ".gguf" else p
    try:
        tok = AutoTokenizer.from_pretrained(root, **kw)
        model = AutoModelForCausalLM.from_pretrained(root, dtype=dtype, **kw)
    except (OSError, ValueError, KeyError) as e:
        raise MlcbuildError(f"{spec}: transformers cannot load it ({str(e).splitlines()[0][:160]})",
                            "pass a Hugging Face causal-LM folder, a .gguf file, or a preset") from None
    return model, tok, model_id, source_digest(p)


def make_agents(specs: list[str], pattern, dtype=torch.float32, cache: dict | None = None,
                resolve=local_source) -> list[Agent]:
    """One agent per pattern role, in the pattern's agent order; `cache` shares loaded models between roles;
    `resolve` turns a spec into (path, model_id) (see load_model)."""
    if len(specs) != len(pattern.agents):
        raise MlcbuildError(f"pattern {pattern.name} needs {len(pattern.agents)} agents "
                            f"({', '.join(pattern.agents)}), got {len(specs)}", "pass one model per agent to --agents")
    cache = {} if cache is None else cache
    agents = []
    for spec, role in zip(specs, pattern.roles, strict=True):
        if spec not in cache:
            cache[spec] = load_model(spec, dtype, resolve)
        model, tok, mid, digest = cache[spec]
        agents.append(Agent(role, model, tok, mid, digest))
    return agents
