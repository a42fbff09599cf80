"""The GraphQL API (strawberry): one module per feature, each with its types and its part of
the Query, Mutation and Subscription roots, over shared plumbing.

Features:

- `customers`: the customer card (profile, tiers, strategies, metrics, history, explain), the
  keyset-paged customers connection with its filters, the root `explain`, `Transition`;
- `explain`: the explanation types (every tier and clause with the customer's values);
- `segments`: customers and revenue per tier, with each tier's strategies;
- `schemes`: published schemes; checking, previewing and publishing rules; evaluating now;
- `strategies`: the `Strategy` type, listing, saving and deleting strategies;
- `catalog`: the rule language's metric catalog;
- `ingest`: writing customers, orders and events, with per-row errors;
- `tier_changes`: the `tierChanged` subscription;
- `keys`, `webhooks`, `audit`: API keys, webhooks and their deliveries, the audit log (admin).

Plumbing:

- `schema`: assembles the roots from the features and builds the schema from the settings;
- `http`: the ASGI adapter serving it at /graphql (HTTP and WebSocket);
- `access`: authentication, rate limits, each field's permission, the `Role` enum;
- `context`: what every resolver gets (engine, caller, settings, loaders);
- `loaders`: batched per-node reads, one statement per batch;
- `feed`: hearing committed tier changes for the subscriptions;
- `fields`: declaring fields and arguments, and parsing row IDs;
- `errors`: the codes clients see, mapped from service errors by type, the rest masked;
- `limits`: depth, token, alias, operation and page-size limits, and document caches;
- `observe`: request ids and metrics.

Resolvers stay thin: they translate arguments, call the engine, access and data layers and
map results to types; they raise or let through service errors (`UserError`, `NotFound`,
`RuleError`) and never choose a code themselves. Every database read has its own connection.
"""
