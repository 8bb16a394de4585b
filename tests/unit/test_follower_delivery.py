"""A follower reads a journal message's ack subject itself (`delivery`): the same position,
delivery count, pending count and journal time nats-py's `Msg.metadata` gives, for both
subject versions, and the same refusal of a subject that is not JetStream's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.msg import Msg
from nats.errors import NotJSMessageError

from adapters.nats.follower import Delivery, _Held, delivery, message_delivery
from engine.domain.ports import FollowedEntry, JournalEntry

_counts = st.integers(min_value=0, max_value=2**63 - 1)
_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=20)


def _nats_reading(reply: str) -> Delivery:
    meta = Msg.Metadata._from_reply(reply)
    return Delivery(meta.sequence.stream, meta.num_delivered, meta.num_pending, 0)


@given(_names, _names, _counts, _counts, _counts, st.integers(0, 2**62), _counts)
def test_v1_subjects_read_as_nats_py_reads_them(
    stream: str, consumer: str, delivered: int, sseq: int, cseq: int, ns: int, pending: int
) -> None:
    reply = f"$JS.ACK.{stream}.{consumer}.{delivered}.{sseq}.{cseq}.{ns}.{pending}"
    got = delivery(reply)
    assert got is not None
    assert got._replace(journaled_ns=0) == _nats_reading(reply)
    assert got.journaled_ns == ns


@given(_names, _names, _counts, _counts, _counts, st.integers(0, 2**62), _counts, st.booleans())
def test_v2_subjects_with_a_domain_read_as_nats_py_reads_them(
    stream: str, consumer: str, delivered: int, sseq: int, cseq: int, ns: int, pending: int, token: bool
) -> None:
    reply = f"$JS.ACK.hub.ACCHASH.{stream}.{consumer}.{delivered}.{sseq}.{cseq}.{ns}.{pending}"
    reply += ".r4nd0m" if token else ""
    got = delivery(reply)
    assert got is not None
    assert got._replace(journaled_ns=0) == _nats_reading(reply)
    assert got.journaled_ns == ns


@pytest.mark.parametrize(
    "reply",
    [
        "_INBOX.abc.def",
        "$JS.ACK.s.c.1.2.3.4",  # 8 tokens
        "$JS.ACK.d.h.s.c.1.2.3.4",  # 10 tokens: neither version
        "$JS.NAK.s.c.1.2.3.4.5",
        "$KV.ACK.s.c.1.2.3.4.5",
    ],
)
def test_a_subject_that_is_not_an_ack_subject_is_refused_as_nats_py_refuses_it(reply: str) -> None:
    assert delivery(reply) is None
    with pytest.raises(NotJSMessageError):
        Msg.Metadata._from_reply(reply)
    with pytest.raises(NotJSMessageError):
        message_delivery(Msg(None, subject="j", reply=reply))  # type: ignore[arg-type]


def test_a_message_without_a_reply_is_not_a_journal_message() -> None:
    with pytest.raises(NotJSMessageError):
        message_delivery(Msg(None, subject="j", reply=""))  # type: ignore[arg-type]


def test_a_dropped_message_takes_its_journal_time_with_it() -> None:
    held = _Held()
    for seq in (1, 2):
        held.msgs[seq] = object()  # type: ignore[assignment] # only counted here
        held.journaled_ns[seq] = seq * 1_000
        held.entries[seq] = FollowedEntry(seq, JournalEntry("s1", seq, 0, (), ()))
    held.drop(1)
    assert list(held.journaled_ns) == [2]  # the batch's delays are the messages it acks


class _Recording:
    name = "recording sink"

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def apply(self, entries: tuple[FollowedEntry, ...]) -> None:
        self.batches.append([e.position for e in entries])


async def test_a_batch_taken_out_of_journal_order_reaches_the_sink_in_it() -> None:
    """JetStream redelivers each message when its own ack wait runs out: a follower may
    take position 7 before 5. The sink still gets the batch in journal order."""
    from adapters.nats.follower import FollowerConfig, JournalFollower
    from adapters.nats.journal import NatsLink, engine_journal_config
    from bench.followers import NullMetrics

    sink = _Recording()
    link = NatsLink(engine_journal_config("order", "nats://127.0.0.1:1"))  # never connected here
    follower = JournalFollower(link, sink, FollowerConfig("c", "t"), NullMetrics())
    for seq in (7, 5, 6):
        follower._held.msgs[seq] = object()  # type: ignore[assignment] # not acked here
        follower._held.entries[seq] = FollowedEntry(seq, JournalEntry("s1", seq, 0, (), ()), redelivered=True)
    await follower._apply_held()
    assert sink.batches == [[5, 6, 7]]
