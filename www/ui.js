// Rendering helpers shared by the demo pages. Everything a bundle or a report supplies (class
// names, flags, words) is set as text, never as markup, and widths and colours go through the
// CSS object model: the pages' Content-Security-Policy allows no inline styles or scripts.

export const $ = (id) => document.getElementById(id);

/** Makes an element with a class and text content. */
export function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * Horizontal bars, one per value: name, a bar of `width(value)` pixels, the value in percent.
 * The largest value is highlighted when `highlightTop` is set.
 */
export function bars(container, values, names, { width = (v) => 150 * v, highlightTop = true } = {}) {
  const top = values.indexOf(Math.max(...values));
  container.replaceChildren(...values.map((v, i) => {
    const row = el("div", highlightTop && i === top ? "bar top" : "bar");
    const name = el("span", "name", names[i]);
    name.title = names[i];
    const fill = el("span", "fill");
    fill.style.width = `${width(v).toFixed(1)}px`;
    row.append(name, fill, el("span", "", `${(100 * v).toFixed(1)}%`));
    return row;
  }));
}

/** Replaces a list's items by one `<li>` per text. */
export function listItems(container, texts, className) {
  container.replaceChildren(...texts.map((t) => el("li", className, t)));
}

/** Replaces a select's options: `[value, label]` pairs. */
export function options(select, pairs) {
  select.replaceChildren(...pairs.map(([value, label]) => {
    const o = el("option", "", label);
    o.value = value;
    return o;
  }));
}

/** Escapes text for the few places that build markup from it. */
export const escape = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
