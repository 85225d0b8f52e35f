// Interpretability peek: the tokens whose input embeddings are nearest (cosine) to a latent row.
// Embedding the whole vocabulary can be costly (V x d on the GPU, then to the host), so at most MAX_IDS token ids
// (evenly spaced over the vocabulary) are embedded once per model and reused.
export const MAX_IDS = 4096;
const CHUNK = 512;
const tables = new WeakMap(); // model -> Promise<{ids, emb: Float32Array, norms, sampled}>

export function vocabTable(model) {
  if (!tables.has(model)) {
    tables.set(model, (async () => {
      const V = model.vocabSize;
      const n = Math.min(V, MAX_IDS);
      const ids = Array.from({ length: n }, (_, i) => Math.floor((i * V) / n));
      const parts = [];
      for (let i = 0; i < n; i += CHUNK) parts.push(await model.embed(ids.slice(i, i + CHUNK)));
      const d = model.hiddenSize;
      const emb = new Float32Array(n * d);
      let o = 0;
      for (const p of parts) { emb.set(p, o); o += p.length; }
      const norms = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += emb[i * d + j] ** 2;
        norms[i] = Math.sqrt(s) || 1;
      }
      return { ids, emb, norms, sampled: n < V, vocab: V };
    })());
  }
  return tables.get(model);
}

// k nearest token ids (by cosine) to `row` among the model's table: [{id, cos}]
export async function nearest(model, row, k = 3) {
  const t = await vocabTable(model);
  const d = model.hiddenSize;
  let rn = 0;
  for (let j = 0; j < d; j++) rn += row[j] ** 2;
  rn = Math.sqrt(rn) || 1;
  const best = [];
  for (let i = 0; i < t.ids.length; i++) {
    let s = 0;
    const off = i * d;
    for (let j = 0; j < d; j++) s += row[j] * t.emb[off + j];
    const cos = s / (rn * t.norms[i]);
    if (best.length < k || cos > best[best.length - 1].cos) {
      best.push({ id: t.ids[i], cos });
      best.sort((a, b) => b.cos - a.cos);
      if (best.length > k) best.pop();
    }
  }
  return { best, sampled: t.sampled, size: t.ids.length, vocab: t.vocab };
}

export function meanRowNorm(block) {
  let sum = 0;
  for (let r = 0; r < block.rows; r++) {
    let s = 0;
    for (let j = 0; j < block.dim; j++) s += block.data[r * block.dim + j] ** 2;
    sum += Math.sqrt(s);
  }
  return block.rows ? sum / block.rows : 0;
}
