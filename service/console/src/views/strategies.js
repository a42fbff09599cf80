// Strategies: what the business does for each tier. Everyone sees them; analysts create,
// edit and delete them.

import DELETE_STRATEGY from "../../../../graphql/operations/delete_strategy.graphql";
import SAVE_STRATEGY from "../../../../graphql/operations/save_strategy.graphql";
import STRATEGY_LIST from "../../../../graphql/operations/strategy_list.graphql";
import { gql } from "../api.js";
import { add, field, h, replace, status, table } from "../dom.js";
import { schemeTabs } from "./common.js";

export async function strategies(main, ctx, [schemeKey]) {
  const scheme = ctx.scheme(schemeKey) ?? ctx.schemes[0];
  add(main, h("h1", {}, "Strategies"));
  if (!scheme) {
    add(main, h("p", {}, "No scheme is published yet."));
    return;
  }
  const analyst = ctx.role !== "viewer";
  const message = h("div", { "aria-live": "polite" });
  const list = h("section", { "aria-label": "Strategy list" });
  const editor = h("section", { "aria-label": "Strategy editor" });
  add(main, schemeTabs(ctx, scheme.key, (key) => `#/strategies/${encodeURIComponent(key)}`), message, list, editor);

  async function load() {
    const { strategies: found } = await gql(STRATEGY_LIST, { scheme: scheme.key });
    const headers = ["Tier", "Name", "Channel", "Priority", "Active", "Description", "Parameters"];
    replace(
      list,
      table(
        `Strategies of ${scheme.key}`,
        analyst ? [...headers, "Actions"] : headers,
        found.map((s) => {
          const row = [s.tier, s.name, s.channel, { text: s.priority, value: s.priority }, s.active ? "yes" : "no", s.description || "–", h("code", {}, JSON.stringify(s.parameters))];
          if (analyst) {
            row.push(h("span", { class: "actions" },
              h("button", { type: "button", "aria-label": `Edit ${s.tier} ${s.name}`, onclick: () => form(s) }, "Edit"),
              h("button", { type: "button", "aria-label": `Delete ${s.tier} ${s.name}`, onclick: async () => {
                await gql(DELETE_STRATEGY, { id: s.id });
                replace(message, status(`Deleted ${s.name} of ${s.tier}.`));
                await load();
              } }, "Delete")));
          }
          return row;
        }),
        { numeric: [3] },
      ),
    );
    if (analyst && !editor.hasChildNodes()) form(null);
  }

  function form(existing) {
    const tier = h("select", {}, scheme.tiers.map((t) => h("option", { value: t, selected: t === existing?.tier }, t)));
    const name = h("input", { type: "text", required: true, value: existing?.name ?? "" });
    const channel = h("input", { type: "text", required: true, value: existing?.channel ?? "email" });
    const priority = h("input", { type: "number", required: true, value: existing?.priority ?? 100 });
    const description = h("textarea", { rows: 2 }, existing?.description ?? "");
    const parameters = h("textarea", { rows: 2, spellcheck: "false" }, JSON.stringify(existing?.parameters ?? {}));
    const active = h("input", { type: "checkbox", checked: existing ? existing.active : true });
    replace(
      editor,
      h("h2", {}, existing ? `Edit ${existing.name}` : "New strategy"),
      h("form", { class: "strategy-form", onsubmit: async (event) => {
        event.preventDefault();
        let params;
        try {
          params = JSON.parse(parameters.value || "{}");
        } catch (error) {
          replace(message, status(`Parameters: not JSON (${error.message}).`, "error"));
          return;
        }
        try {
          const { saveStrategy: saved } = await gql(SAVE_STRATEGY, { strategy: {
            scheme: scheme.key, tier: tier.value, name: name.value.trim(), channel: channel.value.trim(),
            priority: Number(priority.value), description: description.value, parameters: params, active: active.checked,
          } });
          replace(message, status(`Saved ${saved.name} for ${saved.tier}.`));
          replace(editor);
          await load();
        } catch (error) {
          replace(message, status(error.message, "error"));
        }
      } },
        field("Tier", tier), field("Name", name), field("Channel", channel), field("Priority", priority),
        field("Description", description), field("Parameters (JSON)", parameters), field("Active", active),
        h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Save strategy"), existing ? h("button", { type: "button", onclick: () => form(null) }, "New strategy") : null),
      ),
    );
  }

  await load();
}
