"""How the engine serves its console (no Ray: shards in this process): on by default on a
port of its own, off with LOTWISE_CONSOLE=off, a busy port is a clear start-up error, and the
bound on requests in progress answers 503 at once instead of queueing."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
import trustme

from engine.bootstrap import local_gateway, running_engine
from engine.settings import Settings
from tests.conftest import engine_settings


def in_process(**overrides: object) -> Settings:
    return engine_settings(journal="memory", history=False, ingest=False, events=False, **overrides)


@pytest.mark.asyncio(loop_scope="session")
async def test_the_console_is_on_by_default_and_names_its_url() -> None:
    gateway = local_gateway()
    try:
        async with running_engine(in_process(), gateway=gateway) as engine:
            assert engine.console_url.startswith("http://127.0.0.1:")
            async with httpx.AsyncClient(base_url=engine.console_url) as http:
                assert (await http.get("/healthz")).text == "ok"
                login = await http.get("/login")
                assert login.status_code == 200
                assert "/static/htmx-2.0.11.min.js" in login.text
                script = await http.get("/static/htmx-2.0.11.min.js")
                assert script.status_code == 200
                assert "htmx" in script.text[:200]  # vendored: served by the console itself
    finally:
        await gateway.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_console_off_serves_none() -> None:
    gateway = local_gateway()
    try:
        async with running_engine(in_process(console=False), gateway=gateway) as engine:
            assert engine.console_url == ""
    finally:
        await gateway.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_the_console_stays_off_when_the_grpc_port_demands_client_certificates(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"tls_cert_file": tmp_path / "server.pem", "tls_key_file": tmp_path / "server.key"}
    cert.cert_chain_pems[0].write_to_path(str(files["tls_cert_file"]))
    cert.private_key_pem.write_to_path(str(files["tls_key_file"]))
    ca.cert_pem.write_to_path(str(tmp_path / "clients-ca.pem"))
    gateway = local_gateway()
    try:
        settings = in_process(**files, tls_client_ca_file=tmp_path / "clients-ca.pem")
        async with running_engine(settings, gateway=gateway) as engine:
            assert engine.console_url == ""  # it could present no certificate: off, and logged
    finally:
        await gateway.close()


def test_console_is_read_as_on_or_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTWISE_CONSOLE", "off")
    assert Settings().console is False
    monkeypatch.setenv("LOTWISE_CONSOLE", "on")
    assert Settings().console is True


@pytest.mark.asyncio(loop_scope="session")
async def test_a_busy_console_port_stops_the_start_with_its_reason() -> None:
    gateway = local_gateway()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            with pytest.raises(OSError, match=f"console: cannot listen on 127.0.0.1:{port}"):
                async with running_engine(in_process(console_port=port), gateway=gateway):
                    pass
        finally:
            await gateway.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_requests_beyond_the_bound_get_503_at_once() -> None:
    gateway = local_gateway()
    try:
        settings = in_process(console_max_concurrency=1)
        async with (
            running_engine(settings, gateway=gateway) as engine,
            httpx.AsyncClient(base_url=engine.console_url) as first,
            httpx.AsyncClient(base_url=engine.console_url) as second,
        ):
            assert (await first.get("/healthz")).status_code == 200  # its connection stays open
            assert (await second.get("/healthz")).status_code == 503
    finally:
        await gateway.close()
