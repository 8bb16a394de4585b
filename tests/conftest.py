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

import grpc
import pytest
import pytest_asyncio

from engine.api.client import LotwiseClient
from engine.bootstrap import RunningEngine, running_engine
from engine.settings import Settings
from tests.history_fixtures import process_chdb_dsn

TEST_DATA_DIR = Path(tempfile.gettempdir()) / "lotwise-tests" / f"pid-{os.getpid()}"


def _test_credentials() -> tuple[Path, str]:
    """One signing secret and one admin token for the whole test session, in the environment:
    every engine a test starts (in process or `lotwise up` in a subprocess) verifies with the
    secret (LOTWISE_AUTH_SECRET_FILE) and every client, CLI and grpcurl call sends the token
    (LOTWISE_TOKEN), exactly as a user's shell would after `lotwise up`. Auth stays on."""
    from adapters.auth.files import ensure_secret, write_private
    from engine.api.auth import mint_token

    secret_file = TEST_DATA_DIR / "auth" / "signing.key"
    ensure_secret(secret_file)
    token = mint_token(secret_file.read_bytes().strip(), "admin", ["admin"], ttl_s=7 * 86_400)
    write_private(TEST_DATA_DIR / "auth" / "admin.token", token.encode())
    os.environ["LOTWISE_AUTH_SECRET_FILE"] = str(secret_file)
    os.environ["LOTWISE_TOKEN"] = token
    return secret_file, token


TEST_SECRET_FILE, TEST_ADMIN_TOKEN = _test_credentials()
# Every engine a test starts serves its web console on a free port (never the fixed default).
os.environ.setdefault("LOTWISE_CONSOLE_PORT", "0")
AUTH_METADATA = (("authorization", f"Bearer {TEST_ADMIN_TOKEN}"),)


class _BearerInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds the test admin token to raw stubs' calls (what LotwiseClient does by itself)."""

    async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        metadata = grpc.aio.Metadata(*(list(details.metadata or ()) + list(AUTH_METADATA)))
        return await continuation(details._replace(metadata=metadata), request)


def authed_channel(address: str) -> grpc.aio.Channel:
    """A plaintext channel whose unary calls carry the test admin token."""
    return grpc.aio.insecure_channel(address, interceptors=[_BearerInterceptor()])


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
