import { h } from "../dom.js";

/** Links to the same view of each published scheme; the current one marked for readers. */
export function schemeTabs(ctx, current, href) {
  return h(
    "nav",
    { class: "tabs", "aria-label": "Schemes" },
    ctx.schemes.map((s) => h("a", { href: href(s.key), "aria-current": s.key === current ? "page" : undefined }, s.key)),
  );
}
