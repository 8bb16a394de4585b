"""A bulk load's receipts as columns: one sequence per field of Receive (DESIGN.md §7).

A bulk load moves thousands of receipts per call from the API, through the gateway, to
the shards. As Receive objects, each hop paid per lot — building the object, checking it,
pickling it for Ray and building it again — and those per-lot Python steps were most of
the gateway's work. As columns the API fills them straight from the wire's columns
(lotwise.v1.ImportLots), the gateway checks them a column at a time, cuts them by shard
with one C-level pass per column, and Ray pickles a few lists; the shard builds its
Receives once, as the cells and the journal need them (bench/README.md, "Bulk load").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

from engine.domain.commands import Receive, receive_fields
from engine.domain.model import External, Finance

RECEIPT_FIELDS = (
    "request_id",
    "sku",
    "site",
    "lot_id",
    "qty",
    "bin",
    "status",
    "owner",
    "expires_at_ms",
    "received_at_ms",
    "opened_at_ms",
    "doc_ref",
    "source",
    "finance",
)  # Receive's fields, in its order (a test checks)


class ReceiptColumns:
    """Receipts as columns, all of one length: row i is `receipt(i)`."""

    __slots__ = RECEIPT_FIELDS
    request_id: Sequence[str]
    sku: Sequence[str]
    site: Sequence[str]
    lot_id: Sequence[str]
    qty: Sequence[int]
    bin: Sequence[str]
    status: Sequence[str]
    owner: Sequence[str]
    expires_at_ms: Sequence[int]
    received_at_ms: Sequence[int]
    opened_at_ms: Sequence[int]
    doc_ref: Sequence[str]
    source: Sequence[External]
    finance: Sequence[Finance | None]

    def __init__(self, *columns: Sequence[Any]) -> None:
        if len(columns) != len(RECEIPT_FIELDS):
            raise ValueError(f"receipt columns: {len(columns)} given for {len(RECEIPT_FIELDS)} fields")
        rows = len(columns[0])
        if any(len(column) != rows for column in columns):
            raise ValueError(f"receipt columns of unequal length: {sorted({len(c) for c in columns})}")
        for name, column in zip(RECEIPT_FIELDS, columns, strict=True):
            object.__setattr__(self, name, column)

    @classmethod
    def of(cls, receipts: Iterable[Receive]) -> ReceiptColumns:
        rows = list(map(receive_fields, receipts))
        if not rows:
            return cls(*([()] * len(RECEIPT_FIELDS)))
        return cls(*zip(*rows, strict=True))

    def columns(self) -> tuple[Sequence[Any], ...]:
        return tuple(getattr(self, name) for name in RECEIPT_FIELDS)

    def __len__(self) -> int:
        return len(self.request_id)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its lists: a thousand strings in a list pickle at C speed.
        return (ReceiptColumns, self.columns())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReceiptColumns) and all(
            list(a) == list(b) for a, b in zip(self.columns(), other.columns(), strict=True)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable columns: no hash

    def __repr__(self) -> str:
        return f"ReceiptColumns({len(self)} receipts)"

    def receipt(self, row: int) -> Receive:
        return Receive(*(getattr(self, name)[row] for name in RECEIPT_FIELDS))

    def receipts(self) -> list[Receive]:
        """Every row as a Receive, built a column at a time: each slot set the way the
        dataclass's own __init__ sets it (past the frozen __setattr__), which is about
        twice as fast as a Python call per receipt. Receive has no __post_init__ to skip
        (a test checks)."""
        made: list[Receive] = list(map(object.__new__, repeat(Receive, len(self))))
        for name in RECEIPT_FIELDS:
            deque(map(getattr(Receive, name).__set__, made, getattr(self, name)), maxlen=0)
        return made

    def take(self, rows: Sequence[int]) -> ReceiptColumns:
        """The given rows, in that order (a C-level pass per column)."""
        if len(rows) == len(self) and list(rows) == list(range(len(self))):
            return self
        if len(rows) == 1:
            (row,) = rows
            return ReceiptColumns(*([column[row]] for column in self.columns()))
        if not rows:
            return ReceiptColumns(*([()] * len(RECEIPT_FIELDS)))
        pick = itemgetter(*rows)
        return ReceiptColumns(*(pick(column) for column in self.columns()))
