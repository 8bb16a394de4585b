"""`python -m engine.cli`: the same command line as the `lotwise` console script."""

from engine.cli.main import app

app()
