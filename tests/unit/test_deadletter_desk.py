"""The dead-letter desk over the in-memory store: replay republishes, then removes."""

from __future__ import annotations

import pytest

from adapters.memory.deadletters import InMemoryDeadLetters
from engine.domain.deadletter_desk import DeadLetterDesk, replay_headers
from engine.domain.deadletters import DeadLetter, DeadLetterCode, StoredDeadLetter
from engine.domain.errors import InvalidArgument, NotFound


class FakeBus:
    """Records what was republished; subjects in `down` refuse (no stream answers)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self.down: set[str] = set()

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        if subject in self.down:
            raise TimeoutError(f"no ack from {subject}")
        self.published.append((subject, payload, headers))


def letter(n: int, code: DeadLetterCode = DeadLetterCode.UNKNOWN_REF, subject: str = "wms.in.north") -> DeadLetter:
    return DeadLetter(
        key=f"INGEST_WMS:{n}",
        subject=subject,
        payload=b'{"event_id": "ev-%d"}' % n,
        code=code,
        reason=f"unknown sku in {n}",
        event_id=f"ev-{n}",
        event_type="wms.receipt",
        headers=(("Nats-Msg-Id", f"ev-{n}"), ("X-Source", "wms"), ("Nats-Expected-Last-Sequence", "41")),
    )


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


@pytest.fixture
def store() -> InMemoryDeadLetters:
    return InMemoryDeadLetters(max_letters=100)


@pytest.fixture
def desk(store: InMemoryDeadLetters, bus: FakeBus) -> DeadLetterDesk:
    return DeadLetterDesk(store, bus.publish)


async def test_replay_republishes_the_original_then_removes_the_letter(
    desk: DeadLetterDesk, store: InMemoryDeadLetters, bus: FakeBus
) -> None:
    seq = await store.put(letter(1))

    result = await desk.replay([seq])

    assert result.replayed == [seq]
    assert result.failed == []
    assert bus.published == [
        (
            "wms.in.north",
            b'{"event_id": "ev-1"}',
            {"X-Source": "wms", "Lotwise-Replay-Of": str(seq), "Nats-Msg-Id": f"replay:INGEST_WMS:1:{seq}"},
        )
    ]
    assert await store.count() == 0
    with pytest.raises(NotFound):
        await desk.show(seq)


async def test_a_failed_republish_keeps_the_letter(
    desk: DeadLetterDesk, store: InMemoryDeadLetters, bus: FakeBus
) -> None:
    ok = await store.put(letter(1))
    stuck = await store.put(letter(2, subject="wms.in.south"))
    bus.down.add("wms.in.south")

    result = await desk.replay([stuck, ok])

    assert result.replayed == [ok]
    assert [seq for seq, _ in result.failed] == [stuck]
    assert "TimeoutError" in result.failed[0][1]
    assert [s.seq for s in await desk.list()] == [stuck]
    assert (await desk.show(stuck)).letter == letter(2, subject="wms.in.south")


async def test_replay_all_follows_the_code_filter_oldest_first(
    desk: DeadLetterDesk, store: InMemoryDeadLetters, bus: FakeBus
) -> None:
    codes = [DeadLetterCode.UNKNOWN_REF, DeadLetterCode.DECODE, DeadLetterCode.UNKNOWN_REF, DeadLetterCode.REFUSED]
    seqs = [await store.put(letter(n, code)) for n, code in enumerate(codes, 1)]

    result = await desk.replay(None, code="unknown_reference")

    assert result.replayed == [seqs[0], seqs[2]]
    assert [s.seq for s in await desk.list()] == [seqs[1], seqs[3]]
    assert [h["Lotwise-Replay-Of"] for _, _, h in bus.published] == [str(seqs[0]), str(seqs[2])]

    everything = await desk.replay(None)
    assert everything.replayed == [seqs[1], seqs[3]]
    assert await store.count() == 0


async def test_replay_all_is_bounded_and_takes_the_letters_as_they_were_when_it_started(
    store: InMemoryDeadLetters,
) -> None:
    """A republish that dead-letters the event again (the cause is not fixed) must not loop."""

    async def fails_again(subject: str, payload: bytes, headers: dict[str, str]) -> None:
        await store.put(letter(1000 + int(headers["Lotwise-Replay-Of"])))

    desk = DeadLetterDesk(store, fails_again)
    seqs = [await store.put(letter(n)) for n in range(1, 6)]

    result = await desk.replay(None, limit=3)
    assert result.replayed == seqs[:3]
    result = await desk.replay(None)
    assert result.replayed[:2] == seqs[3:]
    assert len(result.replayed) == 5  # 2 old + the 3 that came back during the first call
    assert await store.count() == 5


async def test_unknown_seqs_fail_and_the_others_go_on(desk: DeadLetterDesk, store: InMemoryDeadLetters) -> None:
    seq = await store.put(letter(1))
    result = await desk.replay([77, seq, seq])
    assert result.replayed == [seq]
    assert result.failed == [(77, "not found (already replayed or deleted?)")]


async def test_bad_arguments_are_refused(desk: DeadLetterDesk) -> None:
    cases = [
        ({"seqs": [1], "code": "refused"}, ["code"]),
        ({"seqs": None, "code": "bogus"}, ["code"]),
        ({"seqs": [0, 2, -1]}, ["seqs[0]", "seqs[2]"]),
        ({"seqs": list(range(1, 1002))}, ["seqs"]),
        ({"seqs": None, "limit": 0}, ["limit"]),
    ]
    for kwargs, fields in cases:
        seqs = kwargs.pop("seqs")
        with pytest.raises(InvalidArgument) as info:
            await desk.replay(seqs, **kwargs)  # type: ignore[arg-type]
        assert [v.field for v in info.value.violations] == fields
    with pytest.raises(InvalidArgument):
        await desk.show(0)
    with pytest.raises(InvalidArgument):
        await desk.list(limit=5000)


def test_replay_headers_drop_publish_expectations_and_renew_the_message_id() -> None:
    stored = StoredDeadLetter(9, letter(3))
    headers = replay_headers(stored)
    assert headers == {"X-Source": "wms", "Lotwise-Replay-Of": "9", "Nats-Msg-Id": "replay:INGEST_WMS:3:9"}


async def test_a_letter_deleted_meanwhile_counts_as_replayed(store: InMemoryDeadLetters) -> None:
    async def republish_and_race(subject: str, payload: bytes, headers: dict[str, str]) -> None:
        await store.delete(int(headers["Lotwise-Replay-Of"]))  # another operator's replay won

    desk = DeadLetterDesk(store, republish_and_race)
    seq = await store.put(letter(1))
    assert (await desk.replay([seq])).replayed == [seq]
