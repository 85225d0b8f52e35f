"""A small byte-level BPE tokenizer trained here, for tiny test models that must NOT share SmolLM2's tokenizer:
heterogeneous-agent tests need agents whose vocabularies, special tokens and chat templates all differ.

Training is deterministic (a fixed corpus, tokenizers' BPE trainer), so two machines make the same file.
"""

import json
from pathlib import Path

SPECIALS = ["<pad>", "<s>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
# a chat template unlike SmolLM2's ChatML: other markers, no default system prompt
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

_WORDS = ("the a an of to and in is are has have how many much what which who when where more less than each "
          "boxes apples pencils shelf plan critic solver answer question step first then next total remain left "
          "take away add give buy sell price cost hour minute day week year meter kilometer gram kilogram table "
          "row column number pattern count compare larger smaller equal outline check correct refined final")


def _corpus():
    words = _WORDS.split()
    for i, w in enumerate(words):
        yield f"{w.capitalize()} {words[(i * 7) % len(words)]} {i} + {i * 3} = {i * 4}. {w}, {w}s; ({i % 10})?"
    for n in range(200):
        yield f"{n} {n * n} {n + 17} -{n}% {n / 4:.2f}"


def write_bpe_tokenizer(out: Path, vocab_size: int = 512) -> None:
    """tokenizer.json + tokenizer_config.json (with the chat template) for a `vocab_size` byte-level BPE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "<|end|>",
              "pad_token": "<pad>", "chat_template": CHAT_TEMPLATE, "model_max_length": 1024}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
