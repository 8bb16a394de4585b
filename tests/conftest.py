"""Session-wide fixtures: one local Ray per test session, started only by tests that need it.

Ray's processes listen on every interface and probe cloud-metadata addresses when they
start, so a test session that starts Ray must run inside a loopback-only network
namespace (`scripts/in-netns`, which `make test` uses). The fixture refuses to start Ray
anywhere else rather than let it reach beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from engine.api.client import LotwiseClient
from engine.bootstrap import RunningEngine, running_engine
from engine.settings import Settings
from tests.history_fixtures import process_chdb_dsn

TEST_DATA_DIR = Path(tempfile.gettempdir()) / "lotwise-tests" / f"pid-{os.getpid()}"


def only_loopback() -> bool:
    """True inside a fresh network namespace: `lo` is the only interface.

    (Not /sys/class/net: sysfs still shows the parent namespace unless remounted.)
    """
    return [name for _, name in socket.if_nameindex()] == ["lo"]


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    if not only_loopback() and os.environ.get("LOTWISE_NO_NETNS") != "1":
        pytest.fail(
            "tests that start Ray must run in a loopback-only network namespace: "
            "use `make test` or `scripts/in-netns .venv/bin/python -m pytest ...`"
        )
    import ray

    from engine.bootstrap import shutdown_ray, start_ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    start_ray(Settings(namespace="lotwise-tests", ray_num_cpus=2))
    assert ray.is_initialized()
    yield
    shutdown_ray()


def engine_settings(**overrides: object) -> Settings:
    """An engine on free ports, in a namespace and data dir of its own (its shards, its
    embedded nats-server and journal are its own)."""
    tag = uuid.uuid4().hex[:8]
    base: dict[str, object] = {
        "port": 0,
        "metrics_port": 0,
        "shards": 2,
        "namespace": f"t-{tag}",
        "sweep_interval_ms": 200,
        "data_dir": TEST_DATA_DIR / tag,
        # chDB opens one path per process: every engine of this test process shares it,
        # each in a database of its own (named after the engine's namespace).
        "history_dsn": process_chdb_dsn(TEST_DATA_DIR),
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def ray_engine(ray_session: None) -> AsyncIterator[RunningEngine]:
    """The real thing: Ray shard actors, the gateway and a gRPC server on a free port."""
    async with running_engine(engine_settings()) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def ray_client(ray_engine: RunningEngine) -> AsyncIterator[LotwiseClient]:
    async with LotwiseClient(ray_engine.grpc_address, timeout_s=30) as client:
        yield client
