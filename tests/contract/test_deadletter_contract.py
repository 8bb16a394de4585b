"""The DeadLetterStore contract (DESIGN.md §10, §12), for every backend.

One suite, run against the in-memory store and the JetStream one on a real nats-server.
Each test gets a store of its own (the JetStream one: a stream of its own, removed
after), bounded at MAX_LETTERS so the full-store behaviour is part of the contract.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import nats
import pytest
import pytest_asyncio
from nats.js import api

from adapters.memory.deadletters import InMemoryDeadLetters
from adapters.nats.deadletter import DeadLetterConfig, NatsDeadLetters, connect_dead_letters
from adapters.nats.server import EmbeddedNats
from engine.domain.deadletters import DeadLetter, DeadLetterCode
from engine.domain.errors import InvalidArgument, NotFound, Overloaded
from engine.domain.ports import DeadLetterStore
from tests.nats_fixtures import nats_server  # noqa: F401 - the session's nats-server

pytestmark = pytest.mark.asyncio(loop_scope="session")

MAX_LETTERS = 8


async def _memory(_: EmbeddedNats) -> tuple[DeadLetterStore, Callable[[], Awaitable[None]]]:
    async def close() -> None:
        return None

    return InMemoryDeadLetters(max_letters=MAX_LETTERS), close


async def _jetstream(server: EmbeddedNats) -> tuple[DeadLetterStore, Callable[[], Awaitable[None]]]:
    tag = uuid.uuid4().hex[:10]
    config = DeadLetterConfig(
        url=server.url,
        stream=f"DLQ_TEST_{tag}",
        subject_prefix=f"test.dlq.{tag}",
        max_bytes=4 * 1024 * 1024,
        max_letters=MAX_LETTERS,
    )
    store, close = await connect_dead_letters(config)

    async def drop() -> None:
        nc = await nats.connect(server.url)
        try:
            await nc.jetstream().delete_stream(config.stream)
        finally:
            await nc.close()
        await close()

    return store, drop


BACKENDS = {"memory": _memory, "jetstream": _jetstream}


@pytest_asyncio.fixture(params=sorted(BACKENDS), loop_scope="session")
async def store(request: pytest.FixtureRequest, nats_server: EmbeddedNats) -> AsyncIterator[DeadLetterStore]:  # noqa: F811
    made, close = await BACKENDS[request.param](nats_server)
    yield made
    await close()


def letter(n: int, code: DeadLetterCode = DeadLetterCode.SCHEMA, **fields: object) -> DeadLetter:
    base: dict[str, object] = {
        "key": f"INGEST_CABINET:{n}",
        "subject": "lotwise.ingest.cabinet.ward-7",
        "payload": b'{"type": "cabinet.scan_take", "n": %d}' % n,
        "code": code,
        "reason": f"reason {n}",
        "event_id": f"ev-{n}",
        "event_type": "cabinet.scan_take",
        "deliveries": 1,
        "failed_at_ms": 1_767_225_600_000 + n,
    }
    base.update(fields)
    return DeadLetter(**base)  # type: ignore[arg-type]


async def test_put_then_get_gives_the_letter_back(store: DeadLetterStore) -> None:
    sent = letter(1, headers=(("Nats-Msg-Id", "ev-1"), ("X-Cabinet", "C-12")))
    seq = await store.put(sent)
    assert seq > 0
    got = await store.get(seq)
    assert got.seq == seq
    assert got.letter == sent
    assert await store.count() == 1


async def test_list_is_oldest_first_and_pages_with_after_seq(store: DeadLetterStore) -> None:
    seqs = [await store.put(letter(n)) for n in range(1, 7)]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 6

    listed = await store.list()
    assert [s.seq for s in listed] == seqs
    assert [s.letter.key for s in listed] == [f"INGEST_CABINET:{n}" for n in range(1, 7)]

    first = await store.list(limit=4)
    rest = await store.list(after_seq=first[-1].seq, limit=4)
    assert [s.seq for s in first + rest] == seqs
    assert await store.list(after_seq=seqs[-1]) == []


async def test_list_filters_by_code(store: DeadLetterStore) -> None:
    codes = [DeadLetterCode.DECODE, DeadLetterCode.UNKNOWN_REF, DeadLetterCode.DECODE, DeadLetterCode.GAVE_UP]
    seqs = [await store.put(letter(n, code)) for n, code in enumerate(codes, 1)]

    decode = await store.list(code="decode_error")
    assert [s.seq for s in decode] == [seqs[0], seqs[2]]
    assert all(s.letter.code is DeadLetterCode.DECODE for s in decode)
    assert [s.seq for s in await store.list(code="decode_error", after_seq=seqs[0])] == [seqs[2]]
    assert [s.seq for s in await store.list(code="decode_error", limit=1)] == [seqs[0]]
    assert await store.list(code="refused") == []


async def test_list_refuses_bad_arguments(store: DeadLetterStore) -> None:
    for kwargs in ({"limit": 0}, {"limit": 1001}, {"after_seq": -1}, {"code": "nonsense"}):
        with pytest.raises(InvalidArgument) as info:
            await store.list(**kwargs)  # type: ignore[arg-type]
        assert [v.field for v in info.value.violations] == [next(iter(kwargs))]


async def test_the_same_key_is_stored_once(store: DeadLetterStore) -> None:
    """A consumer that crashed between put and ack puts the same letter again."""
    seq = await store.put(letter(1))
    again = await store.put(letter(1))
    assert again == seq
    assert await store.count() == 1
    assert [s.seq for s in await store.list()] == [seq]


async def test_delete_removes_one_letter(store: DeadLetterStore) -> None:
    seqs = [await store.put(letter(n)) for n in range(1, 4)]
    await store.delete(seqs[1])
    assert [s.seq for s in await store.list()] == [seqs[0], seqs[2]]
    assert await store.count() == 2
    with pytest.raises(NotFound):
        await store.get(seqs[1])
    with pytest.raises(NotFound):
        await store.delete(seqs[1])


async def test_a_key_put_again_after_its_letter_was_deleted_is_stored_again(store: DeadLetterStore) -> None:
    """A late redelivery of an original whose letter was already replayed is not lost."""
    first = await store.put(letter(1))
    await store.delete(first)
    second = await store.put(letter(1))
    assert second > first
    assert (await store.get(second)).letter == letter(1)
    assert await store.put(letter(1)) == second  # and now once again


async def test_absent_seqs_are_not_found(store: DeadLetterStore) -> None:
    for seq in (0, 1, 10_000):
        with pytest.raises(NotFound) as info:
            await store.get(seq)
        assert info.value.resource_type == "dead letter"
    with pytest.raises(NotFound):
        await store.delete(10_000)
    assert await store.count() == 0
    assert await store.list() == []


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xff\xfe\x00garbage\r\n\x80", bytes(range(256)) * 40, b'{"truncated": '],
    ids=["empty", "not-utf8", "binary-10k", "truncated-json"],
)
async def test_payload_bytes_come_back_exactly(store: DeadLetterStore, payload: bytes) -> None:
    seq = await store.put(letter(1, DeadLetterCode.DECODE, payload=payload, event_id="", event_type=""))
    got = await store.get(seq)
    assert got.letter.payload == payload
    assert type(got.letter.payload) is bytes
    assert (await store.list())[0].letter.payload == payload


async def test_headers_and_text_fields_come_back_exactly(store: DeadLetterStore) -> None:
    headers = (
        ("Nats-Msg-Id", "abc"),
        ("X-Repeated", "one"),
        ("X-Repeated", "two"),
        ("x-lower-case", "  spaced value  "),
        ("X-Unicode", "Žluťoučký kůň 🐎 100%"),
        ("X-Empty", ""),
        ("X-Json", '{"a": [1, 2]}'),
    )
    sent = letter(
        1,
        DeadLetterCode.INVALID,
        headers=headers,
        event_id=" ev with spaces %41 ü ",
        event_type="wms.receipt/v2",
        reason="qty -5 is impossible: ≥ 0 expected; 100% sure",
        deliveries=7,
        failed_at_ms=0,
    )
    got = (await store.get(await store.put(sent))).letter
    assert got == sent
    assert got.headers == headers


async def test_the_reason_is_one_line_and_bounded(store: DeadLetterStore) -> None:
    sent = letter(1, reason="line one\r\nline two\ttabbed\n" + "x" * 5_000)
    assert "\n" not in sent.reason
    assert "\r" not in sent.reason
    assert len(sent.reason) == 2_000
    assert sent.reason.startswith("line one  line two tabbed ")
    got = (await store.get(await store.put(sent))).letter
    assert got.reason == sent.reason


async def test_every_code_round_trips(store: DeadLetterStore) -> None:
    seqs = {code: await store.put(letter(n, code)) for n, code in enumerate(DeadLetterCode, 1)}
    for code, seq in seqs.items():
        assert (await store.get(seq)).letter.code is code
        assert [s.seq for s in await store.list(code=code.value)] == [seq]


async def test_a_full_store_refuses_new_letters_and_loses_none(store: DeadLetterStore) -> None:
    seqs = [await store.put(letter(n)) for n in range(1, MAX_LETTERS + 1)]
    with pytest.raises(Overloaded):
        await store.put(letter(MAX_LETTERS + 1))
    assert await store.count() == MAX_LETTERS
    assert [s.seq for s in await store.list()] == seqs  # the oldest are all still there
    assert await store.put(letter(3)) == seqs[2]  # a key already stored is still answered

    await store.delete(seqs[0])  # a replay makes room
    seq = await store.put(letter(MAX_LETTERS + 1))
    assert seq > seqs[-1]
    assert (await store.get(seq)).letter == letter(MAX_LETTERS + 1)


async def test_a_jetstream_letter_is_one_message_with_the_original_bytes(nats_server: EmbeddedNats) -> None:  # noqa: F811
    """How a letter looks to `nats stream view`: body = payload, the rest in headers."""
    tag = uuid.uuid4().hex[:10]
    config = DeadLetterConfig(url=nats_server.url, stream=f"DLQ_TEST_{tag}", subject_prefix=f"test.dlq.{tag}")
    store, close = await connect_dead_letters(config)
    try:
        assert isinstance(store, NatsDeadLetters)
        seq = await store.put(letter(1, DeadLetterCode.UNKNOWN_REF, reason="unknown sku 'GLU-9'"))
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            raw = await js.get_msg(config.stream, seq)
            info = await js.stream_info(config.stream)
            await js.delete_stream(config.stream)
        finally:
            await nc.close()
    finally:
        await close()
    assert raw.subject == f"test.dlq.{tag}.unknown_reference.cabinet_scan_take"
    assert raw.data == letter(1).payload
    assert raw.headers is not None
    assert raw.headers["Nats-Msg-Id"] == "INGEST_CABINET:1"
    assert raw.headers["Lotwise-Dlq-Code"] == "unknown_reference"
    assert raw.headers["Lotwise-Dlq-Reason"] == "unknown sku 'GLU-9'"
    assert raw.headers["Lotwise-Original-Subject"] == "lotwise.ingest.cabinet.ward-7"
    assert raw.headers["Lotwise-Event-Id"] == "ev-1"
    assert info.config.discard in (api.DiscardPolicy.NEW, "new")  # full: refused, never dropped
    assert info.config.storage in (api.StorageType.FILE, "file")
