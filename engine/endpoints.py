"""Where a running engine listens: `<data_dir>/engine.json`, written by `lotwise up`.

The engine picks free ports when asked to (port 0, the embedded nats-server always), so
a client cannot guess them. `lotwise up` writes the addresses it actually got to the data
directory once it serves, and removes the file when it stops cleanly; client commands,
`lotwise where` and the README's examples read it. The file is written atomically
(a temporary file renamed over it), so a reader never sees half of it.

Pure: files and JSON only, no engine imports.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ENDPOINTS_FILE = "engine.json"
DEFAULT_DATA_DIR = Path(".data")
DATA_DIR_ENV = "LOTWISE_DATA_DIR"  # the same variable `lotwise up` reads its data dir from
FORMAT_VERSION = 1


class EndpointsError(Exception):
    """engine.json exists but cannot be used (unreadable, not JSON, missing a field)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The addresses of one running engine; "" where a service is off or not embedded."""

    grpc: str  # host:port clients dial
    metrics: str = ""  # http://host:port/metrics
    nats: str = ""  # nats://host:port of the journal's NATS (embedded or external)
    pid: int = 0  # the `lotwise up` process
    token_file: str = ""  # the admin token `lotwise up` wrote (0600); "" when auth is off
    console: str = ""  # http://host:port/ of the web console; "" when it is off

    def to_json(self) -> str:
        return json.dumps({"version": FORMAT_VERSION, **asdict(self)}, indent=2) + "\n"


def data_dir_from_env() -> Path:
    """The data dir `lotwise up` uses when given no `--data-dir`: LOTWISE_DATA_DIR, else .data."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def endpoints_path(data_dir: Path) -> Path:
    return data_dir / ENDPOINTS_FILE


def write_endpoints(data_dir: Path, endpoints: Endpoints) -> Path:
    """Write engine.json atomically: a reader sees the old file, no file, or the new one."""
    data_dir.mkdir(parents=True, exist_ok=True)
    target = endpoints_path(data_dir)
    fd, tmp = tempfile.mkstemp(prefix=".engine.", suffix=".json", dir=data_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(endpoints.to_json())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_endpoints(data_dir: Path) -> Endpoints | None:
    """The endpoints in `data_dir`, or None when no engine wrote any there."""
    path = endpoints_path(data_dir)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EndpointsError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise EndpointsError(path, f"not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("grpc"), str) or not data["grpc"]:
        raise EndpointsError(path, "no gRPC address in it")
    return Endpoints(
        grpc=data["grpc"],
        metrics=str(data.get("metrics", "")),
        nats=str(data.get("nats", "")),
        pid=int(data.get("pid", 0)),
        token_file=str(data.get("token_file", "")),
        console=str(data.get("console", "")),
    )


def remove_endpoints(data_dir: Path, endpoints: Endpoints | None = None) -> None:
    """Remove engine.json on a clean stop. Given `endpoints`, only if the file still names
    them: a second engine started on the same data dir since then keeps its file."""
    if endpoints is not None:
        try:
            current = read_endpoints(data_dir)
        except EndpointsError:
            current = None
        if current != endpoints:
            return
    endpoints_path(data_dir).unlink(missing_ok=True)


def find_engine(data_dir: Path | None = None) -> Endpoints:
    """The running engine of `data_dir` (default: LOTWISE_DATA_DIR, else .data), for scripts
    and examples: `LotwiseClient(find_engine().grpc)`, `nats.connect(find_engine().nats)`."""
    where = data_dir if data_dir is not None else data_dir_from_env()
    found = read_endpoints(where)
    if found is None:
        raise EndpointsError(
            endpoints_path(where), "no engine has written its addresses here (is `lotwise up` running?)"
        )
    return found


# The address a client tries when neither --target, LOTWISE_TARGET nor engine.json names one
# (`lotwise up`'s default port).
FALLBACK_TARGET = "127.0.0.1:50051"


@dataclass(frozen=True, slots=True)
class Target:
    """The engine a client command dials, and where that address came from (for errors)."""

    address: str
    source: str


def resolve_target(given: str, data_dir: Path | None = None) -> Target:
    """--target / LOTWISE_TARGET when given, else the engine.json of the data dir, else the
    default port. An unusable engine.json is an error, not a silent fallback."""
    if given:
        return Target(given, "--target / LOTWISE_TARGET")
    where = data_dir if data_dir is not None else data_dir_from_env()
    found = read_endpoints(where)
    if found is not None:
        stale = "" if found.pid <= 0 or _alive(found.pid) else f", left by pid {found.pid}, which is no longer running"
        return Target(found.grpc, f"{endpoints_path(where)}{stale}")
    return Target(FALLBACK_TARGET, f"the default; no {endpoints_path(where)}")


def _alive(pid: int) -> bool:
    """Whether a process `pid` exists (an engine killed with SIGKILL leaves its file behind)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


# ---- credentials -----------------------------------------------------------------------

TOKEN_ENV = "LOTWISE_TOKEN"  # a bearer token itself
TOKEN_FILE_ENV = "LOTWISE_TOKEN_FILE"  # a file holding one
TLS_CA_ENV = "LOTWISE_TLS_CA_FILE"  # a PEM CA a client trusts for the engine's TLS port
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0"})


def resolve_token(target: str, token_file: Path | None = None, data_dir: Path | None = None) -> str:
    """The bearer token for `target`: `token_file`, else LOTWISE_TOKEN, else LOTWISE_TOKEN_FILE,
    else the token file engine.json names when that engine is `target`; "" when none.
    engine.json's token is never sent to another address than the one it describes."""
    if token_file is not None:
        return _read_token(token_file)
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    if os.environ.get(TOKEN_FILE_ENV):
        return _read_token(Path(os.environ[TOKEN_FILE_ENV]))
    where = data_dir if data_dir is not None else data_dir_from_env()
    try:
        found = read_endpoints(where)
    except EndpointsError:
        return ""
    if found is None or not found.token_file or not _same_engine(target, found.grpc):
        return ""
    try:
        return _read_token(Path(found.token_file))
    except EndpointsError:
        return ""


def _read_token(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise EndpointsError(path, f"cannot read the token file: {exc.strerror or exc}") from None


def _same_engine(target: str, published: str) -> bool:
    if not target or target == published:
        return True
    host, _, port = target.rpartition(":")
    their_host, _, their_port = published.rpartition(":")
    return port == their_port and host in _LOOPBACK and their_host in _LOOPBACK
