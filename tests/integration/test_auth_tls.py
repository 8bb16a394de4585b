"""TLS on the gRPC port end to end (trustme certificates, real grpc.aio on 127.0.0.1):
server-only TLS, client certificates required when a client CA is set, and refusals of
plaintext, untrusted servers and clients without a certificate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
import trustme
from prometheus_client import CollectorRegistry

from adapters.auth.files import WatchedFile, load_secret, write_private
from engine.api.auth import AuthMetrics, Authorizer, ServerAuth, TokenSettings, TokenVerifier, mint_token
from engine.api.client import LotwiseClient, RetryPolicy
from engine.api.server import ApiMetrics, start_server
from engine.bootstrap.auth import DEFAULT_POLICY, server_credentials
from engine.bootstrap.config import SettingsProblem
from engine.domain.errors import Unavailable
from engine.domain.grants import parse_policy
from engine.runtime.gateway import Gateway
from tests.conftest import engine_settings

SECRET = b"s" * 40


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def server_files(tmp_path: Path, ca: trustme.CA, *, client_ca: bool) -> dict[str, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"tls_cert_file": tmp_path / "server.pem", "tls_key_file": tmp_path / "server.key"}
    cert.cert_chain_pems[0].write_to_path(str(files["tls_cert_file"]))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(files["tls_cert_file"]), append=True)
    cert.private_key_pem.write_to_path(str(files["tls_key_file"]))
    if client_ca:
        files["tls_client_ca_file"] = tmp_path / "clients-ca.pem"
        ca.cert_pem.write_to_path(str(files["tls_client_ca_file"]))
    return files


def server_auth(tmp_path: Path) -> ServerAuth:
    write_private(tmp_path / "signing.key", SECRET)
    verifier = TokenVerifier([WatchedFile(tmp_path / "signing.key", load_secret)], TokenSettings())
    policy = parse_policy(DEFAULT_POLICY, "default")
    return ServerAuth(verifier, Authorizer(lambda: policy, AuthMetrics(CollectorRegistry())))


async def serve(tmp_path: Path, gateway: Gateway, files: dict[str, Path]) -> tuple[object, str]:
    credentials = server_credentials(engine_settings(**files))
    assert credentials is not None
    server, port = await start_server(
        gateway,
        "127.0.0.1",
        0,
        metrics=ApiMetrics(CollectorRegistry()),
        credentials=credentials,
        auth=server_auth(tmp_path),
    )
    return server, f"127.0.0.1:{port}"


@pytest_asyncio.fixture
async def tls_server(tmp_path: Path, ca: trustme.CA, local_gateway: Gateway) -> AsyncIterator[str]:
    server, address = await serve(tmp_path, local_gateway, server_files(tmp_path, ca, client_ca=False))
    yield address
    await server.stop(1.0)  # type: ignore[attr-defined]


@pytest_asyncio.fixture
async def mtls_server(tmp_path: Path, ca: trustme.CA, local_gateway: Gateway) -> AsyncIterator[str]:
    server, address = await serve(tmp_path, local_gateway, server_files(tmp_path, ca, client_ca=True))
    yield address
    await server.stop(1.0)  # type: ignore[attr-defined]


def client(address: str, credentials: grpc.ChannelCredentials | None) -> LotwiseClient:
    return LotwiseClient(
        address,
        credentials=credentials,
        token=mint_token(SECRET, "root", ["admin"]),
        retry=RetryPolicy(max_attempts=1),
        timeout_s=5,
    )


async def test_tls_with_a_token_works_end_to_end(tls_server: str, ca: trustme.CA) -> None:
    async with client(tls_server, grpc.ssl_channel_credentials(ca.cert_pem.bytes())) as c:
        assert await c.list_sites() == []


async def test_the_ca_file_from_the_environment_is_trusted(
    tls_server: str, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("LOTWISE_TLS_CA_FILE", str(tmp_path / "ca.pem"))
    async with client(tls_server, None) as c:
        assert await c.list_sites() == []


async def test_plaintext_and_untrusted_clients_cannot_talk_to_a_tls_port(tls_server: str) -> None:
    async with client(tls_server, None) as c:
        with pytest.raises(Unavailable):
            await c.list_sites()
    untrusted = grpc.ssl_channel_credentials(trustme.CA().cert_pem.bytes())
    async with client(tls_server, untrusted) as c:
        with pytest.raises(Unavailable):
            await c.list_sites()


async def test_client_certificates_are_required_when_a_client_ca_is_set(mtls_server: str, ca: trustme.CA) -> None:
    async with client(mtls_server, grpc.ssl_channel_credentials(ca.cert_pem.bytes())) as c:
        with pytest.raises(Unavailable):
            await c.list_sites()
    device = ca.issue_cert("cabinet-17@lotwise")
    with_cert = grpc.ssl_channel_credentials(
        ca.cert_pem.bytes(), device.private_key_pem.bytes(), device.cert_chain_pems[0].bytes()
    )
    async with client(mtls_server, with_cert) as c:
        assert await c.list_sites() == []


def test_tls_settings_must_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(SettingsProblem):
        server_credentials(engine_settings(tls_cert_file=tmp_path / "x.pem"))
    with pytest.raises(SettingsProblem):
        server_credentials(engine_settings(tls_client_ca_file=tmp_path / "ca.pem"))
    assert server_credentials(engine_settings()) is None
