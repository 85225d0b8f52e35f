#!/usr/bin/env python3
"""A latent step (inner link + decode_last_hidden) against a decode step (argmax + embed + decode with logits) for
any model's CPU library, timed back to back from the same prefilled chat prompt (bench/step_ratio.py's timing).
Models with a large vocabulary pay for their LM head only in the decode step: Gemma 3's 262k rows, for one.

  python3 bench/latent_step.py --model gemma3-270m              # q4f32_1, its default
  python3 bench/latent_step.py --model smollm2-135m --steps 16
"""

import json

from common import add_json_file, append_line, bench_cache, loadavg, machine, now_iso, parser, print_table
from step_ratio import step_times

QUESTION = "A shelf holds 31 pencils. Then 2 pencils are taken away. How many pencils remain on the shelf?"


def main():
    ap = parser(__doc__)
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--quant", default=None, help="default: the preset's")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    add_json_file(ap)
    a = ap.parse_args()

    from builder.make import make
    from builder.run.engine import Engine
    from train_links.links import InnerLink

    root = bench_cache() / "latent_step"
    build = make(a.model, a.quant, root, targets=("cpu",), show_progress=True).out
    eng = Engine(build, max_seq_len=512)
    tok = eng.tokenizer()  # a base model (gemma3-270m) has no chat template: the plain question then
    ids = eng.chat_ids([{"role": "user", "content": QUESTION}]) if tok.chat_template else tok(QUESTION)["input_ids"]
    emb = eng.embed(ids)
    load = loadavg()
    res = step_times(eng, InnerLink(eng.hidden_size).eval(), emb, a.steps, a.reps)  # a step's cost: not weights'
    res.update(model=build.name, vocab=eng.vocab_size, hidden=eng.hidden_size, when=now_iso(),
               machine=machine(), load_before=load, load_after=loadavg())
    med = res["median_ms"]
    print_table([[build.name, res["vocab"], f"{med['latent']:.1f}", f"{med['decode']:.1f}", f"{res['ratio']:.3f}",
                  f"{med['decode_last_hidden']:.1f}", f"{med['decode_kernel']:.1f}"]],
                ["build", "vocab", "latent ms", "decode ms", "latent/decode", "decode_last_hidden ms",
                 "decode kernel ms"], "lrrrrrr")
    line = json.dumps(res)
    print(line)
    append_line(a.json_file, line)


if __name__ == "__main__":
    main()
