// Dashboard of one scheme: per tier its customers, share of customers next to share of
// revenue (chart and table), revenue and average revenue, and its strategies.

import SEGMENT_LIST from "../../../../graphql/operations/segment_list.graphql";
import { gql } from "../api.js";
import { sharesChart } from "../charts.js";
import { add, count, decimal, h, percent, table } from "../dom.js";
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
}
