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
  if (body.errors?.length) {
    const [first] = body.errors;
    const code = first.extensions?.code ?? "INTERNAL";
    if (code === "UNAUTHENTICATED" && token === session.token) onUnauthenticated(first.message);
    throw new ApiError(first.message, code, first.extensions ?? {});
  }
  return body.data;
}
