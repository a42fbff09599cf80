"""The `tierwise` command: `main` assembles the command groups, one module each (`serve`,
`data`, `rules`, `keys`, `reports`, `predict`); `support` holds what they share."""

from service.cli.main import main

__all__ = ["main"]
