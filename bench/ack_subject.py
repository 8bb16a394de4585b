"""What reading a journal message's ack subject costs a follower, per message: nats-py's
`Msg.metadata` (what followers read until 2026-12-07: a datetime and three dataclasses)
against `adapters.nats.follower.message_delivery` (one split, four ints), interleaved in
one process, CPU time. Every follower pays it once per journal message it takes.

    .venv/bin/python -m bench.ack_subject                 # 5 rounds of 100,000 messages each
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence

from nats.aio.msg import Msg

from adapters.nats.follower import message_delivery

REPLY = "$JS.ACK.LOTWISE_JOURNAL.lotwise-history.1.{seq}.{seq}.1767225600000000000.0"


def _nats_py(msg: Msg) -> tuple[int, int, int, float]:
    """What the follower read before: position, deliveries, pending, journal time."""
    meta = msg.metadata
    return meta.sequence.stream, meta.num_delivered, meta.num_pending, meta.timestamp.timestamp()


def _lean(msg: Msg) -> tuple[int, int, int, float]:
    at = message_delivery(msg)
    return at.position, at.delivered, at.pending, at.journaled_ns / 1e9


def _cpu_us_per_msg(read: Callable[[Msg], object], replies: Sequence[str]) -> float:
    msgs = [Msg(None, subject="j", reply=reply) for reply in replies]  # type: ignore[arg-type]
    started = time.process_time()
    for msg in msgs:
        read(msg)
    return (time.process_time() - started) / len(msgs) * 1e6


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    replies = [REPLY.format(seq=seq) for seq in range(1, args.messages + 1)]
    assert _nats_py(Msg(None, reply=replies[7])) == _lean(Msg(None, reply=replies[7]))  # type: ignore[arg-type]
    print("round | Msg.metadata µs/msg | message_delivery µs/msg | load average (1 min)")
    for round_ in range(1, args.rounds + 1):
        before = _cpu_us_per_msg(_nats_py, replies)
        after = _cpu_us_per_msg(_lean, replies)
        print(f"{round_} | {before:.2f} | {after:.2f} | {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
