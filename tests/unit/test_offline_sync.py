"""Offline store sync inside the cell: a device's ops apply exactly once however late or
often they come, with their own time as business time (issue 15 item 6)."""

from __future__ import annotations

from engine.domain.commands import Consume, Consumed, DeviceOp, DeviceOpDone, Receive, Received
from engine.domain.errors import InvalidArgument
from engine.domain.ledger import replay, same_balances
from engine.domain.state import export_cell, import_cell
from tests.unit.conftest import DAY_MS, HOUR_MS, SITE, SKU, CellDriver, key, violated_fields


def op(device: str, seq: int, at_ms: int, cmd: Receive | Consume, upload: int = 1) -> DeviceOp:
    """A device op as the upload number `upload` sends it (a replay inside the window, with
    the same request id, gets the first answer; these tests show the watermark)."""
    return DeviceOp(f"{device}:{seq}:u{upload}", SKU, SITE, device, seq, at_ms, cmd)


def test_a_device_op_applies_once_beyond_the_idempotency_window(driver: CellDriver) -> None:
    driver.receive("L1", 10)
    log = driver.drain()
    sold_at = driver.now_ms - 3 * HOUR_MS  # sold offline three hours ago
    first = driver.run(op("POS-1", 1, sold_at, Consume("", SKU, SITE, 4)))
    assert isinstance(first, DeviceOpDone)
    assert (first.already_applied, isinstance(first.reply, Consumed)) == (False, True)
    [m] = driver.drain()
    log.append(m)
    assert (m.business_at_ms, m.at_ms) == (sold_at, driver.now_ms)
    driver.advance(2 * DAY_MS)  # far past the 15-minute window
    again = driver.run(DeviceOp("POS-1:1-retry", SKU, SITE, "POS-1", 1, sold_at, Consume("", SKU, SITE, 4)))
    assert again == DeviceOpDone(1, True)
    assert driver.drain() == []
    assert driver.qty(key("L1")) == 6
    assert same_balances(replay(log), driver.ledger)


def test_devices_have_their_own_watermarks_and_a_refusal_is_final(driver: CellDriver) -> None:
    refused = driver.run(op("POS-1", 1, 0, Receive("", SKU, SITE, "L1", 5, status="available", expires_at_ms=1)))
    assert isinstance(refused, DeviceOpDone)
    assert refused.reply == Received("L1", 5)
    conflict = driver.run(op("POS-1", 2, 0, Receive("", SKU, SITE, "L1", 1, status="available", expires_at_ms=2)))
    assert isinstance(conflict, DeviceOpDone)
    assert (conflict.already_applied, conflict.reply, conflict.refusal_reason) == (False, None, "LOT_DATES_CONFLICT")
    received = driver.run(op("POS-2", 1, 0, Receive("", SKU, SITE, "L1", 5, status="available")))
    assert isinstance(received, DeviceOpDone)
    assert received.reply == Received("L1", 5)  # another device: its own numbering
    assert driver.cell.devices == {"POS-1": 2, "POS-2": 1}
    assert driver.run(op("POS-1", 2, 0, Receive("", SKU, SITE, "L1", 1, status="available"), 2)) == DeviceOpDone(
        2, True
    )  # refused once and for all: a later upload does not retry it
    older = driver.run(op("POS-2", 1, 0, Receive("", SKU, SITE, "L1", 5, status="available"), upload=2))
    assert older == DeviceOpDone(1, True)


def test_the_watermarks_survive_a_snapshot(driver: CellDriver) -> None:
    driver.run(op("POS-1", 7, 0, Receive("", SKU, SITE, "L1", 5, status="available")))
    driver.drain()
    again = import_cell(export_cell(driver.cell), driver.cell.statuses, driver.cell.limits)
    assert again.devices == {"POS-1": 7}
    assert again.handle(op("POS-1", 7, 0, Receive("", SKU, SITE, "L1", 5, status="available"), 2), driver.now_ms) == (
        DeviceOpDone(7, True)
    )


def test_a_bad_device_op_is_refused_whole_and_moves_no_watermark(driver: CellDriver) -> None:
    err = driver.refuse(op("POS-1", 0, -1, Receive("", SKU, "ELSEWHERE", "L1", 0)), InvalidArgument)
    assert {"seq", "at_ms", "command"} <= violated_fields(err)
    err = driver.refuse(op("POS-1", 1, 0, Receive("", SKU, SITE, "L1", 0, status="available")), InvalidArgument)
    assert violated_fields(err) == {"command.qty"}
    assert driver.cell.devices == {}
