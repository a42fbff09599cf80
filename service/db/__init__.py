"""The database layer: the engine and its pool (`database`), the table definitions
(`tables`), schema migrations (`migrate`) and the advisory locks runs and loads take
(`locks`). Imports only the base modules."""
