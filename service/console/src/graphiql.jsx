// GraphiQL for developers at /graphql, with React and GraphiQL from this service (no CDN), so
// it works offline and behind strict proxies. A token the console signed in with (same tab)
// is put in the Headers tab; it is never stored beyond the tab (no persisted headers).
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { GraphiQL } from "graphiql";
import "graphiql/graphiql.css";
import { createRoot } from "react-dom/client";

const EXAMPLE = `# Tierwise GraphQL API. Put your token in the Headers tab below:
#   {"Authorization": "Bearer <token>"}
# Run with Ctrl-Enter; Ctrl-Space completes; the Docs button shows the schema.
{
  segments(scheme: "value") {
    tier
    customerCount
    customerShare
    revenueShare
  }
}
`;

const token = sessionStorage.getItem("tierwise.token");
const url = `${location.origin}/graphql`;
const fetcher = createGraphiQLFetcher({
  url,
  subscriptionUrl: url.replace(/^http/, "ws"),
  wsConnectionParams: token ? { authorization: `Bearer ${token}` } : undefined,
});

createRoot(document.getElementById("graphiql")).render(
  <GraphiQL
    fetcher={fetcher}
    defaultQuery={EXAMPLE}
    headers={token ? JSON.stringify({ Authorization: `Bearer ${token}` }, null, 2) : undefined}
    isHeadersEditorEnabled={true}
    shouldPersistHeaders={false}
    defaultEditorToolsVisibility={token ? false : "headers"}
  />,
);
