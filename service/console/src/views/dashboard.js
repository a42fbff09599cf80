// Dashboard of one scheme: per tier its customers, share of customers next to share of
// revenue (chart and table), revenue and average revenue, and its strategies.

import MIGRATION_MATRIX from "../../../../graphql/operations/migration_matrix.graphql";
import SCHEME_DASHBOARD from "../../../../graphql/operations/scheme_dashboard.graphql";
import SEGMENT_LIST from "../../../../graphql/operations/segment_list.graphql";
import { gql } from "../api.js";
import { moveHeatmap, sharesChart, sizesChart } from "../charts.js";
import { add, count, decimal, field, h, percent, replace, status, table, when } from "../dom.js";

const SIZE_DAYS = 90;
const CHURN_DAYS = 90;

/** A UTC day `days` before today, as the API's Date (YYYY-MM-DD). */
function dayBefore(days) {
  return new Date(Date.now() - days * 86_400_000).toISOString().slice(0, 10);
}
import { schemeTabs } from "./common.js";

export async function dashboard(main, ctx, [schemeKey]) {
  const scheme = ctx.scheme(schemeKey) ?? ctx.schemes[0];
  if (!scheme) {
    add(main, h("h1", {}, "Dashboard"), h("p", {}, "No scheme is published yet: write one in ", h("a", { href: "#/rules" }, "Rules"), "."));
    return;
  }
  add(main, 
    h("h1", {}, "Dashboard"),
    schemeTabs(ctx, scheme.key, (key) => `#/dashboard/${encodeURIComponent(key)}`),
    h("h2", {}, `${scheme.title ?? scheme.key} `, h("span", { class: "muted" }, `(${scheme.key}, version ${scheme.version})`)),
  );
  const { segments } = await gql(SEGMENT_LIST, { scheme: scheme.key });
  const total = segments.reduce((sum, s) => sum + s.customerCount, 0);
  add(main, 
    h("p", { class: "summary" }, `${count(total)} customers in ${segments.length} tiers.`),
    h("figure", { class: "chart-box" }, h("div", { class: "chart", id: "shares-chart" }), h("figcaption", {}, "Share of customers next to share of revenue, per tier")),
    table(
      "Tiers of " + scheme.key,
      ["Tier", "Customers", "Share of customers", "Revenue", "Share of revenue", "Average revenue", "Strategies"],
      segments.map((s) => [
        h("a", { href: `#/segments/${encodeURIComponent(s.scheme)}/${encodeURIComponent(s.tier)}` }, s.tier),
        { text: count(s.customerCount), value: s.customerCount, class: "num" },
        { text: percent(s.customerShare), value: s.customerShare, class: "num" },
        { text: decimal(s.revenue), value: s.revenue, class: "num" },
        { text: percent(s.revenueShare), value: s.revenueShare, class: "num" },
        { text: decimal(s.averageRevenue), value: s.averageRevenue ?? "", class: "num" },
        s.strategies.map((st) => `${st.name} (${st.channel})`).join(", ") || "–",
      ]),
      { numeric: [1, 2, 3, 4, 5] },
    ),
  );
  sharesChart(main.querySelector("#shares-chart"), segments);
  await history(main, scheme);
}

/** The last run, tier sizes over time, the migration between two days, churn per tier. */
async function history(main, scheme) {
  const today = dayBefore(0);
  const { evaluationRuns: runs, tierSizes, churn } = await gql(SCHEME_DASHBOARD, { scheme: scheme.key, fromDate: dayBefore(SIZE_DAYS), toDate: today, churnSince: dayBefore(CHURN_DAYS) });
  const [run] = runs;
  add(
    main,
    h("h2", {}, "Last run"),
    run
      ? h("p", { class: "last-run", "aria-label": "Last run" }, `Version ${run.version}, ${run.trigger}, started ${when(run.startedAt)}: ${run.status}`, run.durationMs === null ? "" : ` in ${count(run.durationMs)} ms`, run.changed === null ? "." : `; ${count(run.changed)} customers changed tier, ${count(run.customerCount ?? 0)} placed.`)
      : h("p", {}, "Not evaluated yet."),
  );

  const days = [...new Set(tierSizes.map((s) => s.day))];
  const tiers = [...new Set(tierSizes.map((s) => s.tier))];
  const size = new Map(tierSizes.map((s) => [`${s.day}|${s.tier}`, s.customerCount]));
  const marks = [days[0], days[Math.max(0, days.length - 31)], days[days.length - 1]].filter((d, i, all) => d && all.indexOf(d) === i);
  const sizes = h("div", { class: "chart", id: "sizes-chart" });
  add(
    main,
    h("h2", {}, "Tier sizes over time"),
    h("figure", { class: "chart-box" }, sizes, h("figcaption", {}, `Customers per tier at the end of each of the last ${SIZE_DAYS} days (from the recorded tier changes)`)),
    table(
      `Tier sizes of ${scheme.key}`,
      ["Tier", ...marks],
      tiers.map((tier) => [tier, ...marks.map((d) => ({ text: count(size.get(`${d}|${tier}`) ?? 0), value: size.get(`${d}|${tier}`) ?? 0, class: "num" }))]),
      { numeric: marks.map((_, i) => i + 1) },
    ),
  );
  if (days.length) sizesChart(sizes, days, tiers.map((tier) => ({ tier, values: days.map((d) => size.get(`${d}|${tier}`) ?? 0) })));

  const fromInput = h("input", { type: "date", value: dayBefore(30), max: today, required: true });
  const toInput = h("input", { type: "date", value: today, max: today, required: true });
  const migration = h("div", { "aria-live": "polite" });
  const showMigration = async () => {
    try {
      const { migrationMatrix: cells } = await gql(MIGRATION_MATRIX, { scheme: scheme.key, fromDate: fromInput.value, toDate: toInput.value });
      const label = (t) => t ?? "(none)";
      const from = [...new Set(cells.map((c) => label(c.fromTier)))];
      const to = [...new Set(cells.map((c) => label(c.toTier)))];
      const chart = h("div", { class: "chart heatmap", id: "migration-chart" });
      replace(
        migration,
        cells.length ? h("figure", { class: "chart-box" }, chart, h("figcaption", {}, `Customers by tier at the end of ${fromInput.value} (rows) and of ${toInput.value} (columns)`)) : h("p", {}, "No customer was in a tier on either day."),
        table(`Migration of ${scheme.key}`, ["From", "To", "Customers"], cells.map((c) => [label(c.fromTier), label(c.toTier), { text: count(c.customerCount), value: c.customerCount }]), { numeric: [2] }),
      );
      if (cells.length) moveHeatmap(chart, from, to, cells.map((c) => [to.indexOf(label(c.toTier)), from.indexOf(label(c.fromTier)), c.customerCount]), { from: fromInput.value, to: toInput.value });
    } catch (error) {
      replace(migration, status(error.message, "error"));
    }
  };
  add(
    main,
    h("h2", {}, "Migration between two days"),
    h("form", { class: "controls", onsubmit: (event) => (event.preventDefault(), showMigration()) }, field("From day", fromInput), field("To day", toInput), h("button", { type: "submit" }, "Show migration")),
    migration,
    h("h2", {}, "Churn per tier"),
    table(
      `Churn of ${scheme.key} in the last ${CHURN_DAYS} days`,
      ["Tier", "Customers then", "Bought nothing since", "Churn rate"],
      churn.map((c) => [c.tier, { text: count(c.customerCount), value: c.customerCount }, { text: count(c.churned), value: c.churned }, { text: c.rate === null ? "–" : percent(c.rate), value: c.rate ?? "" }]),
      { numeric: [1, 2, 3] },
    ),
    h("p", { class: "muted" }, `Customers in each tier ${CHURN_DAYS} days ago (${dayBefore(CHURN_DAYS)}), and how many of them have made no purchase since.`),
  );
  await showMigration();
}
