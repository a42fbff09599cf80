// The analyst console: sign in with a token (API key or JWT), then dashboard, rules,
// segments, customers, strategies and the prediction model, all from the GraphQL API. Views
// are addressed by the URL's fragment (#/dashboard/value), so the browser's back button and
// links work.

import CHECK_RULES from "../../../graphql/operations/check_rules.graphql";
import CONSOLE_SESSION from "../../../graphql/operations/console_session.graphql";
import { ApiError, gql, session, whenUnauthenticated } from "./api.js";
import "./console.css";
import { field, h, replace, status } from "./dom.js";
import { customer } from "./views/customer.js";
import { dashboard } from "./views/dashboard.js";
import { predictions } from "./views/predictions.js";
import { rules } from "./views/rules.js";
import { segments } from "./views/segments.js";
import { strategies } from "./views/strategies.js";

const VIEWS = {
  dashboard: ["Dashboard", dashboard],
  rules: ["Rules", rules],
  segments: ["Segments", segments],
  customers: ["Customers", customer],
  strategies: ["Strategies", strategies],
  predictions: ["Predictions", predictions],
};

const root = document.getElementById("console");
const ctx = {
  role: null,
  schemes: [],
  metrics: [],
  templates: JSON.parse(document.getElementById("tierwise-templates").textContent),
  scheme(key) {
    return this.schemes.find((s) => s.key === key);
  },
  async reload() {
    Object.assign(this, await gql(CONSOLE_SESSION));
  },
};

/** The role a token acts in, as far as the console cares: viewers may not check rules. */
async function roleOf(token) {
  try {
    await gql(CHECK_RULES, { source: "" }, token);
    return "analyst";
  } catch (error) {
    if (error instanceof ApiError && error.code === "FORBIDDEN") return "viewer";
    throw error;
  }
}

async function signIn(token) {
  const loaded = await gql(CONSOLE_SESSION, {}, token); // refuses a bad token or an ingest key
  ctx.role = await roleOf(token);
  Object.assign(ctx, loaded);
  session.token = token;
}

function signOut(reason) {
  session.token = null;
  ctx.role = null;
  showSignIn(reason);
}
whenUnauthenticated((message) => signOut(`Signed out: ${message}`));

function showSignIn(reason) {
  const input = h("input", { type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const message = h("div", {}, reason ? status(reason, "error") : null);
  const form = h(
    "form",
    {
      class: "sign-in",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          await signIn(input.value.trim());
          if (!location.hash || location.hash === "#") location.hash = "#/dashboard";
          render();
        } catch (error) {
          const refused = error.code === "FORBIDDEN" ? "This token may not read reports (an ingest key?): sign in as a viewer or analyst." : error.message;
          replace(message, status(refused, "error"));
        }
      },
    },
    h("h1", {}, "Tierwise console"),
    h("p", {}, "Sign in with an API key or a JWT. It is kept for this browser tab only."),
    field("Token", input),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    message,
  );
  replace(root, h("main", { class: "narrow" }, form));
  input.focus();
}

function route() {
  const [path, search = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [name, ...rest] = path.split("/").map(decodeURIComponent);
  return { name: VIEWS[name] ? name : "dashboard", params: rest.filter((p) => p !== ""), query: new URLSearchParams(search) };
}

let rendering = 0;
async function render() {
  if (!ctx.role) return;
  const { name, params, query } = route();
  const main = h("main", { id: "view", tabindex: "-1" });
  const nav = h(
    "nav",
    { class: "top", "aria-label": "Console" },
    Object.entries(VIEWS).map(([key, [label]]) => h("a", { href: `#/${key}`, "aria-current": key === name ? "page" : undefined }, label)),
    h("a", { href: "/graphql", target: "_blank", rel: "noopener" }, "GraphiQL"),
  );
  replace(
    root,
    h("header", {}, h("span", { class: "brand" }, "Tierwise"), nav, h("span", { class: "role", "aria-label": "Role" }, ctx.role), h("button", { type: "button", onclick: () => signOut() }, "Sign out")),
    main,
  );
  document.title = `${VIEWS[name][0]} · Tierwise console`;
  const mine = ++rendering;
  try {
    await VIEWS[name][1](main, ctx, params, query);
  } catch (error) {
    if (mine === rendering && ctx.role) main.append(status(error.message, "error"));
  }
}

/** The demo's link carries its token in the fragment (never sent to the server): take it
 * into the session and out of the address bar. */
function tokenFromAddress() {
  const given = location.hash.match(/^#token=([^&]+)/);
  if (!given) return false;
  session.token = decodeURIComponent(given[1]);
  history.replaceState(null, "", `${location.pathname}#/dashboard`);
  return true;
}

async function start() {
  if (session.token) {
    try {
      await signIn(session.token);
    } catch (error) {
      signOut(error.message);
      return;
    }
    render();
  } else {
    showSignIn();
  }
}

window.addEventListener("hashchange", () => (tokenFromAddress() ? start() : render()));
tokenFromAddress();
start();
