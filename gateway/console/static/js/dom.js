// Building the page: elements are made with text nodes only (never innerHTML), so nothing a
// source, a key name or an error message holds can become markup or script.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

let uid = 0;
// A labelled input: label for=id, optional hint tied with aria-describedby.
export function field(label, attrs = {}, hint = "") {
  const id = attrs.id || `f${++uid}`;
  const hintId = hint ? `${id}-hint` : null;
  const { tag, options, ...rest } = attrs;
  const control = tag === "select"
    ? h("select", { ...rest, id, "aria-describedby": hintId }, options || [])
    : h("input", { type: "text", ...rest, id, "aria-describedby": hintId });
  return h("div", { class: "field" }, h("label", { for: id }, label), control,
    hint ? h("div", { class: "hint", id: hintId }, hint) : null);
}

export function alertBox(kind, text) {
  return h("div", { class: `alert ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

export function errorText(error) {
  return error && error.code ? `${error.code}: ${error.message}` : String(error && error.message || error);
}

export function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function badge(state) {
  return h("span", { class: `badge ${state}`, role: "status", "aria-label": `state ${state}` }, state);
}

export function table(headers, rows, emptyText) {
  if (!rows.length) return h("p", { class: "empty" }, emptyText);
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map(([text, cls]) => h("th", { scope: "col", class: cls }, text)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => (c instanceof Node && c.tagName === "TD") ? c : h("td", {}, c))))));
}

export function num(value) {
  return h("td", { class: "num" }, value);
}

// Reads a form's values, then empties every secret field so nothing lingers in the DOM.
export function takeSecrets(form, names) {
  const out = {};
  for (const name of names) {
    const input = form.elements[name];
    out[name] = input.value;
    input.value = "";
  }
  return out;
}
