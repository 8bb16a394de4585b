"""Commands a cell accepts (imperative) and the replies it gives (past tense).

Each command names one (sku, site) cell and carries the caller's request id, which makes
it idempotent. `validate()` is pure and checks everything that needs no state, so a
gateway can refuse bad input before it costs a shard call; the cell validates again.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from enum import StrEnum

from engine.domain.errors import FieldViolation, InvalidArgument
from engine.domain.model import Allocation, HoldView
from engine.domain.statuses import StatusDictionary

MAX_ID_LEN = 128
MAX_BIN_DEPTH = 8
MAX_QTY = 10**12  # far above any real stock; keeps sums well inside int64
MAX_TTL_MS = 7 * 86_400_000
MAX_LINES = 256  # lines of one multi-line hold; bounds a request's fan-out
_ID_RE = re.compile(r"^[A-Za-z0-9._:\-@#+]+$")
_BIN_SEG_RE = re.compile(r"^[A-Za-z0-9._\-]+$")
_OWNER_RE = re.compile(r"^(own|consignment:[^\s:]+|custody:[^\s:]+)$")


class Strategy(StrEnum):
    """Removal strategy: which quants a reserve or consume takes first."""

    FEFO = "fefo"  # first expiry, first out (default)
    FIFO = "fifo"  # oldest receipt first
    LIFO = "lifo"  # newest receipt first
    LOT = "lot"  # only the named lot


@dataclass(frozen=True, slots=True)
class Receive:
    request_id: str
    sku: str
    site: str
    lot_id: str
    qty: int
    bin: str = ""
    status: str = "receiving"
    owner: str = "own"
    expires_at_ms: int = 0
    received_at_ms: int = 0  # 0 = engine time of arrival
    opened_at_ms: int = 0
    doc_ref: str = ""


@dataclass(frozen=True, slots=True)
class Move:
    request_id: str
    sku: str
    site: str
    lot_id: str
    qty: int
    from_bin: str
    to_bin: str
    status: str = "available"
    owner: str = "own"
    doc_ref: str = ""


@dataclass(frozen=True, slots=True)
class ChangeStatus:
    request_id: str
    sku: str
    site: str
    lot_id: str
    qty: int
    from_status: str
    to_status: str
    bin: str = ""
    owner: str = "own"
    doc_ref: str = ""


@dataclass(frozen=True, slots=True)
class ReserveLine:
    """One line of a hold inside one cell, with its constraints."""

    qty: int
    strategy: Strategy = Strategy.FEFO
    lot_id: str = ""  # required with Strategy.LOT; a filter otherwise
    owner: str = ""  # "" any; "own", "consignment", "consignment:acme", ...
    min_shelf_life_days: float = 0.0
    bin_prefix: str = ""


@dataclass(frozen=True, slots=True)
class Reserve:
    request_id: str
    sku: str
    site: str
    hold_id: str
    lines: tuple[ReserveLine, ...]
    ttl_ms: int
    doc_ref: str = ""


@dataclass(frozen=True, slots=True)
class Commit:
    request_id: str
    sku: str
    site: str
    hold_id: str
    qty: int | None = None  # None = all that is held; less = partial, the rest released
    doc_ref: str = ""


@dataclass(frozen=True, slots=True)
class Release:
    """Release what a hold still holds. With `abort`, the release rolls back a reserve that
    failed as a whole (another line of a multi-line hold was refused): the reserve's own
    request id then answers HOLD_ABORTED instead of its cached success, so a retry of the
    failed reserve can never report stock that is no longer held."""

    request_id: str
    sku: str
    site: str
    hold_id: str
    doc_ref: str = ""
    abort: bool = False


@dataclass(frozen=True, slots=True)
class Consume:
    """A direct issue without a hold (a cabinet scan-take): a physical fact, never refused
    for lack of book stock; a shortfall is recorded as a discrepancy."""

    request_id: str
    sku: str
    site: str
    qty: int
    lot_id: str = ""
    bin_prefix: str = ""
    owner: str = ""
    strategy: Strategy = Strategy.FEFO
    doc_ref: str = ""


@dataclass(frozen=True, slots=True)
class Adjust:
    """A count: sets the quant to `counted_qty` and records the variance."""

    request_id: str
    sku: str
    site: str
    lot_id: str
    counted_qty: int
    bin: str = ""
    status: str = "available"
    owner: str = "own"
    reason: str = "count"
    doc_ref: str = ""


Command = Receive | Move | ChangeStatus | Reserve | Commit | Release | Consume | Adjust


# ---- replies (past tense). The movements a command produced go to the cell's outbox. ----


@dataclass(frozen=True, slots=True)
class Received:
    lot_id: str
    qty: int


@dataclass(frozen=True, slots=True)
class Moved:
    qty: int


@dataclass(frozen=True, slots=True)
class StatusChanged:
    qty: int


@dataclass(frozen=True, slots=True)
class Reserved:
    hold: HoldView


@dataclass(frozen=True, slots=True)
class Committed:
    hold: HoldView
    committed_qty: int
    released_qty: int


@dataclass(frozen=True, slots=True)
class Released:
    hold: HoldView
    released_qty: int


@dataclass(frozen=True, slots=True)
class Consumed:
    consumed_qty: int
    shortfall_qty: int  # > 0: the books showed less than was taken (a discrepancy)
    allocations: tuple[Allocation, ...]


@dataclass(frozen=True, slots=True)
class Adjusted:
    previous_qty: int
    counted_qty: int
    variance: int


Reply = Received | Moved | StatusChanged | Reserved | Committed | Released | Consumed | Adjusted


# ---- validation (pure) ----


def check_id(value: str, field: str, out: list[FieldViolation], *, required: bool = True) -> None:
    if not value:
        if required:
            out.append(FieldViolation(field, "must not be empty"))
        return
    if len(value) > MAX_ID_LEN:
        out.append(FieldViolation(field, f"must be at most {MAX_ID_LEN} characters"))
    elif not _ID_RE.match(value):
        out.append(FieldViolation(field, "may contain only letters, digits and ._:-@#+"))


def check_bin(value: str, field: str, out: list[FieldViolation]) -> None:
    """A bin is a path `zone/shelf/pallet`; "" is the site itself."""
    if not value:
        return
    if len(value) > MAX_ID_LEN:
        out.append(FieldViolation(field, f"must be at most {MAX_ID_LEN} characters"))
        return
    segments = value.split("/")
    if len(segments) > MAX_BIN_DEPTH:
        out.append(FieldViolation(field, f"must have at most {MAX_BIN_DEPTH} levels"))
    elif not all(_BIN_SEG_RE.match(s) for s in segments):
        out.append(FieldViolation(field, "must be a path like A/03/P12 of letters, digits, ._-"))


def check_qty(value: int, field: str, out: list[FieldViolation], *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        out.append(FieldViolation(field, "must be an integer"))
    elif value < 0 or (value == 0 and not allow_zero):
        out.append(FieldViolation(field, "must be ≥ 0" if allow_zero else "must be > 0"))
    elif value > MAX_QTY:
        out.append(FieldViolation(field, f"must be at most {MAX_QTY}"))


def check_owner(value: str, field: str, out: list[FieldViolation], *, filter_: bool = False) -> None:
    if filter_:
        if value and value not in ("own", "consignment", "custody") and not _OWNER_RE.match(value):
            out.append(FieldViolation(field, "must be own, consignment[:supplier] or custody[:party]"))
        return
    if not _OWNER_RE.match(value):
        out.append(FieldViolation(field, "must be own, consignment:<supplier> or custody:<party>"))


def check_status(value: str, field: str, out: list[FieldViolation], statuses: StatusDictionary) -> None:
    if value not in statuses:
        out.append(FieldViolation(field, f"unknown status {value!r}"))


def check_time(value: int, field: str, out: list[FieldViolation]) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        out.append(FieldViolation(field, "must be a non-negative epoch time in ms"))


def owner_matches(owner: str, owner_filter: str) -> bool:
    """ "" matches all; "consignment" matches every supplier; a full owner matches itself."""
    return not owner_filter or owner == owner_filter or owner.startswith(owner_filter + ":")


def validate(cmd: Command, statuses: StatusDictionary) -> None:
    """Raise InvalidArgument listing every field violation; return when the command is sane."""
    out: list[FieldViolation] = []
    check_id(cmd.request_id, "request_id", out)
    check_id(cmd.sku, "sku", out)
    check_id(cmd.site, "site", out)
    if len(cmd.doc_ref) > 256:
        out.append(FieldViolation("doc_ref", "must be at most 256 characters"))
    match cmd:
        case Receive():
            check_id(cmd.lot_id, "lot_id", out)
            check_qty(cmd.qty, "qty", out)
            check_bin(cmd.bin, "bin", out)
            check_owner(cmd.owner, "owner", out)
            check_status(cmd.status, "status", out, statuses)
            status = statuses.get(cmd.status)
            if status is not None and not status.receivable:
                out.append(FieldViolation("status", f"stock cannot be received into {cmd.status!r}"))
            for name in ("expires_at_ms", "received_at_ms", "opened_at_ms"):
                check_time(getattr(cmd, name), name, out)
        case Move():
            check_id(cmd.lot_id, "lot_id", out)
            check_qty(cmd.qty, "qty", out)
            check_bin(cmd.from_bin, "from_bin", out)
            check_bin(cmd.to_bin, "to_bin", out)
            check_owner(cmd.owner, "owner", out)
            check_status(cmd.status, "status", out, statuses)
            if cmd.from_bin == cmd.to_bin:
                out.append(FieldViolation("to_bin", "must differ from from_bin"))
        case ChangeStatus():
            check_id(cmd.lot_id, "lot_id", out)
            check_qty(cmd.qty, "qty", out)
            check_bin(cmd.bin, "bin", out)
            check_owner(cmd.owner, "owner", out)
            check_status(cmd.from_status, "from_status", out, statuses)
            check_status(cmd.to_status, "to_status", out, statuses)
        case Reserve():
            check_id(cmd.hold_id, "hold_id", out)
            if not 0 < cmd.ttl_ms <= MAX_TTL_MS:
                out.append(FieldViolation("ttl_ms", f"must be in 1..{MAX_TTL_MS}"))
            if not cmd.lines:
                out.append(FieldViolation("lines", "must not be empty"))
            if len(cmd.lines) > MAX_LINES:
                out.append(FieldViolation("lines", f"must have at most {MAX_LINES} lines"))
            for i, line in enumerate(cmd.lines[:MAX_LINES]):
                validate_reserve_line(line, f"lines[{i}]", out)
        case Commit():
            check_id(cmd.hold_id, "hold_id", out)
            if cmd.qty is not None:
                check_qty(cmd.qty, "qty", out, allow_zero=True)
        case Release():
            check_id(cmd.hold_id, "hold_id", out)
        case Consume():
            check_qty(cmd.qty, "qty", out)
            check_id(cmd.lot_id, "lot_id", out, required=cmd.strategy is Strategy.LOT)
            check_bin(cmd.bin_prefix, "bin_prefix", out)
            check_owner(cmd.owner, "owner", out, filter_=True)
        case Adjust():
            check_id(cmd.lot_id, "lot_id", out)
            check_qty(cmd.counted_qty, "counted_qty", out, allow_zero=True)
            check_bin(cmd.bin, "bin", out)
            check_owner(cmd.owner, "owner", out)
            check_status(cmd.status, "status", out, statuses)
            if not cmd.reason or len(cmd.reason) > 64:
                out.append(FieldViolation("reason", "must be 1..64 characters"))
    if out:
        raise InvalidArgument(out)


def validate_reserve_line(line: ReserveLine, prefix: str, out: list[FieldViolation]) -> None:
    check_qty(line.qty, f"{prefix}.qty", out)
    if not isinstance(line.strategy, Strategy):
        out.append(FieldViolation(f"{prefix}.strategy", "must be fefo, fifo, lifo or lot"))
    check_id(line.lot_id, f"{prefix}.lot_id", out, required=line.strategy is Strategy.LOT)
    check_owner(line.owner, f"{prefix}.owner", out, filter_=True)
    check_bin(line.bin_prefix, f"{prefix}.bin_prefix", out)
    days = line.min_shelf_life_days
    if not isinstance(days, int | float) or math.isnan(days) or not 0 <= days <= 36_500:
        out.append(FieldViolation(f"{prefix}.min_shelf_life_days", "must be in 0..36500"))


def same_payload(a: Command, b: Command) -> bool:
    """Idempotency: equal in every field but the request id (which matched already)."""
    if type(a) is not type(b):
        return False
    return all(getattr(a, f.name) == getattr(b, f.name) for f in fields(a) if f.name != "request_id")
