// Small helpers for the "Ask" form: the example picker (held-out questions per task family, examples.js), the
// answer budget the links were trained with, and keyboard submit.
import { $, el } from "./dom.js";
import { EXAMPLES } from "./examples.js";

export const FALLBACK_BUDGET = 32;

// The picker: one group per family; picking one fills the question and shows the answer the data expects.
export function setupExamples(onPick = () => {}) {
  const pick = $("example");
  pick.replaceChildren(el("option", "Pick an example question…", { value: "" }));
  for (const [family, rows] of Object.entries(EXAMPLES)) {
    const g = el("optgroup", null, { label: family.replaceAll("_", " ") });
    rows.forEach((r, i) => g.append(el("option", r.question, { value: `${family}:${i}` })));
    pick.append(g);
  }
  pick.onchange = () => {
    const [family, i] = pick.value.split(":");
    const row = EXAMPLES[family]?.[Number(i)];
    if (!row) return;
    $("question").value = row.question;
    showExpected();
    onPick(row);
  };
  $("question").addEventListener("input", showExpected);
}

// "expected: 20" under the question when it is one of the examples.
export function showExpected() {
  const q = $("question").value.trim();
  const row = Object.values(EXAMPLES).flat().find((r) => r.question === q);
  $("expected").textContent = row ? `expected answer: ${row.answer}` : "";
  const fam = Object.entries(EXAMPLES).find(([, rows]) => rows.includes(row));
  $("example").value = fam ? `${fam[0]}:${fam[1].indexOf(row)}` : "";
}

// The answer budget the links were validated with: training.max_new_tokens (recorded since this version), else the
// --max-new-tokens of the recorded command, else FALLBACK_BUDGET.
export function trainedBudget(training = {}) {
  if (Number.isInteger(training?.max_new_tokens)) return training.max_new_tokens;
  const m = /--max-new-tokens[ =](\d+)/.exec(training?.command ?? "");
  return m ? Number(m[1]) : FALLBACK_BUDGET;
}

// Ctrl+Enter (Cmd+Enter on a Mac) anywhere on the page presses `buttonId`.
export function keyboardSubmit(buttonId) {
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !$(buttonId).disabled) {
      e.preventDefault();
      $(buttonId).click();
    }
  });
}
