"""Settings for the CLI's own commands: from the environment (LOTWISE_*, .env) with the
flags on top, checked in full before anything starts, every problem named by the flag or
the environment variable the user set (`lotwise up`, `lotwise demo`, `lotwise token`)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from engine.cli.common import EXIT_CONFIG, ConfigError, fail

if TYPE_CHECKING:
    from engine.settings import Settings


# ---- configuration --------------------------------------------------------------------

# CLI flag of each settings field that has one, so an error names what the user typed.
_FLAGS = {
    "host": "--host",
    "port": "--port",
    "metrics_port": "--metrics-port",
    "shards": "--shards",
    "ray_address": "--ray-address",
    "namespace": "--namespace",
    "ray_num_cpus": "--ray-num-cpus",
    "status_dictionary": "--status-dictionary",
    "log_level": "--log-level",
    "log_format": "--log-format",
    "journal": "--journal",
    "nats_url": "--nats-url",
    "data_dir": "--data-dir",
    "http_port": "--http-port",
    "http": "--http/--no-http",
}


def build_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from the environment (LOTWISE_*, .env) with CLI flags on top, checked in full.

    Field types and ranges, and the status dictionary (readable, well-formed), are checked
    here, so a bad value is a one-line error naming the field — not a traceback ten seconds
    into a Ray start. (`check_can_listen` checks the ports.)
    """
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from engine.bootstrap.config import SettingsProblem, check_settings
    from engine.settings import Settings, retired_in

    given = {name: value for name, value in overrides.items() if value is not None}
    retired = retired_in(os.environ)
    if retired:
        (name, why), rest = retired[0], retired[1:]
        raise ConfigError(name, f"no longer a setting: {why}", [f"{n}: no longer a setting: {w}" for n, w in rest])
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        problems = [
            (
                field_label(".".join(str(p) for p in e["loc"]) or "settings", given),
                f"{e['msg']} (got {e.get('input')!r})",
            )
            for e in exc.errors()
        ]
        (label, message), rest = problems[0], problems[1:]
        raise ConfigError(label, message, [f"{f}: {m}" for f, m in rest]) from None
    except SettingsError as exc:  # e.g. an env var that is not valid for its type
        raise ConfigError("settings", str(exc)) from None
    try:
        check_settings(settings)  # the files it names (status dictionary, ingestion map)
    except SettingsProblem as exc:
        raise ConfigError(field_label(exc.field, given), exc.message) from None
    return settings


def field_label(field: str, given: dict[str, Any]) -> str:
    env = f"LOTWISE_{field.upper()}"
    flag = _FLAGS.get(field)
    return f"{field} ({flag})" if flag and given.get(field) is not None else f"{field} ({env})"


def check_can_listen(host: str, port: int, host_field: str, port_field: str) -> None:
    """Fail fast when the host is not an address of this machine or the port is taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(host_field, f"cannot resolve {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)  # port 0 binds anywhere: then only the host is checked
        except OSError as exc:
            field = port_field if exc.errno == errno.EADDRINUSE else host_field
            raise ConfigError(field, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def config_errors() -> Iterator[None]:
    try:
        yield
    except ConfigError as exc:
        fail([f"invalid configuration: {exc}", *exc.more], EXIT_CONFIG)
