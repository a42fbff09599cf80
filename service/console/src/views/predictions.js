// The tenant's prediction model (BG/NBD and Gamma-Gamma): when and on what it was fitted, its
// parameters, and how well it predicts a holdout period, as a chart and a table: the API's
// `model { calibration }`, the same comparison as `tierwise predict validate`.

import PREDICTION_MODEL from "../../../../graphql/operations/prediction_model.graphql";
import { gqlPartial } from "../api.js";
import { calibrationChart } from "../charts.js";
import { add, count, decimal, field, h, percent, table, when } from "../dom.js";

/** A date input's day as the API's DateTime (midnight UTC, as the CLI reads a date alone). */
const midnight = (day) => (day ? `${day}T00:00:00+00:00` : null);

export async function predictions(main, _ctx, _params, query) {
  const calibrationEnd = query.get("calibrationEnd");
  const holdoutEnd = query.get("holdoutEnd");
  add(main, h("h1", {}, "Predictions"));
  const { data, errors } = await gqlPartial(PREDICTION_MODEL, { calibrationEnd: midnight(calibrationEnd), holdoutEnd: midnight(holdoutEnd) });
  const model = data.model;
  // Only the calibration may fail on its own (a period with too few repeat buyers): the model
  // and the form stay, with the reason in place of the chart.
  const failed = errors.find((e) => e.path.join(".") === "model.calibration");
  const other = errors.find((e) => e !== failed);
  if (other) throw other;
  if (!model) {
    add(main, h("p", {}, "No prediction model is fitted yet: `tierwise predict fit`, or an admin's `fitModel` (the scheduler fits one on its interval). Until then p_alive, expected_orders, expected_order_value and clv are null."));
    return;
  }
  const p = model.parameters;
  add(
    main,
    h("p", { class: "summary", "aria-label": "Model" }, `Version ${model.version}, fitted ${when(model.fittedAt)} on the purchases before ${when(model.asOf)}: ${count(model.customers)} customers, ${count(model.repeatCustomers)} with a repeat purchase.`),
    h(
      "dl",
      { "aria-label": "Parameters" },
      [
        ["BG/NBD (days)", `r ${decimal(p.r, 4)}, alpha ${decimal(p.alpha, 4)}, a ${decimal(p.a, 4)}, b ${decimal(p.b, 4)}`],
        ["Gamma-Gamma", `p ${decimal(p.p, 4)}, q ${decimal(p.q, 4)}, v ${decimal(p.v, 4)}`],
        ["Horizons (days)", model.horizonDays.join(", ")],
      ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
    ),
  );
  const c = model.calibration;
  const startInput = h("input", { type: "date", value: c ? c.calibrationEnd.slice(0, 10) : calibrationEnd, required: true });
  const endInput = h("input", { type: "date", value: c ? c.holdoutEnd.slice(0, 10) : holdoutEnd ?? model.asOf.slice(0, 10), required: true });
  add(
    main,
    h("h2", {}, "Calibration"),
    h("p", {}, "BG/NBD fitted again on the purchases before the calibration end (nothing is stored), its predicted purchases of each customer until the holdout end against what they did, by the customer's repeat purchases before: the same as ", h("code", {}, "tierwise predict validate"), "."),
    h(
      "form",
      {
        class: "controls",
        onsubmit: (event) => {
          event.preventDefault();
          location.hash = `#/predictions?${new URLSearchParams({ calibrationEnd: startInput.value, holdoutEnd: endInput.value })}`;
        },
      },
      field("Calibration end", startInput),
      field("Holdout end", endInput),
      h("button", { type: "submit" }, "Validate"),
    ),
  );
  if (!c) {
    add(main, h("p", { class: "message error", role: "alert" }, failed ? failed.message : "This period cannot be validated."));
    return;
  }
  const chart = h("div", { class: "chart", id: "calibration-chart" });
  const customers = c.buckets.reduce((sum, b) => sum + b.customers, 0);
  add(
    main,
    h(
      "p",
      { class: "summary", "aria-label": "Calibration totals" },
      `From ${when(c.calibrationEnd)} to ${when(c.holdoutEnd)}: ${decimal(c.predicted, 1)} purchases predicted, ${count(c.actual)} made, error ${c.error === null ? "–" : (c.error.startsWith("-") ? "" : "+") + percent(c.error)}.`,
    ),
    h("figure", { class: "chart-box" }, chart, h("figcaption", {}, "Mean purchases per customer in the holdout period, predicted and actual, by repeat purchases in the calibration period")),
    table(
      "Calibration",
      ["Repeat purchases before", "Customers", "Predicted", "Actual"],
      [
        ...c.buckets.map((b) => [b.repeatPurchases, { text: count(b.customers), value: b.customers }, { text: b.predicted, value: b.predicted }, { text: b.actual, value: b.actual }]),
        ["Total", { text: count(customers), value: customers }, { text: decimal(c.predicted, 1), value: c.predicted }, { text: count(c.actual), value: c.actual }],
      ],
      { numeric: [1, 2, 3] },
    ),
    h("p", { class: "muted" }, "Per customer: mean purchase occasions (a day with orders is one) in the holdout period. Total: all of them."),
  );
  calibrationChart(chart, c.buckets);
}
