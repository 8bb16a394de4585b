"""CPU per movement of the finance follower's Python parts, in process, without chDB or NATS:
the bench's journal entries (bench.finance's Writer) through the business events, the ledger
(costing and vouchers), the checkpoint's state delta and the voucher rows the ClickHouse store
inserts. Where `bench.finance_sink` gives the sink's whole CPU (chDB's threads included), this
says which part of the Python moved.

    .venv/bin/python -m bench.finance_booking                  # 40,000 movements
    cd /tmp/finance-base && cp $OLDPWD/bench/finance_booking.py bench/ && \
        PYTHONPATH=$PWD .venv/bin/python -m bench.finance_booking   # the same on another checkout

Uses only what older checkouts have too (Writer, SETUP, Ledger, ledger_delta, the store's row
builders). The collector is off while timed, as the follower pauses it per batch.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Sequence
from typing import Any

from adapters.clickhouse.finance import _state_rows, _voucher_row
from bench.finance import SETUP, Writer
from engine.domain.events import business_events
from engine.domain.ports import JournalEntry
from engine.finance.ledger import Ledger
from engine.finance.mapping import default_rules
from engine.finance.ports import Checkpoint
from engine.finance.state import ledger_delta
from engine.finance.vouchers import Voucher

PARTS = ("events", "ledger", "delta", "voucher_rows")


def _events_of(entry: JournalEntry, position: int) -> Sequence[Any]:
    """The events the follower books: its own lean derivation where the checkout has one."""
    try:
        from engine.finance.events import ledger_events
    except ImportError:  # an older checkout books every business event
        return business_events(entry, position)
    return ledger_events(entry)


def run(batches: int, messages: int) -> dict[str, float]:
    """µs of CPU per movement of each part, over `batches` batches of `messages` × 50 movements."""
    writer, ledger = Writer(50), Ledger(SETUP, default_rules())
    for entry in writer.seed():
        for event in business_events(entry, 0):
            ledger.apply(event)
    ledger_delta(ledger)
    work = [[writer.next() for _ in range(messages)] for _ in range(batches)]
    spent = dict.fromkeys(PARTS, 0.0)
    gc.disable()
    try:
        for position, entries in enumerate(work, 1):
            t0 = time.process_time()
            events = [e for entry in entries for e in _events_of(entry, position)]
            t1 = time.process_time()
            vouchers: list[Voucher] = [v for e in events for v in ledger.apply(e).vouchers]
            t2 = time.process_time()
            _state_rows(Checkpoint(position, ledger_delta(ledger), 0))
            t3 = time.process_time()
            [_voucher_row(v) for v in vouchers]
            t4 = time.process_time()
            for part, seconds in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                spent[part] += seconds
    finally:
        gc.enable()
    movements = batches * messages * 50
    return {part: 1e6 * seconds / movements for part, seconds in spent.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.finance_booking", description=__doc__.split("\n\n")[0])
    parser.add_argument("--movements", type=int, default=40_000)
    args = parser.parse_args(argv)
    if not 1_000 <= args.movements <= 1_000_000:
        parser.error("--movements in [1000, 1e6]")
    parts = run(max(1, args.movements // 1_000), 20)
    load = os.getloadavg()[0]
    print(
        " ".join(f"{p} {us:.1f}" for p, us in parts.items()),
        f"total {sum(parts.values()):.1f} µs/movement (load {load:.1f})",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
