"""Tierwise, the service: one subpackage per layer, each importing only the layers below it
(the import-linter contracts in pyproject.toml hold this in CI).

    cli       the `tierwise` command, one module per command group
    app       the Starlette application: HTTP routes, start-up and shutdown
    api       the GraphQL API (strawberry), resolvers grouped by feature
    engine    schemes and their versions, evaluation runs, analytics, strategies, webhooks
    access    who may do what: API keys and JWTs, rate limits, the audit log
    data      records, file readers, ingest and the per-customer rollups, demo data
    db        the engine and pool, the table definitions, migrations, advisory locks

`config`, `errors`, `logs`, `metrics` and `background` are the base every layer may use; they
import none of the layers. The rule language lives apart, in `dsl`, which knows nothing of
the service.
"""
