"""`lotwise dlq …` against a real Admin service whose desk is the in-memory store, no Ray.

The gRPC server runs in this test's loop (Gateway.local for Inventory/Admin, the fake
desk for dead letters); each command runs through typer's CliRunner in a worker thread
(the CLI runs its own loop), as in test_cli_history.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from click.testing import Result
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from adapters.memory.deadletters import InMemoryDeadLetters
from engine import bootstrap
from engine.api.server import ApiMetrics, start_server
from engine.cli import app
from engine.domain.deadletter_desk import DeadLetterDesk
from engine.domain.deadletters import DeadLetter, DeadLetterCode

pytestmark = pytest.mark.asyncio(loop_scope="session")

ENV = {"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}


class Bus:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self.down: set[str] = set()

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        if subject in self.down:
            raise TimeoutError(f"no stream acked {subject}")
        self.published.append((subject, payload, headers))


class Rig:
    def __init__(self, target: str, store: InMemoryDeadLetters, bus: Bus) -> None:
        self.target, self.store, self.bus = target, store, bus


@pytest_asyncio.fixture(loop_scope="session")
async def rig() -> AsyncIterator[Rig]:
    gateway = bootstrap.local_gateway(shards=1, sweep_interval_ms=0)
    store, bus = InMemoryDeadLetters(), Bus()
    server, port = await start_server(
        gateway,
        "127.0.0.1",
        0,
        metrics=ApiMetrics(CollectorRegistry()),
        admin=gateway,
        dead_letters=DeadLetterDesk(store, bus.publish),
    )
    try:
        yield Rig(f"127.0.0.1:{port}", store, bus)
    finally:
        await server.stop(0.5)
        await gateway.close()


async def lotwise(target: str, *args: str) -> Result:
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, ["dlq", *args, "--target", target], env=ENV)


def rows(output: str) -> list[list[str]]:
    lines = [line for line in output.splitlines() if line.startswith("│")]
    cells = [[c.strip() for c in line.strip("│ ").split("│")] for line in lines]
    return [row for row in cells if row[0] not in ("seq", "name")]


def letter(n: int, code: DeadLetterCode = DeadLetterCode.UNKNOWN_REF, **fields: object) -> DeadLetter:
    base: dict[str, object] = {
        "key": f"INGEST:{n}",
        "subject": "cabinet.events.ward-3",
        "payload": b'{"event_id": "ev-%d", "cabinet": "C-9", "qty": 2}' % n,
        "code": code,
        "reason": f"unknown cabinet C-9 (event {n})",
        "event_id": f"ev-{n}",
        "event_type": "cabinet.scan_take",
        "deliveries": 2,
        "failed_at_ms": 1_767_225_600_000,
        "headers": (("X-Cabinet", "C-9"),),
    }
    base.update(fields)
    return DeadLetter(**base)  # type: ignore[arg-type]


async def test_list_shows_a_table_and_pages(rig: Rig) -> None:
    seqs = [await rig.store.put(letter(n)) for n in range(1, 4)]
    await rig.store.put(letter(4, DeadLetterCode.DECODE, reason="x" * 300, event_id="", event_type=""))

    result = await lotwise(rig.target, "list", "--limit", "2")
    assert result.exit_code == 0, result.output
    got = rows(result.output)
    assert [r[0] for r in got] == [str(s) for s in seqs[:2]]
    assert got[0][1:6] == [
        "2026-01-01 00:00:00",
        "unknown_reference",
        "cabinet.scan_take",
        "ev-1",
        "cabinet.events.ward-3",
    ]
    assert f"next page: --after {seqs[1]}" in result.output
    assert "4 in the store" in result.output

    result = await lotwise(rig.target, "list", "--code", "decode_error")
    assert result.exit_code == 0, result.output
    got = rows(result.output)
    assert len(got) == 1
    assert got[0][2] == "decode_error"
    assert got[0][-1].endswith("…")
    assert len(got[0][-1]) == 60
    assert "last page" in result.output


async def test_show_pretty_prints_json_and_dumps_binary_as_hex(rig: Rig) -> None:
    json_seq = await rig.store.put(letter(10))
    bin_seq = await rig.store.put(letter(11, DeadLetterCode.DECODE, payload=b"\xff\xfeAB" + bytes(5000)))

    result = await lotwise(rig.target, "show", str(json_seq))
    assert result.exit_code == 0, result.output
    assert re.search(r"reason\s+unknown cabinet C-9 \(event 10\)", result.output)
    assert re.search(r"key\s+INGEST:10", result.output)
    assert "X-Cabinet" in result.output
    assert "payload: 49 bytes, JSON" in result.output
    assert '  "cabinet": "C-9",' in result.output

    result = await lotwise(rig.target, "show", str(bin_seq))
    assert result.exit_code == 0, result.output
    assert "payload: 5004 bytes, not JSON (hex)" in result.output
    assert "00000000  ff fe 41 42 00" in result.output
    assert "..AB" in result.output
    assert "… 2956 more bytes" in result.output


async def test_show_of_an_absent_letter_exits_1(rig: Rig) -> None:
    result = await lotwise(rig.target, "show", "999999")
    assert result.exit_code == 1
    assert "not found (NOT_FOUND): dead letter '999999'" in result.output


async def test_replay_seqs_then_all_with_a_failure(rig: Rig) -> None:
    for s in [s.seq for s in await rig.store.list(limit=1000)]:
        await rig.store.delete(s)
    seqs = [await rig.store.put(letter(n)) for n in range(20, 25)]
    stuck = await rig.store.put(letter(25, DeadLetterCode.REFUSED, subject="cabinet.events.down"))
    rig.bus.down.add("cabinet.events.down")
    rig.bus.published.clear()

    result = await lotwise(rig.target, "replay", str(seqs[0]), str(seqs[1]))
    assert result.exit_code == 0, result.output
    assert "replayed 2 of 2 dead letters" in result.output
    assert [h["Lotwise-Replay-Of"] for _, _, h in rig.bus.published] == [str(seqs[0]), str(seqs[1])]

    result = await lotwise(rig.target, "replay", "--all", "--code", "unknown_reference")
    assert result.exit_code == 0, result.output
    assert "replayed 3 of 3 dead letters" in result.output
    assert await rig.store.count() == 1

    result = await lotwise(rig.target, "replay", "--all")
    assert result.exit_code == 1
    assert "replayed 0 of 1 dead letters" in result.output
    assert [r[0] for r in rows(result.output)] == [str(stuck)]
    assert "1 of 1 letters failed; they stay in the store" in result.output
    assert [s.seq for s in await rig.store.list()] == [stuck]

    result = await lotwise(rig.target, "replay", "--all", "--code", "gave_up")
    assert result.exit_code == 0, result.output
    assert "no dead letters to replay (gave_up)" in result.output


async def test_replay_usage_errors_exit_2(rig: Rig) -> None:
    for args in (["replay"], ["replay", "1", "--all"], ["replay", "1", "--code", "refused"], ["list", "--limit", "0"]):
        result = await lotwise(rig.target, *args)
        assert result.exit_code == 2, (args, result.output)
    result = await lotwise(rig.target, "list", "--code", "bogus")
    assert result.exit_code == 2


async def test_an_engine_without_ingestion_says_so() -> None:
    gateway = bootstrap.local_gateway(shards=1, sweep_interval_ms=0)
    server, port = await start_server(gateway, "127.0.0.1", 0, metrics=ApiMetrics(CollectorRegistry()), admin=gateway)
    try:
        result = await lotwise(f"127.0.0.1:{port}", "list")
    finally:
        await server.stop(0.5)
        await gateway.close()
    assert result.exit_code == 1
    assert "INGESTION_OFF" in result.output
