"""Fixtures of the integration tier: real servers on 127.0.0.1, port 0, no Ray.

`local_gateway` runs the shards in this process on a ManualClock; `grpc_server` serves it
over a real grpc.aio server with its own metrics registry; `client` talks to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from engine import bootstrap
from engine.api.client import LotwiseClient, RetryPolicy
from engine.api.server import ApiMetrics, LotwiseServer, start_server
from engine.domain.clock import ManualClock
from engine.runtime.gateway import Gateway
from tests.nats_fixtures import nats_server  # noqa: F401 - a real nats-server, session-scoped


@pytest.fixture
def manual_clock() -> ManualClock:
    """Engine time the test moves by hand (hold TTLs, shelf life)."""
    return ManualClock()


@pytest_asyncio.fixture
async def local_gateway(manual_clock: ManualClock) -> AsyncIterator[Gateway]:
    """In-process shards; the background sweeper is off so tests decide when holds expire."""
    gateway = bootstrap.local_gateway(shards=2, clock=manual_clock, sweep_interval_ms=0)
    yield gateway
    await gateway.close()


@pytest.fixture
def metrics_registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest_asyncio.fixture
async def grpc_server(local_gateway: Gateway, metrics_registry: CollectorRegistry) -> AsyncIterator[LotwiseServer]:
    server, _ = await start_server(local_gateway, "127.0.0.1", 0, metrics=ApiMetrics(metrics_registry))
    yield server
    await server.stop(grace_s=1.0)


@pytest.fixture
def grpc_server_port(grpc_server: LotwiseServer) -> int:
    return grpc_server.port


@pytest_asyncio.fixture
async def client(grpc_server_port: int) -> AsyncIterator[LotwiseClient]:
    # Quick retries: tests that exercise them should not sleep for seconds.
    retry = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)
    async with LotwiseClient(f"127.0.0.1:{grpc_server_port}", timeout_s=10.0, retry=retry) as c:
        yield c
