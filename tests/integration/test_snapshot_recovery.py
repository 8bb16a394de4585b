"""A shard process killed with SIGKILL while it journals and snapshots comes back from its
newest snapshot plus the journal's tail, with every acknowledged write (DESIGN.md §9).

Real nats-server (JetStream journal and object store), a real child process running the
shard host, a real SIGKILL; no Ray (tests/integration/test_durability.py kills Ray's shard
actors under the whole engine). The recovered state must equal a replay of the whole
journal, so the snapshot (version 2, columnar) lost nothing and invented nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import uuid

import nats

from adapters.memory.snapshots import InMemorySnapshotStore
from adapters.nats.journal import JournalConfig, connect_journal
from adapters.nats.server import EmbeddedNats
from adapters.nats.snapshot_codec import TAG
from engine.domain.cell import CellLimits
from engine.domain.commands import Receive, Received
from engine.domain.ports import Backend
from engine.domain.statuses import DEFAULT_DICTIONARY
from engine.runtime.host import ShardHost, rebuild

SHARD = "s0"
MiB = 1024 * 1024
CELLS = 20

# The child: a shard host on the given journal, a snapshot every 5 batches, receipts of
# distinct lots; it prints each acknowledged request id, and "snap N" after each snapshot
# it saved, until it is killed.
CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from adapters.nats.journal import JournalConfig, connect_journal
    from engine.domain.catalog import Site, Sku
    from engine.domain.commands import Receive
    from engine.domain.errors import DomainError
    from engine.domain.ports import Backend
    from engine.domain.shard import PutSite, PutSku
    from engine.runtime.host import ShardHost, SnapshotPolicy

    async def main() -> None:
        config = JournalConfig(**json.loads(sys.argv[1]))

        async def connect() -> Backend:
            journal, snapshots, close = await connect_journal(config)
            return Backend(journal, snapshots, close)

        host = ShardHost("s0", backend=connect, sweep_interval_ms=0, snapshot_policy=SnapshotPolicy(5, 10**9))
        await host.start()
        await host.apply([PutSite(Site("S1")), *(PutSku(Sku(f"K{i}")) for i in range(20))])
        saved, n = 0, 0
        while True:
            ops = [
                Receive(f"r{n + i}", f"K{(n + i) % 20}", "S1", f"L{n + i}", 1 + i, status="available")
                for i in range(50)
            ]
            answers = await host.apply(ops)
            for op, answer in zip(ops, answers):
                if not isinstance(answer, DomainError):
                    print("ack", op.request_id, flush=True)
            n += len(ops)
            done = host._snapshotting is not None and host._snapshotting.done() and host._snapshotting.result()
            if done and done != saved:
                saved = done
                print(f"snap {saved}", flush=True)

    asyncio.run(main())
    """
)


def receipt(n: int) -> Receive:
    """The child's n-th receipt (the same fields, so a retry is the same command)."""
    i = n % 50
    return Receive(f"r{n}", f"K{n % CELLS}", "S1", f"L{n}", 1 + i, status="available")


async def read_snapshot_tag(config: JournalConfig) -> bytes:
    client = await nats.connect(config.url)
    try:
        store = await client.jetstream().object_store(config.snapshot_bucket)
        return (await store.get(SHARD)).data[: len(TAG)]  # type: ignore[index]
    finally:
        await client.close()


async def test_a_shard_killed_mid_load_recovers_from_its_snapshot_with_every_acknowledged_write(
    nats_server: EmbeddedNats,
) -> None:
    name = uuid.uuid4().hex[:8]
    config = JournalConfig(
        url=nats_server.url,
        stream=f"KILL_{name}",
        subject_prefix=f"kill.{name}",
        snapshot_bucket=f"kill-{name}",
        max_bytes=64 * MiB,  # JetStream reserves it on the shared test server
        snapshot_max_bytes=64 * MiB,
    )
    names = ("url", "stream", "subject_prefix", "snapshot_bucket", "max_bytes", "snapshot_max_bytes")
    fields = {k: getattr(config, k) for k in names}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, json.dumps(fields), stdout=asyncio.subprocess.PIPE, env={**os.environ}
    )
    acknowledged: list[str] = []
    snapshots, after = 0, 0
    assert child.stdout is not None
    try:
        # Killed after its second snapshot, in the middle of the batches after it (the tail).
        while snapshots < 2 or after < 75:
            line = (await asyncio.wait_for(child.stdout.readline(), 120)).decode().split()
            assert line, "the child shard stopped before it took two snapshots"
            if line[0] == "snap":
                snapshots += 1
            elif line[0] == "ack":  # (the rest is the host's log)
                acknowledged.append(line[1])
                after += snapshots == 2
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    assert await read_snapshot_tag(config) == TAG  # a version-2 snapshot is what it left

    async def connect() -> Backend:
        journal, snapshots, close = await connect_journal(config)
        return Backend(journal, snapshots, close)

    host = ShardHost(SHARD, backend=connect, sweep_interval_ms=0)
    await host.start()
    try:
        batch_seq, recovered = await host.state_hash()
        # The journal replayed from its start, without the snapshot, gives the same state.
        backend = await connect()
        try:
            core, replayed_seq, _ = await rebuild(
                SHARD, DEFAULT_DICTIONARY, CellLimits(), backend.journal, InMemorySnapshotStore()
            )
        finally:
            await backend.close()
        assert (replayed_seq, core.state_hash()) == (batch_seq, recovered)
        # Every acknowledged receipt is there: its retry answers from the window and
        # changes nothing (a receipt the recovery had lost would be applied again).
        for request_id in acknowledged:
            op = receipt(int(request_id[1:]))
            assert await host.apply([op]) == [Received(op.lot_id, op.qty)]
        assert (await host.state_hash())[1] == recovered
    finally:
        await host.stop(snapshot_grace_s=0)
