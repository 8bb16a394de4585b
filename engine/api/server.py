"""The gRPC server: Inventory + health + reflection, metrics and access logs (DESIGN.md §7, §11).

Everything is bounded: concurrent RPCs and the commands they carry (beyond the limits the
door, engine.api.admission, answers RESOURCE_EXHAUSTED OVERLOADED with RetryInfo),
message sizes, and keepalive pings a client may send. `stop()` flips health to
NOT_SERVING first, so load balancers drain the server before its in-flight calls end.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from engine.api.admin import AdminGateway, AdminServicer
from engine.api.admission import (
    DEFAULT_MAX_RETRY_DELAY_MS,
    AdmissionInterceptor,
    AdmissionLimits,
    AdmissionMetrics,
    Door,
    core_channel_args,
)
from engine.api.errors import DEFAULT_RETRY_DELAY_MS
from engine.api.gen.lotwise.v1 import admin_pb2 as apb
from engine.api.registration import add_service
from engine.api.servicer import SERVICE_NAME, InventoryGateway, InventoryServicer, add_inventory_service
from engine.api.transfers import Guard, TransfersServicer

if TYPE_CHECKING:
    from engine.api.auth import ServerAuth
    from engine.api.health import HealthDesks
    from engine.api.history import HistoryServicer
    from engine.domain.deadletter_desk import DeadLetterDesk
    from engine.finance.service import FinanceDesk
    from engine.replenish.service import ReplenishService
    from engine.runtime.gateway.orgtree import OrgDesk
    from engine.runtime.gateway.transfers import TransferDesk

log = structlog.get_logger("lotwise.api")

HEALTH_SERVICE_NAME = health.SERVICE_NAME  # "grpc.health.v1.Health"
_QUIET_SERVICES = (HEALTH_SERVICE_NAME, reflection.SERVICE_NAME)  # probes: debug-level access logs

# Latency buckets from 250 µs to 10 s: the write path is ~1 ms, a loaded fan-out ~100 ms.
_LATENCY_BUCKETS_S = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Limits of one gRPC server; built from the settings object at start-up."""

    max_concurrent_rpcs: int = 2_048  # beyond it the door (engine.api.admission) answers RESOURCE_EXHAUSTED
    max_message_bytes: int = 4 * 1024 * 1024  # a 256-line hold or a 10k-row query fits easily
    keepalive_time_ms: int = 30_000  # ping idle connections so dead peers are found
    keepalive_timeout_ms: int = 10_000
    min_client_ping_interval_ms: int = 10_000  # clients pinging faster are told GOAWAY
    max_connection_age_ms: int = 0  # > 0: recycle connections so load spreads over new gateways
    retry_delay_ms: int = DEFAULT_RETRY_DELAY_MS  # RetryInfo sent with RESOURCE_EXHAUSTED / UNAVAILABLE

    def channel_args(self) -> list[tuple[str, Any]]:
        args: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", self.min_client_ping_interval_ms),
            ("grpc.http2.max_ping_strikes", 2),
            # Two servers must never share a port silently (SO_REUSEPORT would allow it).
            ("grpc.so_reuseport", 0),
        ]
        if self.max_connection_age_ms > 0:
            args.append(("grpc.max_connection_age_ms", self.max_connection_age_ms))
            args.append(("grpc.max_connection_age_grace_ms", self.keepalive_timeout_ms))
        return args


class ApiMetrics:
    """Prometheus metrics of the gRPC server. Pass a fresh CollectorRegistry in tests."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.requests = Counter(
            "lotwise_grpc_requests",
            "gRPC requests handled, by method and status code",
            ("method", "code"),
            registry=registry,
        )
        self.latency = Histogram(
            "lotwise_grpc_request_duration_seconds",
            "gRPC request latency, by method",
            ("method",),
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.in_flight = Gauge(
            "lotwise_grpc_requests_in_flight",
            "gRPC requests being served, by method",
            ("method",),
            registry=registry,
        )


@functools.cache
def default_metrics() -> ApiMetrics:
    """The process-wide metrics on prometheus_client's default registry (created once)."""
    return ApiMetrics(REGISTRY)


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Counts, times and logs every unary RPC (streams — health Watch, reflection — pass)."""

    def __init__(self, metrics: ApiMetrics) -> None:
        self._metrics = metrics
        # One wrapped handler per method, built once: this runs on every call.
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        wrapped = self._wrapped.get(handler_call_details.method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.lstrip("/")  # "lotwise.v1.Inventory/Reserve"
        wrapped = grpc.unary_unary_rpc_method_handler(
            self._observe(method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[handler_call_details.method] = wrapped
        return wrapped

    def _observe(self, method: str, behavior: Callable[[Any, Any], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        metrics = self._metrics
        quiet = method.startswith(_QUIET_SERVICES)
        in_flight = metrics.in_flight.labels(method)
        latency = metrics.latency.labels(method)

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            in_flight.inc()
            code = grpc.StatusCode.UNKNOWN
            try:
                response = await behavior(request, context)
                code = context.code() or grpc.StatusCode.OK
                return response
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED  # the caller went away or its deadline passed
                raise
            except BaseException:
                # An abort (a refusal) sets the code on the context before it raises.
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                elapsed_s = time.perf_counter() - started
                in_flight.dec()
                code_name = _code_name(code)
                metrics.requests.labels(method, code_name).inc()
                latency.observe(elapsed_s)
                # Successes are metered (above) and logged at debug; every refusal or failure
                # is logged at info, so the log stays readable at thousands of calls a second.
                (log.debug if quiet or code is grpc.StatusCode.OK else log.info)(
                    "rpc",
                    method=method,
                    code=code_name,
                    duration_ms=round(elapsed_s * 1000, 3),
                    peer=context.peer(),
                )

        return observed


def _code_name(code: grpc.StatusCode | int) -> str:
    # grpc.aio reports codes as StatusCode; be tolerant of raw ints from older versions.
    if isinstance(code, grpc.StatusCode):
        return code.name
    return next((c.name for c in grpc.StatusCode if c.value[0] == code), "UNKNOWN")


class LotwiseServer:
    """A started server: its bound port, health, and a graceful stop."""

    def __init__(self, server: grpc.aio.Server, port: int, health_servicer: health.aio.HealthServicer) -> None:
        self.server = server
        self.port = port
        self.health = health_servicer

    async def stop(self, grace_s: float = 5.0) -> None:
        """NOT_SERVING first (balancers drain), then let in-flight calls finish for grace_s."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        log.info("grpc server stopped", port=self.port)

    async def wait_for_termination(self, timeout_s: float | None = None) -> bool:
        return await self.server.wait_for_termination(timeout_s)


async def start_server(
    gateway: InventoryGateway,
    host: str = "127.0.0.1",
    port: int = 0,
    options: ServerOptions = ServerOptions(),
    *,
    metrics: ApiMetrics | None = None,
    credentials: grpc.ServerCredentials | None = None,
    admin: AdminGateway | None = None,
    history: HistoryServicer | None = None,
    dead_letters: DeadLetterDesk | None = None,
    admission: AdmissionLimits | None = None,
    admission_metrics: AdmissionMetrics | None = None,
    auth: ServerAuth | None = None,
    org: OrgDesk | None = None,
    transfers: TransferDesk | None = None,
    replenishment: ReplenishService | None = None,
    stock_health: HealthDesks | None = None,
    finance: FinanceDesk | None = None,
) -> tuple[LotwiseServer, int]:
    """Start lotwise.v1.Inventory (+ health, reflection) on host:port; port 0 picks a free one.

    Without `credentials` the port is plaintext, meant for 127.0.0.1 and behind a TLS proxy.
    With `admin`, lotwise.v1.Admin is served too (verify, shard stats, snapshots, pins);
    with `history`, lotwise.v1.History. Admin's
    dead-letter RPCs use `dead_letters` (None: they answer FAILED_PRECONDITION INGESTION_OFF).
    `admission` bounds what is admitted (default: options.max_concurrent_rpcs calls; see
    engine.api.admission); refusals are typed RESOURCE_EXHAUSTED OVERLOADED.
    With `auth`, every call but health and reflection needs a bearer token and is checked
    against the caller's grants (engine.api.auth, engine.api.authz); without it, none is.
    """
    # The desks act as the engine (system flows) on the unwrapped gateway; Guard checks the caller.
    guard = Guard(auth.authorizer if auth else None, transfers.gateway) if transfers is not None else None
    engine_gateway = gateway  # the engine's own reads (site org paths), before the caller's wrapping
    plain_gateway = gateway  # stock health checks grants itself and acts as the engine (like the desks)
    # ---- admission (issue 19): Lotwise, not gRPC core, decides which calls are refused ----
    limits = admission or AdmissionLimits(
        max_calls=options.max_concurrent_rpcs,
        min_retry_delay_ms=options.retry_delay_ms,
        max_retry_delay_ms=max(options.retry_delay_ms, DEFAULT_MAX_RETRY_DELAY_MS),
    )
    interceptors: list[grpc.aio.ServerInterceptor] = [
        # The door first: a refused call costs only the check, and is metered and logged there.
        AdmissionInterceptor(Door(limits), admission_metrics),
        ObservabilityInterceptor(metrics or default_metrics()),
    ]
    if auth is not None:
        # Authentication before the door: a call without a valid token is refused for a
        # cache lookup and never takes a slot the door keeps for real callers.
        interceptors.insert(0, auth.interceptor())
        gateway, admin, history, dead_letters = _authorizing(auth, gateway, admin, history, dead_letters)
    server = grpc.aio.server(
        interceptors=interceptors,
        options=options.channel_args() + core_channel_args(limits),
        maximum_concurrent_rpcs=None,  # the door bounds calls, with typed refusals
    )
    # ---- end admission ----
    add_inventory_service(InventoryServicer(gateway, retry_delay_ms=options.retry_delay_ms), server)
    services = [SERVICE_NAME]
    if admin is not None:
        org_desk = None if org is None or guard is None else (org, guard)
        servicer = AdminServicer(admin, retry_delay_ms=options.retry_delay_ms, dead_letters=dead_letters, org=org_desk)
        services.append(add_service(apb, "Admin", servicer, server))
    if transfers is not None and guard is not None:
        from engine.api.gen.lotwise.v1 import transfers_pb2 as tpb

        xfer = TransfersServicer(transfers, guard, retry_delay_ms=options.retry_delay_ms)
        services.append(add_service(tpb, "Transfers", xfer, server))
    if replenishment is not None:
        from engine.api.gen.lotwise.v1 import replenishment_pb2 as rpb
        from engine.api.replenishment import ReplenishmentServicer, SiteGuard

        site_guard = SiteGuard(auth.authorizer if auth else None, engine_gateway)
        plan = ReplenishmentServicer(replenishment, site_guard, retry_delay_ms=options.retry_delay_ms)
        services.append(add_service(rpb, "Replenishment", plan, server))
    if stock_health is not None:
        from engine.api.health import add_health_services

        authorizer = auth.authorizer if auth else None
        services += add_health_services(
            server, stock_health, authorizer, plain_gateway, retry_delay_ms=options.retry_delay_ms
        )
    if finance is not None:  # lotwise.v1.Accounting (issue 16): vouchers, valuation, terms, exports
        from engine.api.finance import AccountingServicer, FinanceGuard
        from engine.api.gen.lotwise.v1 import finance_pb2 as fpb

        accounting = AccountingServicer(
            finance, FinanceGuard(auth.authorizer if auth else None), retry_delay_ms=options.retry_delay_ms
        )
        services.append(add_service(fpb, "Accounting", accounting, server))
    if history is not None:
        from engine.api.history import add_history_service

        services.append(add_history_service(server, history))
    from engine.api.auth import IdentityServicer
    from engine.api.gen.lotwise.v1 import identity_pb2 as ipb

    services.append(add_service(ipb, "Identity", IdentityServicer(auth is not None), server))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*services, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server)

    address = f"{host}:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"could not bind gRPC server to {address}")
    await server.start()
    for service in ("", *services):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("grpc server started", host=host, port=bound, services=services)
    return LotwiseServer(server, bound, health_servicer), bound


def _authorizing(
    auth: ServerAuth,
    gateway: InventoryGateway,
    admin: AdminGateway | None,
    history: HistoryServicer | None,
    dead_letters: DeadLetterDesk | None,
) -> tuple[Any, Any, HistoryServicer | None, Any]:
    """The engine's parts as the caller of each RPC may see and touch them."""
    from engine.api.authz import AdminOnly, AuthorizingGateway, ScopedHistory
    from engine.api.history import HistoryServicer

    guarded = AuthorizingGateway(gateway, auth.authorizer)
    guarded_admin = (
        guarded if admin is gateway else (None if admin is None else AuthorizingGateway(admin, auth.authorizer))
    )
    if history is not None:
        history = HistoryServicer(
            ScopedHistory(history.store, guarded, auth.authorizer), history.sink, retry_delay_ms=history.retry_delay_ms
        )
    desk = None if dead_letters is None else AdminOnly(dead_letters, guarded, "dead-letters")
    return guarded, guarded_admin, history, desk


@dataclass(frozen=True, slots=True)
class MetricsEndpoint:
    """The /metrics HTTP endpoint (a daemon thread); `stop()` frees the port."""

    port: int
    _httpd: Any

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def start_metrics_http(
    port: int = 0, registry: CollectorRegistry = REGISTRY, addr: str = "127.0.0.1"
) -> MetricsEndpoint:
    """Expose `registry` at http://addr:port/metrics; port 0 picks a free one."""
    httpd, _thread = start_http_server(port, addr=addr, registry=registry)
    bound = httpd.server_port
    log.info("metrics endpoint started", addr=addr, port=bound)
    return MetricsEndpoint(bound, httpd)
