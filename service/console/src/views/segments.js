// A tier's members, a page at a time (keyset: the API's cursors), optionally narrowed by a
// condition in the rule language.

import SEGMENT_MEMBERS from "../../../../graphql/operations/segment_members.graphql";
import { exportCsv, gql } from "../api.js";
import { add, count, decimal, field, h, replace, status, table } from "../dom.js";

const PAGE = 50;

export async function segments(main, ctx, [schemeKey, tierName], query) {
  const scheme = ctx.scheme(schemeKey) ?? ctx.schemes[0];
  if (!scheme) {
    add(main, h("h1", {}, "Segments"), h("p", {}, "No scheme is published yet."));
    return;
  }
  const tier = scheme.tiers.includes(tierName) ? tierName : scheme.tiers[0];
  const go = (s, t, where) => {
    const q = where ? `?where=${encodeURIComponent(where)}` : "";
    location.hash = `#/segments/${encodeURIComponent(s)}/${encodeURIComponent(t)}${q}`;
  };
  const schemeSelect = h("select", { onchange: () => go(schemeSelect.value, ctx.scheme(schemeSelect.value).tiers[0], whereInput.value) }, ctx.schemes.map((s) => h("option", { value: s.key, selected: s.key === scheme.key }, s.key)));
  const tierSelect = h("select", { onchange: () => go(scheme.key, tierSelect.value, whereInput.value) }, scheme.tiers.map((t) => h("option", { value: t, selected: t === tier }, t)));
  const whereInput = h("input", { type: "text", value: query.get("where") ?? "", placeholder: "e.g. recency > 90 days and region = \"east\"", size: 48 });
  const form = h(
    "form",
    { class: "controls", onsubmit: (event) => (event.preventDefault(), go(scheme.key, tierSelect.value, whereInput.value.trim())) },
    field("Scheme", schemeSelect),
    field("Tier", tierSelect),
    field("Where", whereInput),
    h("button", { type: "submit" }, "Show"),
  );
  const columnsInput = h("input", { type: "text", value: query.get("metrics") ?? "monetary; recency", size: 40, spellcheck: "false" });
  const exportMessage = h("div", { "aria-live": "polite" });
  const exportButton = h("button", { type: "button", onclick: async () => {
    exportButton.disabled = true;
    replace(exportMessage, status("Exporting…"));
    try {
      const metrics = columnsInput.value.split(";").map((m) => m.trim()).filter(Boolean);
      const where = query.get("where") || null;
      const done = await exportCsv([["scheme", scheme.key], ["tier", tier], ["where", where], ...metrics.map((m) => ["metric", m])]);
      replace(exportMessage, status(`Exported ${count(done.customers)} customers to ${done.name}.`));
    } catch (error) {
      replace(exportMessage, status(`Export: ${error.message}`, "error"));
    } finally {
      exportButton.disabled = false;
    }
  } }, "Export CSV");
  const exporting = h("div", { class: "controls" }, field("Columns (metrics, separated by ;)", columnsInput), exportButton, exportMessage);
  const output = h("section", { "aria-label": "Members" });
  add(main, h("h1", {}, "Segments"), form, exporting, output);

  const cursors = [null]; // the `after` of each page shown so far
  async function page(index) {
    const where = query.get("where") || null;
    let connection;
    try {
      ({ customers: connection } = await gql(SEGMENT_MEMBERS, { scheme: scheme.key, tier, where, first: PAGE, after: cursors[index] }));
    } catch (error) {
      replace(output, status(`${where ? "Where: " : ""}${error.message}`, "error"));
      return;
    }
    cursors[index + 1] = connection.pageInfo.endCursor;
    const previous = h("button", { type: "button", disabled: index === 0, onclick: () => page(index - 1) }, "Previous page");
    const next = h("button", { type: "button", disabled: !connection.pageInfo.hasNextPage, onclick: () => page(index + 1) }, "Next page");
    const first = index * PAGE + 1;
    replace(
      output,
      h("p", { class: "summary", role: "status" }, connection.totalCount ? `${count(connection.totalCount)} customers; ${count(first)} to ${count(first + connection.edges.length - 1)} shown.` : "No customers."),
      table(
        `Members of ${scheme.key} ${tier}`,
        ["Customer", "Monetary", "Recency (days)", "Tiers"],
        connection.edges.map(({ node }) => [
          h("a", { href: `#/customers/${encodeURIComponent(node.id)}` }, node.id),
          { text: decimal(node.metrics.monetary), value: node.metrics.monetary },
          { text: node.metrics.recency ?? "–", value: node.metrics.recency ?? "" },
          node.tiers.map((t) => `${t.scheme}: ${t.tier}`).join(", "),
        ]),
        { numeric: [1, 2] },
      ),
      h("div", { class: "buttons" }, previous, next),
    );
  }
  await page(0);
}
