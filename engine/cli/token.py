"""`lotwise token`: mint a bearer token for a person, a device or a script.

    lotwise token --subject maya --group site_manager --ttl-hours 8 > maya.token
    lotwise stock --token-file maya.token

The token is signed with the engine's HS256 secret — the file `LOTWISE_AUTH_SECRET_FILE`
names, else `<data_dir>/auth/signing.key` that the first `lotwise up` created — so only
someone who can read that file can mint one, and nothing is sent anywhere. What the token
allows is decided by the policy's grants for its groups (docs/security.md). Tokens of an
outside identity provider are minted there, not here. Exit 2 when there is no secret or
an option is out of range.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import EXIT_CONFIG, _out, check_range, fail
from engine.cli.config import build_settings, config_errors

MAX_TTL_HOURS = 3650 * 24
MAX_GROUPS = 64


def token(
    subject: Annotated[str, typer.Option("--subject", "-s", help="Who the token speaks for (its `sub`).")],
    group: Annotated[
        list[str] | None,
        typer.Option(
            "--group", "-g", help="A group the policy grants roles to (repeat for several).", show_default=False
        ),
    ] = None,
    ttl_hours: Annotated[float, typer.Option("--ttl-hours", help="How long the token lives.")] = 8.0,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Write the token to this file (mode 0600) instead of stdout.", show_default=False
        ),
    ] = None,
) -> None:
    """Mint a bearer token signed with this engine's secret (see docs/security.md)."""
    from engine.bootstrap.auth import mint_for
    from engine.bootstrap.config import SettingsProblem

    check_range("--ttl-hours", ttl_hours, 0.1, MAX_TTL_HOURS)
    groups = list(group or [])
    if len(groups) > MAX_GROUPS or any(not g or any(c.isspace() for c in g) for g in groups):
        fail(f"--group: at most {MAX_GROUPS} groups, each a word without spaces (got {groups!r})", EXIT_CONFIG)
    with config_errors():
        settings = build_settings({})
    try:
        minted = mint_for(settings, subject, groups, ttl_hours * 3600.0)
    except SettingsProblem as exc:
        fail(f"cannot mint a token: {exc.field}: {exc.message}", EXIT_CONFIG)
    if out is None:
        typer.echo(minted)
        return
    try:
        _write_private(out, minted + "\n")
    except OSError as exc:
        fail(f"--out {out}: cannot write it: {exc.strerror or exc}", EXIT_CONFIG)
    _out().print(f"wrote a token for {subject} ({', '.join(groups) or 'no groups'}) to {out}", highlight=False)


def _write_private(path: Path, text: str) -> None:
    """Created 0600 (never readable by others, not even for a moment); an existing file is
    made 0600 before it is overwritten. The folder is left as it is."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
