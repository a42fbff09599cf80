// The rule editor: write or adapt a scheme (from a published one or a template), see the
// checker's diagnostics as you type, preview what publishing would do against the current
// tiers, and publish (analysts).

import CHECK_RULES from "../../../../graphql/operations/check_rules.graphql";
import PREVIEW_RULES from "../../../../graphql/operations/preview_rules.graphql";
import PUBLISH_SCHEME from "../../../../graphql/operations/publish_scheme.graphql";
import SCHEME_DIFF from "../../../../graphql/operations/scheme_diff.graphql";
import SCHEME_VERSIONS from "../../../../graphql/operations/scheme_versions.graphql";
import SEGMENT_LIST from "../../../../graphql/operations/segment_list.graphql";
import TEXT_VALUES from "../../../../graphql/operations/text_values.graphql";
import { ApiError, gql } from "../api.js";
import { moveHeatmap } from "../charts.js";
import { add, count, decimal, field, h, replace, status, table, when } from "../dom.js";
import { ruleEditor } from "../editor.js";
import { showExplanation } from "./customer.js";

const NEW = "";

function schemeKeyOf(source) {
  return source.match(/^\s*scheme\s+([\p{L}_][\p{L}\p{N}\p{M}_\u200c\u200d]*)/mu)?.[1] ?? null;
}

export async function rules(main, ctx, [schemeKey]) {
  const scheme = schemeKey === undefined ? ctx.schemes[0] : ctx.scheme(schemeKey);
  const analyst = ctx.role !== "viewer";
  const problems = h("ul", { class: "problems", "aria-label": "Problems", "aria-live": "polite" });
  const result = h("section", { class: "result", "aria-label": "Result" });
  const schemeSelect = h(
    "select",
    { onchange: () => (location.hash = `#/rules/${encodeURIComponent(schemeSelect.value)}`) },
    ctx.schemes.map((s) => h("option", { value: s.key, selected: s.key === scheme?.key }, `${s.key} (version ${s.version})`)),
    analyst ? h("option", { value: NEW, selected: !scheme }, "(new scheme)") : null,
  );
  const templateSelect = h(
    "select",
    {
      onchange: () => {
        const template = ctx.templates.find((t) => t.key === templateSelect.value);
        if (template) setText(template.source);
      },
    },
    h("option", { value: "" }, "(choose a template)"),
    ctx.templates.map((t) => h("option", { value: t.key }, `${t.key}: ${t.title}`)),
  );
  const holder = h("div", { class: "editor" });

  add(main, 
    h("h1", {}, "Rules"),
    h("div", { class: "controls" }, field("Scheme", schemeSelect), analyst ? field("Template", templateSelect) : null),
    analyst ? null : h("p", { class: "muted" }, "Signed in as a viewer: the rules are read-only."),
    holder,
  );

  function showProblems(diagnostics) {
    replace(
      problems,
      diagnostics.map((d) =>
        h("li", { class: d.severity.toLowerCase() }, h("strong", {}, `line ${d.line}, column ${d.column}: ${d.severity.toLowerCase()}: `), d.message, d.code ? h("code", { class: "code" }, ` [${d.code}]`) : null, d.hint ? h("span", { class: "hint" }, ` ${d.hint}`) : null),
      ),
    );
  }

  async function check(source) {
    try {
      const { checkRules } = await gql(CHECK_RULES, { source });
      showProblems(checkRules.diagnostics);
      return checkRules.diagnostics;
    } catch (error) {
      if (error instanceof ApiError && error.code === "FORBIDDEN") return null;
      throw error;
    }
  }

  const editor = ruleEditor(holder, {
    text: scheme?.source ?? "scheme new_scheme \"A new scheme\" {\n  tier Top when monetary(365 days) > 1000\n  tier Rest otherwise\n}\n",
    metrics: () => ctx.metrics,
    check,
    readOnly: !analyst,
    valuesFor: async (metric) => {
      // Once per field and page: the data's values change slowly.
      ctx.textValues ??= new Map();
      if (!ctx.textValues.has(metric)) ctx.textValues.set(metric, gql(TEXT_VALUES, { metric }).then((d) => d.textValues).catch(() => []));
      return ctx.textValues.get(metric);
    },
  });
  const text = () => editor.state.doc.toString();
  function setText(source) {
    editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: source } });
  }

  const historyBox = h("section", { class: "history", "aria-label": "Version history" });
  if (scheme) history(historyBox, scheme).catch((error) => replace(historyBox, status(error.message, "error")));
  if (!analyst) {
    main.append(historyBox);
    return;
  }

  const busy = async (button, work) => {
    button.disabled = true;
    try {
      await work();
    } catch (error) {
      replace(result, status(error.message, "error"));
      if (error.extensions?.diagnostics) showProblems(error.extensions.diagnostics);
    } finally {
      button.disabled = false;
    }
  };

  const checkButton = h("button", { type: "button", onclick: () => busy(checkButton, async () => {
    const diagnostics = await check(text());
    const errors = diagnostics.filter((d) => d.severity === "ERROR").length;
    replace(result, status(errors ? `${errors} error${errors > 1 ? "s" : ""}: see Problems.` : diagnostics.length ? "No errors; see the warnings." : "No problems found.", errors ? "error" : "info"));
  }) }, "Check");

  const previewButton = h("button", { type: "button", onclick: () => busy(previewButton, async () => {
    const { previewRules } = await gql(PREVIEW_RULES, { source: text() });
    replace(result);
    for (const preview of previewRules.schemes) await showPreview(result, ctx, preview);
  }) }, "Preview");

  const publishButton = h("button", { type: "button", class: "primary", onclick: () => busy(publishButton, async () => {
    const key = schemeKeyOf(text()) ?? scheme?.key;
    if (!key) throw new Error("Name the scheme: start the rules with `scheme KEY { ... }`.");
    const { publishScheme: published } = await gql(PUBLISH_SCHEME, { key, source: text() });
    await ctx.reload();
    const moved = published.runs.reduce((sum, run) => sum + run.changed, 0);
    // Shown by the view drawn anew for the scheme as it is now published.
    ctx.flash = published.changed
      ? `Published ${published.scheme.key} version ${published.scheme.version}; ${count(moved)} customers changed tier.`
      : `Nothing to publish: version ${published.scheme.version} of ${published.scheme.key} has these rules already.`;
    const target = `#/rules/${encodeURIComponent(published.scheme.key)}`;
    if (location.hash === target) window.dispatchEvent(new HashChangeEvent("hashchange"));
    else location.hash = target;
  }) }, "Publish");

  add(main, h("div", { class: "buttons" }, checkButton, previewButton, publishButton), h("h2", {}, "Problems"), problems, result, historyBox);
  if (ctx.flash) replace(result, status(ctx.flash));
  ctx.flash = null;
}

async function showPreview(result, ctx, preview) {
  const current = ctx.scheme(preview.scheme) ? (await gql(SEGMENT_LIST, { scheme: preview.scheme })).segments : [];
  const now = new Map(current.map((s) => [s.tier, s]));
  const tiers = [...preview.tiers.map((t) => t.tier), ...current.map((s) => s.tier).filter((t) => !preview.tiers.some((p) => p.tier === t))];
  const after = new Map(preview.tiers.map((t) => [t.tier, t]));
  const section = h("section", { "aria-label": `Preview of ${preview.scheme}` }, h("h2", {}, `Preview of ${preview.scheme}`));
  section.append(
    table(
      `What publishing ${preview.scheme} would do`,
      ["Tier", "Customers now", "Customers after", "Change", "Revenue now", "Revenue after"],
      tiers.map((tier) => {
        const before = now.get(tier)?.customerCount ?? 0;
        const later = after.get(tier)?.customerCount ?? 0;
        return [
          tier,
          { text: now.has(tier) ? count(before) : "–", value: now.has(tier) ? before : "" },
          { text: after.has(tier) ? count(later) : "–", value: after.has(tier) ? later : "" },
          { text: `${later - before > 0 ? "+" : ""}${count(later - before)}`, value: later - before },
          { text: decimal(now.get(tier)?.revenue), value: now.get(tier)?.revenue ?? "" },
          { text: decimal(after.get(tier)?.revenue), value: after.get(tier)?.revenue ?? "" },
        ];
      }),
      { numeric: [1, 2, 3, 4, 5] },
    ),
  );
  const moves = preview.moves.filter((m) => m.fromTier !== m.toTier);
  if (moves.length) {
    const label = (t) => t ?? "(none)";
    // Every tier on both axes (now: the current tiers; after: the preview's), so a reader
    // sees who stays put as well as who moves.
    const from = [...new Set([...current.map((s) => s.tier), ...moves.map((m) => label(m.fromTier))])];
    const to = [...new Set([...preview.tiers.map((t) => t.tier), ...moves.map((m) => label(m.toTier))])];
    const cells = moves.map((m) => [to.indexOf(label(m.toTier)), from.indexOf(label(m.fromTier)), m.customerCount]);
    const chart = h("div", { class: "chart heatmap" });
    section.append(
      h("h3", {}, "Who would move"),
      h("figure", { class: "chart-box" }, chart, h("figcaption", {}, "Customers by current tier (rows) and tier after publishing (columns)")),
      table("Moves", ["From", "To", "Customers"], moves.map((m) => [label(m.fromTier), label(m.toTier), { text: count(m.customerCount), value: m.customerCount }]), { numeric: [2] }),
      h("h3", {}, "Some of the customers who would move, and why"),
      h("ul", { class: "samples", "aria-label": "Moving customers" }, moves.flatMap((m) => m.sample.map((moved) => {
        const why = h("div", { class: "explanation" });
        showExplanation(why, moved.explanation, moved.customerId);
        return h("li", { dataset: { customer: moved.customerId } },
          h("details", {},
            h("summary", {}, h("a", { href: `#/customers/${encodeURIComponent(moved.customerId)}?scheme=${encodeURIComponent(preview.scheme)}` }, moved.customerId), `: ${label(m.fromTier)} → ${label(m.toTier)}`),
            why));
      }))),
    );
    result.append(section);
    moveHeatmap(chart, from, to, cells);
  } else {
    section.append(h("p", {}, "Nobody would change tier."));
    result.append(section);
  }
}

/** Who published which version when, and the difference between two versions. */
async function history(box, scheme) {
  const { schemeVersions: versions } = await gql(SCHEME_VERSIONS, { scheme: scheme.key });
  const options = (selected) => versions.map((v) => h("option", { value: v.version, selected: v.version === selected }, `version ${v.version}`));
  const newest = versions[0].version;
  const fromSelect = h("select", {}, options(Math.max(1, newest - 1)));
  const toSelect = h("select", {}, options(newest));
  const diffBox = h("div", { class: "diff-box", "aria-live": "polite" });
  const show = async () => {
    try {
      const { schemeDiff: diff } = await gql(SCHEME_DIFF, { scheme: scheme.key, fromVersion: Number(fromSelect.value), toVersion: Number(toSelect.value) });
      const sign = { SAME: " ", ADDED: "+", REMOVED: "-" };
      const tiers = [
        diff.addedTiers.length ? `tiers added: ${diff.addedTiers.join(", ")}` : null,
        diff.removedTiers.length ? `tiers removed: ${diff.removedTiers.join(", ")}` : null,
      ].filter(Boolean);
      const changed = diff.lines.some((l) => l.change !== "SAME");
      replace(
        diffBox,
        h("p", { class: "summary" }, `Version ${diff.fromVersion} to ${diff.toVersion}: ${changed ? "" : "the same rules"}${tiers.join("; ")}${changed && !tiers.length ? "conditions changed" : ""}.`),
        h("pre", { class: "diff", "aria-label": `Diff of version ${diff.fromVersion} and ${diff.toVersion}` },
          diff.lines.map((l) => h("span", { class: `line ${l.change.toLowerCase()}`, dataset: { change: l.change } }, `${sign[l.change]} ${l.text}\n`))),
      );
    } catch (error) {
      replace(diffBox, status(error.message, "error"));
    }
  };
  replace(
    box,
    h("h2", {}, `Versions of ${scheme.key}`),
    table(
      `Versions of ${scheme.key}`,
      ["Version", "Published", "By", "Tiers"],
      versions.map((v) => [`${v.version}${v.current ? " (current)" : ""}`, when(v.publishedAt), v.publishedBy ?? "–", v.tiers.join(", ")]),
    ),
    versions.length > 1
      ? h("form", { class: "controls", onsubmit: (event) => (event.preventDefault(), show()) }, field("From version", fromSelect), field("To version", toSelect), h("button", { type: "submit" }, "Show diff"))
      : h("p", { class: "muted" }, "Only one version: nothing to compare yet."),
    diffBox,
  );
}
