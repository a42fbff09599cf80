// The console's only way to data: the GraphQL API at /graphql, with the signed-in token.
// The token lives in sessionStorage: it ends with the browser tab, and GraphiQL (same origin,
// same tab) can use it too.

const TOKEN_KEY = "tierwise.token";

export class ApiError extends Error {
  constructor(message, code, extensions = {}) {
    super(message);
    this.code = code;
    this.extensions = extensions;
  }
}

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

// Called when the server refuses the token (expired, revoked): the shell signs out.
let onUnauthenticated = () => {};
export function whenUnauthenticated(callback) {
  onUnauthenticated = callback;
}

/** The `data` of one GraphQL operation; throws ApiError with the first error's code. */
export async function gql(document, variables = {}, token = session.token) {
  const { data, errors } = await gqlPartial(document, variables, token);
  if (errors.length) throw errors[0];
  return data;
}

/**
 * `data` and the errors (as ApiError, each with its `path`) of an operation whose nullable
 * fields may fail on their own, the rest still answered; throws when nothing was answered.
 */
export async function gqlPartial(document, variables = {}, token = session.token) {
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: document, variables }),
    });
  } catch (error) {
    throw new ApiError(`The service did not answer (${error.message}).`, "NETWORK");
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The service answered HTTP ${response.status} without GraphQL.`, "HTTP");
  }
  const errors = (body.errors ?? []).map((e) => {
    const error = new ApiError(e.message, e.extensions?.code ?? "INTERNAL", e.extensions ?? {});
    error.path = e.path ?? [];
    return error;
  });
  const [first] = errors;
  if (first?.code === "UNAUTHENTICATED" && token === session.token) onUnauthenticated(first.message);
  if (first && (body.data === null || body.data === undefined)) throw first;
  return { data: body.data, errors };
}

/**
 * A CSV export (`GET /export`) with the signed-in token, offered to the browser as a file
 * named as the server names it; returns the number of customers in it. Throws ApiError
 * with the server's code when refused.
 */
export async function exportCsv(params) {
  const query = new URLSearchParams();
  for (const [name, value] of params) if (value) query.append(name, value);
  let response;
  try {
    response = await fetch(`/export?${query}`, { headers: { Authorization: `Bearer ${session.token}` } });
  } catch (error) {
    throw new ApiError(`The service did not answer (${error.message}).`, "NETWORK");
  }
  if (!response.ok) {
    let first = { message: `The service answered HTTP ${response.status}.`, extensions: {} };
    try {
      first = (await response.json()).errors[0];
    } catch {
      // not JSON: keep the status
    }
    const code = first.extensions?.code ?? "HTTP";
    if (code === "UNAUTHENTICATED") onUnauthenticated(first.message);
    throw new ApiError(first.message, code, first.extensions ?? {});
  }
  const text = await response.text();
  const name = response.headers.get("Content-Disposition")?.match(/filename="([^"]+)"/)?.[1] ?? "customers.csv";
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  return { name, customers: Math.max(0, text.split("\r\n").filter((line) => line !== "").length - 1) };
}
