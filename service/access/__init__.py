"""Who may do what: bearer tokens, API keys and roles (`auth`), per-caller rate limits
(`ratelimit`) and the append-only audit log (`audit`). Below `engine`, because every change
the engine makes (publishing, strategies, webhooks) is written to the audit log."""
