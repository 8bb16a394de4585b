"""The web console's wiring: settings → a channel to the engine's own gRPC port → the
Starlette app → uvicorn, in the engine's event loop, on 127.0.0.1 by default.

The console dials the public gRPC port like any client (never the gateway behind it), so
authentication, grants and admission treat its pages exactly as the reader's own calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import structlog
import uvicorn

from engine.console.api import EngineApi, channel_to
from engine.console.app import console_app
from engine.settings import Settings

log = structlog.get_logger("lotwise.console")

STOP_TIMEOUT_S = 5.0


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: `lotwise up` owns Ctrl-C and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(slots=True)
class ConsoleRuntime:
    url: str
    api: EngineApi
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), STOP_TIMEOUT_S)
        except TimeoutError:
            self.server.force_exit = True
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        await self.api.close()
        log.info("console stopped", url=self.url)


def _dial_address(grpc_address: str) -> str:
    """Where the console dials the engine: a wildcard listen address is reached on loopback."""
    host, _, port = grpc_address.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"


def _credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS to the gRPC port when it serves TLS: its own certificate chain is what we trust."""
    if settings.tls_cert_file is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates=settings.tls_cert_file.read_bytes())


def _bind(host: str, port: int) -> socket.socket:
    """The console's listening socket, bound here so that a busy port is our clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"console: cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock


async def start_console(settings: Settings, grpc_address: str) -> ConsoleRuntime | None:
    """Serve the console; returns once it accepts connections. None when the gRPC port
    demands client certificates: the console has none to present, so it stays off (logged)."""
    if settings.tls_client_ca_file is not None:
        log.warning(
            "console off: the gRPC port requires client certificates (LOTWISE_TLS_CLIENT_CA_FILE), "
            "which the console cannot present; set LOTWISE_CONSOLE=off to silence this"
        )
        return None
    api = EngineApi(channel_to(_dial_address(grpc_address), _credentials(settings)))
    sock = _bind(settings.host, settings.console_port)
    config = uvicorn.Config(
        console_app(api),
        log_config=None,  # structlog lines from the app; uvicorn's own loggers keep the root config
        access_log=False,  # the app logs every request as one structured line
        lifespan="off",
        server_header=False,
        # Beyond the bound: 503 at once, never an unbounded queue. uvicorn counts the connection
        # asking too, so N + 1 lets exactly N be served at a time.
        limit_concurrency=settings.console_max_concurrency + 1,
        backlog=settings.console_max_concurrency,
        timeout_keep_alive=5,
    )
    server = _QuietServer(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            sock.close()
            await api.close()
            task.result()  # its exception, if any
            raise RuntimeError("console: the HTTP server stopped while starting")
        await asyncio.sleep(0.01)
    host, port = sock.getsockname()[:2]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    log.info("console started", url=url, max_concurrency=settings.console_max_concurrency)
    return ConsoleRuntime(url, api, server, task)
