// The graphql-http package's GraphQL-over-HTTP audit against a running server, each request
// with the bearer token given; prints every result (id, name, status, reason) as JSON.
// Run by tests/api/test_graphql_http.py: node graphql_http_audit.mjs URL TOKEN
import { auditServer } from 'graphql-http';

const [url, token] = process.argv.slice(2);

function fetchFn(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
}

const results = await auditServer({ url, fetchFn });
console.log(
  JSON.stringify(
    results.map(({ id, name, status, reason }) => ({ id, name, status, reason: reason ?? null })),
  ),
);
