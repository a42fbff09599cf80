"""The GraphQL API: strawberry types and resolvers over the service layer, one module per
concern (`context`, `types`, `loaders`, `queries`, `errors`, `limits`, `schema`), served by
`http` at /graphql. Resolvers stay thin: they translate arguments, call `service.*` and map
results to types; every database read goes through its own connection."""
