// What the page shows after a run, read back from the DOM (for tests), and a saved run file shown again without
// running anything (Load run, ?view=RUN.json).
import { $ } from "./dom.js";
import { answerMeta, readTable, showAnswer, showHandoffs, showTable } from "./results.js";
import { showExpected } from "./controls.js";

export function views(transcript) {
  return { table: readTable(), transcript: transcript.read(),
    answers: Object.fromEntries([...$("answers").querySelectorAll(".answer")].map((d) => [d.id.slice(7),
      d.textContent])) };
}

// The fields it was run with, its answers, table, hand-offs and transcript (doc: checked by share.checkRecord).
export function showSaved(doc, { transcript, status }) {
  const c = doc.config ?? {};
  for (const [id, k] of [["question", "q"], ["rounds", "r"], ["m", "m"], ["max-tokens", "max"],
    ["text-tokens", "text_tokens"]]) if (c[k] !== undefined) $(id).value = c[k];
  showExpected();
  $("answers").replaceChildren();
  transcript.clear();
  for (const mode of doc.modes) {
    const res = doc.results[mode];
    transcript.finish(mode, res, c.prompts, c.q);
    showAnswer(mode, res.answer, answerMeta(res.metrics));
  }
  showTable(doc.results);
  const lat = doc.results.latent;
  showHandoffs(lat?.handoffs ?? [], lat?.peek_note ?? "");
  status.progress(1, `showing a saved run (${doc.saved ?? "no date"}): nothing was run`);
  return { view: true, ...views(transcript) };
}
