"""The gateway → shard channel (engine.runtime.channel): answers, order, failures, bounds."""

from __future__ import annotations

import asyncio
import os
import stat
from typing import Any

import pytest

from engine.domain.errors import InsufficientStock
from engine.runtime.channel import MAX_FRAME_BYTES, ChannelBroken, ChannelClient, ChannelServer


class _Shard:
    """Answers each op with ("done", op) and records the order applies started in."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self._applied = asyncio.Event()

    async def apply(self, ops: list[Any]) -> list[Any]:
        self.started.extend(ops)
        self._applied.set()
        await self.gate.wait()
        if "boom" in ops:
            raise RuntimeError("apply failed")
        return [InsufficientStock("S", "X", 1, 0) if op == "short" else ("done", op) for op in ops]

    async def until_started(self, n: int) -> None:
        while len(self.started) < n:
            self._applied.clear()
            await asyncio.wait_for(self._applied.wait(), 5)


def _socket_dir(path: str) -> tuple[bool, int]:
    """(the socket's directory exists, its permission bits)."""
    folder = os.path.dirname(path)
    return os.path.exists(folder), stat.S_IMODE(os.stat(folder).st_mode) if os.path.exists(folder) else 0


async def _pair(shard: _Shard) -> tuple[ChannelServer, ChannelClient]:
    server = ChannelServer(shard.apply)
    client = await ChannelClient.connect(await server.start())
    return server, client


async def test_answers_come_back_per_call_refusals_as_values_and_failures_raised() -> None:
    server, client = await _pair(_Shard())
    try:
        assert await client.call(["a", "b"]) == [("done", "a"), ("done", "b")]
        [refusal] = await client.call(["short"])
        assert isinstance(refusal, InsufficientStock)
        assert refusal.available == 0
        with pytest.raises(RuntimeError, match="apply failed"):
            await client.call(["boom"])
        assert await client.call(["c"]) == [("done", "c")]  # the connection outlives a failed call
    finally:
        await client.close()
        await server.close()


async def test_batches_in_flight_start_applying_in_the_order_they_were_sent() -> None:
    shard = _Shard()
    shard.gate.clear()  # every apply waits: all calls are in flight at once
    server, client = await _pair(shard)
    try:
        calls = [asyncio.ensure_future(client.call([i])) for i in range(50)]
        await shard.until_started(50)
        assert shard.started == list(range(50))
        shard.gate.set()
        assert [r[0][1] for r in await asyncio.gather(*calls)] == list(range(50))
    finally:
        await client.close()
        await server.close()


async def test_calls_waiting_when_the_shard_goes_away_fail_as_broken() -> None:
    shard = _Shard()
    shard.gate.clear()
    server, client = await _pair(shard)
    waiting = asyncio.ensure_future(client.call(["x"]))
    await shard.until_started(1)
    await server.close()  # as a dead process: the socket closes under the call
    with pytest.raises(ChannelBroken):
        await asyncio.wait_for(waiting, 5)
    assert not client.open
    with pytest.raises(ChannelBroken):
        await client.call(["y"])  # and every later call, at once
    await client.close()


async def test_the_socket_is_reachable_by_its_owner_only_and_removed_on_close() -> None:
    server = ChannelServer(_Shard().apply)
    path = await server.start()
    assert _socket_dir(path) == (True, 0o700)
    await server.close()
    assert _socket_dir(path) == (False, 0)


async def test_a_frame_over_the_bound_closes_the_connection_without_reading_it() -> None:
    shard = _Shard()
    server = ChannelServer(shard.apply)
    path = await server.start()
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write((MAX_FRAME_BYTES + 1).to_bytes(4, "big") + (1).to_bytes(8, "big"))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        assert shard.started == []
    finally:
        writer.close()
        await server.close()
