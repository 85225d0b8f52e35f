"""f16 safety: a q?f16 library can overflow to inf/NaN hidden states (a prior project shipped a q4f16_1
TinyLlama that did). After such a build we run the CPU library on a few prompts and refuse the build
if any hidden state is not finite or exceeds what float16 can hold."""

from pathlib import Path

import numpy as np

from mlcbuild_common.errors import MlcbuildError

# A few short prompts of different kinds (chat-formatted when the model has a template). The first
# positions, where massive activations live, are what overflow. About 5 s for a q4f16_1 Qwen3-0.6B.
PROMPTS = ["What is the capital of France? Answer in one word.",
           "Write a Python function that returns the n-th Fibonacci number.",
           "Summarize in two sentences why the sky is blue."]
F16_MAX = 65504.0


def check_f16_hidden(out_dir: Path, cfg, quant: str, name: str) -> dict:
    from .run.engine import Engine

    if not any(p.name.endswith("-cpu.so") for p in Path(out_dir).iterdir()):
        raise MlcbuildError(f"the f16 safety check of {quant} needs the CPU library", "build with --target all")
    eng = Engine(out_dir, max_seq_len=256, verify=False)
    worst = 0.0
    for prompt in PROMPTS:
        eng.reset()
        tok = eng.tokenizer()
        ids = (eng.chat_ids([{"role": "user", "content": prompt}]) if tok.chat_template
               else tok(prompt)["input_ids"])
        h = eng.hidden(eng.embed(ids))
        if not np.isfinite(h).all():
            worst = float("inf")
            break
        worst = max(worst, float(np.abs(h).max()))
    if not np.isfinite(worst) or worst >= F16_MAX:
        f32 = quant.replace("f16", "f32")
        raise MlcbuildError(f"{name} {quant}: hidden states overflow float16 (max |h| = {worst:g})",
                            f"build the f32 variant instead: --quant {f32}")
    return {"max_abs_hidden": worst}
