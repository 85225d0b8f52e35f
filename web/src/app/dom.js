// The two DOM helpers every playground module uses.
export const $ = (id) => document.getElementById(id);

export function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  Object.assign(e, attrs);
  return e;
}
