"""`lotwise`, the command line (the console script's entry is `engine.cli:app`).

One module per command group: `main` (up, demo and the stock questions), `history`,
`dlq`; `common` holds what they share, so no module of the package imports another in a
cycle."""

from engine.cli.main import app

__all__ = ["app"]
