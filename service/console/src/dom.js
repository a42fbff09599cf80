// Small DOM and formatting helpers: no framework, every control labelled.

/** An element: h("button", { onclick }, "Check"). Attributes starting with "on" are events. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

/** Append children to an element, skipping null, undefined and false. */
export function add(element, ...children) {
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** A labelled form field: the label names the control for screen readers and tests. */
export function field(label, control) {
  const id = control.id || `f-${label.toLowerCase().replace(/\W+/g, "-")}-${++fieldCount}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}
let fieldCount = 0;

export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A table with a caption; cells are values or { text, value, class } (value: data-value). */
export function table(caption, headers, rows, { numeric = [] } = {}) {
  return h(
    "table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((name, i) => h("th", { scope: "col", class: numeric.includes(i) ? "num" : undefined }, name)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          {},
          row.map((cell, i) => {
            const cls = numeric.includes(i) ? "num" : undefined;
            if (cell instanceof Node) return h(i === 0 ? "th" : "td", { scope: i === 0 ? "row" : undefined, class: cls }, cell);
            if (cell && typeof cell === "object")
              return h(i === 0 ? "th" : "td", { scope: i === 0 ? "row" : undefined, class: cell.class ?? cls, dataset: cell.value === undefined ? undefined : { value: cell.value } }, cell.text);
            return h(i === 0 ? "th" : "td", { scope: i === 0 ? "row" : undefined, class: cls }, cell ?? "–");
          }),
        ),
      ),
    ),
  );
}

const integer = new Intl.NumberFormat("en-US");

export function count(n) {
  return integer.format(n);
}

/**
 * A share 0-1 (a Decimal string, as the API sends it) as a percentage with one decimal,
 * exactly as `tierwise segments` prints it (Python's `{:.1%}` of a Decimal: the point moved
 * two places, rounded half to even); a number is taken at its exact value.
 */
export function percent(share) {
  const [, sign, whole, fraction = ""] = String(share).match(/^(-?)(\d+)(?:\.(\d+))?$/) ?? [];
  if (whole === undefined) return `${decimal((Number(share) * 100).toFixed(20), 1)}%`;
  const digits = whole + fraction.padEnd(2, "0");
  const integer = digits.slice(0, whole.length + 2).replace(/^0+(?=\d)/, "");
  return `${decimal(`${sign}${integer}.${digits.slice(whole.length + 2) || "0"}`, 1)}%`;
}

/**
 * A decimal string (exact, as the API sends it) with thousands separators and `places`
 * decimals, rounded half to even like Python's Decimal formatting: no binary float between
 * the data and the page.
 */
export function decimal(text, places = 2) {
  if (text === null || text === undefined) return "–";
  let [, sign, whole, fraction = ""] = String(text).match(/^(-?)(\d+)(?:\.(\d+))?$/) ?? [];
  if (whole === undefined) return String(text);
  const kept = (fraction + "0".repeat(places)).slice(0, places);
  const rest = fraction.slice(places);
  let digits = whole + kept;
  const last = Number(digits[digits.length - 1] ?? 0);
  const first = rest[0] ?? "0";
  const beyond = /[1-9]/.test(rest.slice(1));
  if (first > "5" || (first === "5" && (beyond || last % 2 === 1))) {
    digits = (BigInt(digits) + 1n).toString().padStart(digits.length, "0");
  }
  const intPart = digits.slice(0, digits.length - places) || "0";
  const frac = digits.slice(digits.length - places);
  const grouped = intPart.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const zero = /^[0,]*$/.test(grouped) && /^0*$/.test(frac);
  return `${sign && !zero ? "-" : ""}${grouped}${places ? "." + frac : ""}`;
}

export function when(iso) {
  if (!iso) return "–";
  return iso.replace("T", " ").replace(/(\.\d+)?(\+00:00|Z)$/, " UTC");
}

/** A status line that screen readers announce. */
export function status(text, kind = "info") {
  return h("p", { role: kind === "error" ? "alert" : "status", class: `message ${kind}` }, text);
}
