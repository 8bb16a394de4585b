"""`lotwise where`: the addresses of the engine serving a data directory (its engine.json).

    lotwise where                   gRPC, metrics and NATS, one per line
    lotwise where --format json     the same as one JSON object (csv: a header and one row)
    lotwise where --grpc | --nats | --metrics | --console    one address, for scripts: "$(lotwise where --nats)"

Exit codes: 0 found; 2 bad usage or an unusable engine.json; 3 no engine has written its
addresses in that data directory (none is running there, or it runs elsewhere).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import EXIT_CONFIG, EXIT_UNREACHABLE, OutputFormat, emit, fail
from engine.endpoints import EndpointsError, data_dir_from_env, endpoints_path, read_endpoints


class WhereFormat(StrEnum):
    """table (also spelled text: one `name address` line each), json or csv."""

    TABLE = "table"
    TEXT = "text"
    JSON = "json"
    CSV = "csv"


def where(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data directory of the engine (env LOTWISE_DATA_DIR, default .data).", show_default=False),
    ] = None,
    grpc: Annotated[bool, typer.Option("--grpc", help="Print only the gRPC address (host:port).")] = False,
    nats: Annotated[bool, typer.Option("--nats", help="Print only the NATS URL.")] = False,
    metrics: Annotated[bool, typer.Option("--metrics", help="Print only the metrics URL.")] = False,
    console: Annotated[bool, typer.Option("--console", help="Print only the web console's URL.")] = False,
    output: Annotated[
        WhereFormat, typer.Option("--format", "-F", case_sensitive=False, help="table (or text), json or csv.")
    ] = WhereFormat.TABLE,
) -> None:
    """Where the engine of a data directory listens (written by `lotwise up` to engine.json)."""
    if grpc + nats + metrics + console > 1:
        fail("--grpc, --nats, --metrics and --console: give at most one", EXIT_CONFIG)
    where_dir = data_dir if data_dir is not None else data_dir_from_env()
    try:
        found = read_endpoints(where_dir)
    except EndpointsError as exc:
        fail([f"unusable {exc.path}: {exc.problem}", "remove it and start `lotwise up` again"], EXIT_CONFIG)
    if found is None:
        fail(
            [
                f"no running engine wrote its addresses to {endpoints_path(where_dir)}",
                "start one with `lotwise up` (or `make up`), or point --data-dir / LOTWISE_DATA_DIR at its data dir",
            ],
            EXIT_UNREACHABLE,
        )
    single = (
        found.grpc if grpc else found.nats if nats else found.metrics if metrics else found.console if console else None
    )
    if single is not None:
        if not single:
            fail("this engine has no such address (the service is off)", EXIT_UNREACHABLE)
        typer.echo(single)
    elif output is WhereFormat.JSON:
        typer.echo(json.dumps(asdict(found)))
    elif output is WhereFormat.CSV:
        emit(OutputFormat.CSV, [asdict(found)])
    else:
        for name, value in (
            ("grpc", found.grpc),
            ("metrics", found.metrics),
            ("nats", found.nats),
            ("console", found.console),
        ):
            typer.echo(f"{name:<8} {value or 'off'}")
