"""HTTP/JSON against the real engine (Ray shards, NATS journal, chDB history, Envoy), as the
test fixtures start it: every method of every service in the descriptor set answers over
HTTP, and `lotwise up` serves, names and stops its HTTP gateway (or says why it cannot)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from engine.bootstrap import RunningEngine
from engine.bootstrap.http import DESCRIPTOR
from tests.conftest import TEST_ADMIN_TOKEN, TEST_DATA_DIR
from tests.http_client import http

pytestmark = pytest.mark.ray  # async tests run on the session loop (asyncio_default_test_loop_scope)

# Calls that would change the shared engine for the other tests in ways they do not expect.
_NOT_WITH_EMPTY_BODIES = {"lotwise.v1.Admin/Snapshot", "lotwise.v1.Admin/Verify"}


def every_method() -> list[tuple[str, str, bool]]:
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR.read_bytes())
    return [
        (f"{f.package}.{s.name}", m.name, m.client_streaming)
        for f in fds.file
        if f.package == "lotwise.v1"
        for s in f.service
        for m in s.method
    ]


def test_the_descriptor_has_every_service_the_server_registers() -> None:
    services = {s for s, _, _ in every_method()}
    assert {"lotwise.v1.Inventory", "lotwise.v1.Admin", "lotwise.v1.History", "lotwise.v1.Identity"} <= services
    assert "lotwise.v1.Transfers" in services


async def test_every_method_of_every_service_answers_over_http(ray_engine: RunningEngine) -> None:
    assert ray_engine.http_url, "the fixtures' engine runs the HTTP gateway"
    answered: dict[str, int] = {}
    for service, method, streaming in every_method():
        path = f"/{service}/{method}"
        if path.lstrip("/") in _NOT_WITH_EMPTY_BODIES:
            body: object = {"request_id": "probe"}
        else:
            body = [] if streaming else {}
        answer = await http(ray_engine.http_url, "POST", path, body, token=TEST_ADMIN_TOKEN, timeout_s=60)
        # Reached the engine's servicer: an answer, or the engine's own refusal of an empty
        # request (a google.rpc.Status, e.g. 404 NOT_FOUND for an empty id), as JSON; never
        # Envoy's "no such route" (404 in plain text) nor UNIMPLEMENTED (501).
        assert answer.content_type.startswith("application/json"), (path, answer)
        assert answer.status != 501, (path, answer)
        if answer.status != 200:
            assert answer.json()["code"] not in (2, 12, 13), (path, answer)  # UNKNOWN, UNIMPLEMENTED, INTERNAL
        answered[path] = answer.status
    assert len(answered) == len(every_method())
    assert answered["/lotwise.v1.Identity/WhoAmI"] == 200
    assert answered["/lotwise.v1.Inventory/ListSkus"] == 200
    assert answered["/lotwise.v1.History/GetSinkStatus"] == 200


async def test_rest_routes_reach_the_real_engine(ray_engine: RunningEngine) -> None:
    base, tag = ray_engine.http_url, f"h{time.monotonic_ns() % 10**9}"
    sku, site = f"GLU-{tag}", f"FW-{tag}"
    assert (await http(base, "PUT", f"/v1/skus/{sku}", {"sku": {}}, token=TEST_ADMIN_TOKEN)).status == 200
    assert (await http(base, "PUT", f"/v1/sites/{site}", {"site": {}}, token=TEST_ADMIN_TOKEN)).status == 200
    receipt = {"request_id": f"{tag}-r", "lot_id": "L1", "qty": "5", "status": "available"}
    received = await http(base, "POST", f"/v1/sites/{site}/skus/{sku}:receive", receipt, token=TEST_ADMIN_TOKEN)
    assert received.status == 200, received
    hold = {"request_id": f"{tag}-h", "lines": [{"sku": sku, "site": site, "qty": "2"}], "ttl_ms": "60000"}
    reserved = await http(base, "POST", "/v1/holds", hold, token=TEST_ADMIN_TOKEN)
    hold_id = reserved.json()["hold"]["hold_id"]
    done = await http(base, "POST", f"/v1/holds/{hold_id}:commit", {"request_id": f"{tag}-c"}, token=TEST_ADMIN_TOKEN)
    assert done.json()["committed_qty"] == "2"
    left = await http(base, "GET", f"/v1/sites/{site}/skus/{sku}/availability", token=TEST_ADMIN_TOKEN)
    assert left.json()["available"] == "3"
    listed = await http(base, "GET", f"/v1/holds?site={site}", token=TEST_ADMIN_TOKEN)
    assert [h["hold_id"] for h in listed.json()["holds"]] == [hold_id]


def _up(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    args = ["--port", "0", "--metrics-port", "0", "--journal", "memory", "--shards", "1", "--ray-num-cpus", "1"]
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "up", *args, "--data-dir", str(data_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "LOTWISE_LOG_LEVEL": "warning", **(env or {})},
    )


def _where_http(data_dir: Path, deadline_s: float = 120) -> str:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = data_dir / "engine.json"
        if found.exists():
            return str(json.loads(found.read_text()).get("http", ""))
        time.sleep(0.2)
    raise AssertionError("lotwise up wrote no engine.json")


async def test_lotwise_up_serves_names_and_stops_its_http_gateway(ray_session: None) -> None:
    data_dir = TEST_DATA_DIR / f"up-http-{os.getpid()}"
    proc = _up(data_dir)
    try:
        url = await asyncio.to_thread(_where_http, data_dir)
        assert url.startswith("http://127.0.0.1:")
        assert (await http(url, "GET", "/healthz")).status == 200
        where = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "engine.cli", "where", "--http", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert where.stdout.strip() == url
    finally:
        proc.terminate()
        out, _ = await asyncio.to_thread(proc.communicate, timeout=90)
    assert proc.returncode == 0, out
    assert "curl -s" in out  # the `try` lines name the HTTP address
    assert url in out
    with pytest.raises(urllib.error.URLError):
        await http(url, "GET", "/healthz", timeout_s=2)  # Envoy went down with the engine


async def test_lotwise_up_without_http_and_with_its_port_taken(ray_session: None) -> None:
    data_dir = TEST_DATA_DIR / f"up-nohttp-{os.getpid()}"
    proc = _up(data_dir, env={"LOTWISE_HTTP": "off"})
    try:
        assert await asyncio.to_thread(_where_http, data_dir) == ""
    finally:
        proc.terminate()
        out, _ = await asyncio.to_thread(proc.communicate, timeout=90)
    assert "off (LOTWISE_HTTP=off)" in out
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = _up(data_dir, "--http-port", str(taken.getsockname()[1]))
        out, _ = await asyncio.to_thread(busy.communicate, timeout=60)
    assert busy.returncode == 2, out
    assert "--http-port" in out
