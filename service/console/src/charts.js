// Charts with Apache ECharts, only the parts used (bars, lines, heatmap, SVG renderer), so the
// console stays small. Every chart carries an ECharts-generated description for screen
// readers (aria), and the same numbers are in a table beside it.

import { BarChart, HeatmapChart, LineChart } from "echarts/charts";
import { AriaComponent, GridComponent, LegendPlainComponent, TooltipComponent, VisualMapContinuousComponent } from "echarts/components";
import * as echarts from "echarts/core";
import { SVGRenderer } from "echarts/renderers";

echarts.use([BarChart, HeatmapChart, LineChart, AriaComponent, GridComponent, LegendPlainComponent, TooltipComponent, VisualMapContinuousComponent, SVGRenderer]);

function mount(element, option) {
  const chart = echarts.init(element, null, { renderer: "svg" });
  chart.setOption({ aria: { enabled: true }, animation: false, ...option });
  new ResizeObserver(() => chart.resize()).observe(element);
  return chart;
}

/** Share of customers next to share of revenue, per tier ("15 % of customers bring 40 %"). */
export function sharesChart(element, segments) {
  const tiers = segments.map((s) => s.tier);
  const pct = (share) => Math.round(Number(share) * 1000) / 10; // Decimal strings
  return mount(element, {
    color: ["#2563eb", "#f59e0b"],
    tooltip: { trigger: "axis", valueFormatter: (v) => `${v}%` },
    legend: { top: 0 },
    grid: { left: 8, right: 24, top: 32, bottom: 8, containLabel: true },
    xAxis: { type: "value", max: 100, axisLabel: { formatter: "{value}%" } },
    yAxis: { type: "category", data: tiers, inverse: true },
    series: [
      { name: "Share of customers", type: "bar", data: segments.map((s) => pct(s.customerShare)), label: { show: true, position: "right", formatter: "{c}%" } },
      { name: "Share of revenue", type: "bar", data: segments.map((s) => pct(s.revenueShare)), label: { show: true, position: "right", formatter: "{c}%" } },
    ],
  });
}

/** Customers moving from tier to tier as a heatmap (rows: now, columns: after). */
export function moveHeatmap(element, fromTiers, toTiers, cells, { from = "now", to = "after" } = {}) {
  const max = Math.max(1, ...cells.map(([, , n]) => n));
  return mount(element, {
    tooltip: { formatter: (p) => `${fromTiers[p.value[1]]} → ${toTiers[p.value[0]]}: ${p.value[2]}` },
    grid: { left: 8, right: 8, top: 24, bottom: 48, containLabel: true },
    xAxis: { type: "category", data: toTiers, name: to, nameLocation: "middle", nameGap: 28, splitArea: { show: true } },
    yAxis: { type: "category", data: fromTiers, name: from, inverse: true, splitArea: { show: true } },
    visualMap: { min: 0, max, show: false, inRange: { color: ["#eff6ff", "#1d4ed8"] } },
    series: [{ type: "heatmap", data: cells, label: { show: true } }],
  });
}

/** Each tier's customers day by day (a line per tier). */
export function sizesChart(element, days, series) {
  return mount(element, {
    tooltip: { trigger: "axis" },
    legend: { top: 0, type: "plain" },
    grid: { left: 8, right: 24, top: 40, bottom: 8, containLabel: true },
    xAxis: { type: "category", data: days, boundaryGap: false },
    yAxis: { type: "value", name: "customers" },
    series: series.map(({ tier, values }) => ({ name: tier, type: "line", showSymbol: false, data: values })),
  });
}

/** The model's calibration: per number of calibration repeat purchases, the mean predicted
 * and the mean actual purchases in the holdout period (Fader, Hardie and Lee 2005, figure 3).
 * Means are Decimal strings; the chart draws them as numbers, the table beside it keeps them. */
export function calibrationChart(element, buckets) {
  return mount(element, {
    color: ["#2563eb", "#f59e0b"],
    tooltip: { trigger: "axis" },
    legend: { top: 0 },
    grid: { left: 8, right: 24, top: 40, bottom: 32, containLabel: true },
    xAxis: { type: "category", data: buckets.map((b) => b.repeatPurchases), name: "repeat purchases in the calibration period", nameLocation: "middle", nameGap: 28 },
    yAxis: { type: "value", name: "purchases per customer", nameTextStyle: { align: "left" } },
    series: [
      { name: "Predicted", type: "line", symbolSize: 8, data: buckets.map((b) => Number(b.predicted)) },
      { name: "Actual", type: "line", symbolSize: 8, lineStyle: { type: "dashed" }, data: buckets.map((b) => Number(b.actual)) },
    ],
  });
}
