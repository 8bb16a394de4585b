"""lotwise.v1.Admin's dead-letter RPCs over a real gRPC server: list, get, replay.

The desk runs on the in-memory store with a recording republish; one test runs it on
the JetStream store of a real nats-server, replaying into a real inbound stream.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
import nats
import pytest
import pytest_asyncio
from nats.js import api
from prometheus_client import CollectorRegistry

from adapters.memory.deadletters import InMemoryDeadLetters
from adapters.nats.deadletter import DeadLetterConfig, connect_dead_letters, nats_republish
from adapters.nats.server import EmbeddedNats
from engine.api.client import LotwiseClient, RetryPolicy
from engine.api.gen.lotwise.v1 import admin_pb2 as apb
from engine.api.gen.lotwise.v1 import admin_pb2_grpc as apb_grpc
from engine.api.server import ApiMetrics, start_server
from engine.domain.deadletter_desk import DeadLetterDesk
from engine.domain.deadletters import DeadLetter, DeadLetterCode
from engine.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from engine.runtime.gateway import Gateway

pytestmark = pytest.mark.asyncio(loop_scope="session")


class RecordingBus:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self.down: set[str] = set()

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        if subject in self.down:
            raise TimeoutError(f"no stream acked {subject}")
        self.published.append((subject, payload, headers))


def letter(n: int, code: DeadLetterCode = DeadLetterCode.UNKNOWN_REF, **fields: object) -> DeadLetter:
    base: dict[str, object] = {
        "key": f"INGEST:{n}",
        "subject": "cabinet.events.ward-3",
        "payload": b'{"event_id": "ev-%d", "qty": 2}' % n,
        "code": code,
        "reason": f"unknown cabinet C-{n}",
        "event_id": f"ev-{n}",
        "event_type": "cabinet.scan_take",
        "deliveries": 3,
        "failed_at_ms": 1_767_225_600_000,
        "headers": (("X-Cabinet", f"C-{n}"),),
    }
    base.update(fields)
    return DeadLetter(**base)  # type: ignore[arg-type]


async def serve(gateway: Gateway, desk: DeadLetterDesk | None) -> AsyncIterator[LotwiseClient]:
    server, port = await start_server(
        gateway, "127.0.0.1", 0, metrics=ApiMetrics(CollectorRegistry()), admin=gateway, dead_letters=desk
    )
    try:
        async with LotwiseClient(f"127.0.0.1:{port}", timeout_s=10.0, retry=RetryPolicy(max_attempts=1)) as client:
            yield client
    finally:
        await server.stop(grace_s=0.5)


@pytest.fixture
def store() -> InMemoryDeadLetters:
    return InMemoryDeadLetters()


@pytest.fixture
def bus() -> RecordingBus:
    return RecordingBus()


@pytest_asyncio.fixture
async def client(local_gateway: Gateway, store: InMemoryDeadLetters, bus: RecordingBus) -> AsyncIterator[LotwiseClient]:
    async for c in serve(local_gateway, DeadLetterDesk(store, bus.publish)):
        yield c


async def test_list_pages_oldest_first_without_payloads(client: LotwiseClient, store: InMemoryDeadLetters) -> None:
    codes = [DeadLetterCode.DECODE, DeadLetterCode.UNKNOWN_REF, DeadLetterCode.UNKNOWN_REF]
    seqs = [await store.put(letter(n, code)) for n, code in enumerate(codes, 1)]

    page = await client.list_dead_letters(limit=2)
    assert [s.seq for s in page.letters] == seqs[:2]
    assert page.total == 3
    assert page.next_after_seq == seqs[1]
    assert all(s.letter.payload == b"" for s in page.letters)
    assert page.letters[0].letter == replace(letter(1, codes[0]), payload=b"")

    last = await client.list_dead_letters(after_seq=page.next_after_seq, limit=2)
    assert [s.seq for s in last.letters] == seqs[2:]
    assert last.next_after_seq == 0

    only = await client.list_dead_letters(code="unknown_reference")
    assert [s.seq for s in only.letters] == seqs[1:]
    assert only.next_after_seq == 0


async def test_get_returns_every_field_and_the_payload(client: LotwiseClient, store: InMemoryDeadLetters) -> None:
    sent = letter(1, DeadLetterCode.DECODE, payload=b"\xff\x00not json", event_id="", event_type="")
    seq = await store.put(sent)
    got = await client.get_dead_letter(seq)
    assert got.seq == seq
    assert got.letter == sent


async def test_get_of_an_absent_letter_is_not_found(client: LotwiseClient) -> None:
    with pytest.raises(NotFound) as info:
        await client.get_dead_letter(404)
    assert (info.value.resource_type, info.value.resource_name) == ("dead letter", "404")


async def test_replay_by_seq_and_all(client: LotwiseClient, store: InMemoryDeadLetters, bus: RecordingBus) -> None:
    seqs = [await store.put(letter(n)) for n in range(1, 5)]
    store_down = await store.put(letter(5, subject="cabinet.events.down"))
    bus.down.add("cabinet.events.down")

    result = await client.replay_dead_letters([seqs[1], 999])
    assert result.replayed == [seqs[1]]
    assert result.failed == [(999, "not found (already replayed or deleted?)")]
    assert bus.published[0] == (
        "cabinet.events.ward-3",
        letter(2).payload,
        {"X-Cabinet": "C-2", "Lotwise-Replay-Of": str(seqs[1]), "Nats-Msg-Id": f"replay:INGEST:2:{seqs[1]}"},
    )

    result = await client.replay_dead_letters()  # all
    assert result.replayed == [seqs[0], seqs[2], seqs[3]]
    assert [seq for seq, _ in result.failed] == [store_down]
    assert [s.seq for s in (await client.list_dead_letters()).letters] == [store_down]


async def test_bad_arguments_are_invalid_argument_with_field_violations(client: LotwiseClient) -> None:
    cases = [
        (client.list_dead_letters(limit=1001), ["limit"]),
        (client.list_dead_letters(after_seq=-1), ["after_seq"]),
        (client.list_dead_letters(code="nope"), ["code"]),
        (client.get_dead_letter(0), ["seq"]),
        (client.replay_dead_letters([]), ["seqs"]),
        (client.replay_dead_letters([1, -2]), ["seqs[1]"]),
        (client.replay_dead_letters(code="nope"), ["code"]),
    ]
    for call, fields in cases:
        with pytest.raises(InvalidArgument) as info:
            await call
        assert [v.field for v in info.value.violations] == fields


async def test_both_seqs_and_all_is_refused(client: LotwiseClient) -> None:
    stub = apb_grpc.AdminStub(client.channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ReplayDeadLetters(apb.ReplayDeadLettersRequest(seqs=[1], all=True), timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ReplayDeadLetters(apb.ReplayDeadLettersRequest(seqs=[1], code="refused"), timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_without_ingestion_the_rpcs_answer_ingestion_off(local_gateway: Gateway) -> None:
    async for client in serve(local_gateway, None):
        for call in (client.list_dead_letters(), client.get_dead_letter(1), client.replay_dead_letters([1])):
            with pytest.raises(FailedPrecondition) as info:
                await call
            assert info.value.reason == "INGESTION_OFF"


async def test_replay_through_jetstream_reaches_the_inbound_stream(
    local_gateway: Gateway,
    nats_server: EmbeddedNats,
) -> None:
    tag = uuid.uuid4().hex[:10]
    inbound_stream, inbound_subject = f"IN_{tag}", f"test.in.{tag}.cabinet"
    config = DeadLetterConfig(url=nats_server.url, stream=f"DLQ_{tag}", subject_prefix=f"test.dlq.{tag}")
    dead_letters, close = await connect_dead_letters(config)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        await js.add_stream(api.StreamConfig(name=inbound_stream, subjects=[f"test.in.{tag}.>"], max_bytes=1 << 20))
        original = await js.publish(inbound_subject, b'{"event_id": "ev-1"}', headers={"Nats-Msg-Id": "ev-1"})
        seq = await dead_letters.put(
            letter(
                1,
                key=f"{inbound_stream}:{original.seq}",
                subject=inbound_subject,
                payload=b'{"event_id": "ev-1"}',
                headers=(("Nats-Msg-Id", "ev-1"), ("X-Cabinet", "C-1")),
            )
        )
        desk = DeadLetterDesk(dead_letters, nats_republish(js))
        async for client in serve(local_gateway, desk):
            result = await client.replay_dead_letters([seq])
            assert result.replayed == [seq]
            assert (await client.list_dead_letters()).total == 0
        replayed = await js.get_msg(inbound_stream, original.seq + 1)
        assert replayed.data == b'{"event_id": "ev-1"}'
        assert replayed.headers is not None
        assert replayed.headers["Lotwise-Replay-Of"] == str(seq)
        assert replayed.headers["X-Cabinet"] == "C-1"
        assert replayed.headers["Nats-Msg-Id"] == f"replay:{inbound_stream}:{original.seq}:{seq}"
    finally:
        await js.delete_stream(inbound_stream)
        await js.delete_stream(config.stream)
        await nc.close()
        await close()
