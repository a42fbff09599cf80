// The customer card: profile, tiers and since when, recommended strategies, the newest tier
// changes as a timeline, and why the customer is in each tier: every tier's condition with
// the customer's values against the rule's thresholds.

import CUSTOMER_CARD from "../../../../graphql/operations/customer_card.graphql";
import EXPLAIN from "../../../../graphql/operations/explain.graphql";
import { gql } from "../api.js";
import { add, decimal, field, h, replace, status, table, when } from "../dom.js";

export async function customer(main, ctx, [id], query) {
  const idInput = h("input", { type: "text", value: id ?? "", placeholder: "e.g. C000042" });
  add(main, 
    h("h1", {}, "Customer"),
    h(
      "form",
      { class: "controls", onsubmit: (event) => (event.preventDefault(), (location.hash = `#/customers/${encodeURIComponent(idInput.value.trim())}`)) },
      field("Customer id", idInput),
      h("button", { type: "submit" }, "Open"),
    ),
  );
  if (!id || !ctx.schemes.length) return;
  const schemeKey = ctx.scheme(query.get("scheme"))?.key ?? ctx.schemes[0].key;
  const { customer: card } = await gql(CUSTOMER_CARD, { id, scheme: schemeKey });
  if (!card) {
    add(main, status(`No customer ${id}.`, "error"));
    return;
  }
  const m = card.metrics;
  const profile = [
    ["Name", card.name],
    ["Email", card.email],
    ["Age", card.age],
    ["Gender", card.gender],
    ["Region", card.region],
    ["Registered", when(card.registeredAt)],
    ["Monetary", decimal(m.monetary)],
    ["Frequency", m.frequency],
    ["Recency (days)", m.recency],
    ["Average order value", decimal(m.averageOrderValue)],
    ["Refunded", m.returns ? `${decimal(m.refunds)} in ${m.returns} refund${m.returns === 1 ? "" : "s"}` : null],
    ["Tenure (days)", m.tenure],
    ["Last purchase", when(m.lastPurchase)],
    // Predictions (BG/NBD, Gamma-Gamma): present once the tenant's model is fitted.
    ["P(alive)", m.pAlive],
    ["Expected orders (365 days)", m.expectedOrders],
    ["Expected order value", m.expectedOrderValue == null ? null : decimal(m.expectedOrderValue)],
    ["CLV (365 days)", m.clv == null ? null : decimal(m.clv)],
  ].filter(([, value]) => value !== null && value !== undefined);
  const explanation = h("section", { class: "explanation", "aria-label": "Explanation" });
  add(main, 
    h("h2", {}, card.id),
    h("div", { class: "card-grid" },
      h("section", { "aria-label": "Profile" }, h("h3", {}, "Profile"), h("dl", {}, profile.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
      h("section", { "aria-label": "Tiers" },
        h("h3", {}, "Tiers"),
        table("Current tiers", ["Scheme", "Tier", "Since"], card.tiers.map((t) => [t.scheme, t.tier, when(t.since)])),
        h("h3", {}, "Strategies"),
        card.strategies.length
          ? h("ol", { class: "strategies" }, card.strategies.map((s) => h("li", {}, h("strong", {}, s.name), ` via ${s.channel} (${s.scheme} ${s.tier}, priority ${s.priority})`)))
          : h("p", { class: "muted" }, "No strategies for this customer's tiers."),
      ),
    ),
    h("h3", {}, "Why these tiers"),
    h("nav", { class: "tabs", "aria-label": "Explain scheme" },
      ctx.schemes.map((s) => h("button", { type: "button", "aria-pressed": String(s.key === schemeKey), onclick: async (event) => {
        for (const b of event.target.parentNode.children) b.setAttribute("aria-pressed", String(b === event.target));
        const { explain } = await gql(EXPLAIN, { customer: card.id, scheme: s.key });
        showExplanation(explanation, explain);
      } }, s.key)),
    ),
    explanation,
    h("h3", {}, "Tier history"),
    card.history.length
      ? h("ol", { class: "timeline", "aria-label": "Tier history" }, [...card.history].reverse().map((t) =>
          h("li", {}, h("time", { datetime: t.at }, when(t.at)), " ", h("strong", {}, t.scheme), `: ${t.fromTier ?? "(none)"} → ${t.toTier ?? "(none)"} `, h("span", { class: "muted" }, `(version ${t.version}, ${t.trigger})`))))
      : h("p", { class: "muted" }, "No tier changes recorded."),
  );
  showExplanation(explanation, card.explain);
}

function value(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "object" && !Array.isArray(v) && "value" in v) return `${v.value}${v.unit ? " " + v.unit : ""}`;
  return typeof v === "string" ? v : JSON.stringify(v);
}

// The catalog's unit after a value: "120 days", "5 orders"; none for a time or a unitless one.
function unit(clause) {
  return clause.unit && clause.unit !== "date and time" ? h("span", { class: "unit" }, ` ${clause.unit}`) : null;
}

function clauseItem(clause) {
  const parts = [h("code", {}, clause.text), " ", h("span", { class: `result ${clause.result.toLowerCase()}` }, clause.result.toLowerCase())];
  if (clause.metric) {
    parts.push(h("span", { class: "values" }, ` ${clause.metric} is `, h("strong", { class: "actual" }, value(clause.actual)), unit(clause),
      clause.operator ? [` (rule: ${clause.operator} ${value(clause.expected)}`, clause.expected === null ? null : unit(clause), ")"] : ""));
  }
  return h("li", {}, parts, clause.children?.length ? h("ul", {}, clause.children.map(clauseItem)) : null);
}

export function showExplanation(element, explain, subject = "this customer") {
  replace(
    element,
    h("p", {}, `In ${explain.scheme}, the rules place ${subject} in `, h("strong", {}, explain.tier ?? "no tier"), "."),
    explain.definitions?.length
      ? h("ul", { class: "definitions", "aria-label": "Definitions" }, explain.definitions.map((d) =>
          h("li", {}, h("code", {}, `${d.name} = ${d.text}`), " is ",
            d.result ? h("span", { class: `result ${d.result.toLowerCase()}` }, d.result.toLowerCase()) : h("strong", { class: "actual" }, value(d.value)))))
      : null,
    h("ol", { class: "traces" }, explain.tiers.map((trace) =>
      h("li", { class: trace.matched ? "matched" : undefined, dataset: { tier: trace.name } },
        h("strong", {}, trace.name), " ", h("span", { class: `result ${trace.result.toLowerCase()}` }, trace.matched ? `${trace.result.toLowerCase()}: takes the customer` : trace.result.toLowerCase()),
        trace.kept ? h("p", { class: "kept" }, trace.kept) : null,
        trace.clause ? h("ul", {}, clauseItem(trace.clause)) : null),
    )),
  );
}
