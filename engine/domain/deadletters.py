"""Dead letters: inbound messages that could not be used, kept with the reason (DESIGN.md §12).

An ingestion consumer (IoT cabinets, WMS) that cannot decode, validate or apply a
message stores it here, with the original bytes and headers untouched, and acknowledges
the message only after the store has confirmed it: bad input never blocks a consumer and
is never lost. An operator lists, shows and replays dead letters (`lotwise dlq`).

This module is pure: the letter, the store port, and a bounded in-memory store that the
unit tests use and the contract suite holds every real store to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from engine.domain.errors import FieldViolation, InvalidArgument

MAX_REASON_CHARS = 2_000
MAX_KEY_CHARS = 256
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1_000
DEFAULT_MAX_LETTERS = 100_000
RESOURCE_TYPE = "dead letter"  # NotFound's resource type → reason DEAD_LETTER_NOT_FOUND


class DeadLetterCode(StrEnum):
    """Why a message is a dead letter. Stable identifiers: filters and alerts use them."""

    DECODE = "decode_error"  # not JSON/Avro at all, bad UTF-8, truncated
    SCHEMA = "schema_violation"  # decodes, but fields missing / wrong type / unknown event type
    UNKNOWN_REF = "unknown_reference"  # unknown sku, site, cabinet, scanner, GTIN
    INVALID = "invalid_value"  # impossible quantity, bad barcode, bad dates...
    REFUSED = "refused"  # the engine refused the command for good (lot not found, transition not allowed)
    GAVE_UP = "gave_up"  # a transient failure outlasted max_deliver
    SITE_NOT_ALLOWED = "site_not_allowed"  # the sender (device, WMS) may not post for that site


CODES = frozenset(c.value for c in DeadLetterCode)


def _header_safe(text: str) -> str:
    """One line: CR, LF and other control characters become spaces (the reason travels
    in a message header, and is read by people in tables and logs)."""
    return "".join(" " if ch < " " or ch == "\x7f" else ch for ch in text)


def _is_token_text(text: str) -> bool:
    return bool(text) and all("!" <= ch <= "~" for ch in text)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter. Built by the consumer; the store keeps every field exactly, except
    `reason`, which is made one line and at most MAX_REASON_CHARS here, at construction."""

    key: str  # idempotency key: "<stream>:<stream_seq>" of the original message
    subject: str  # the subject it was published on (replay publishes there again)
    payload: bytes  # the original bytes, untouched
    code: DeadLetterCode
    reason: str  # human-readable; one line, truncated to MAX_REASON_CHARS
    event_id: str = ""  # when it could be read
    event_type: str = ""  # e.g. "cabinet.scan_take", "wms.receipt"
    deliveries: int = 1  # how many times the consumer had received the message
    failed_at_ms: int = 0  # UTC epoch ms; 0: not said (the store does not invent it)
    headers: tuple[tuple[str, str], ...] = ()  # the original message's headers, in order

    def __post_init__(self) -> None:
        # A bad letter is a bug in the consumer that builds it, not bad input: ValueError.
        if not _is_token_text(self.key) or len(self.key) > MAX_KEY_CHARS:
            raise ValueError(f"dead letter key {self.key!r}: 1..{MAX_KEY_CHARS} printable ASCII, no spaces")
        tokens = self.subject.split(".")
        if not self.subject or any(not _is_token_text(t) or t in ("*", ">") for t in tokens):
            raise ValueError(f"dead letter subject {self.subject!r} is not a literal NATS subject")
        if not isinstance(self.payload, bytes):
            object.__setattr__(self, "payload", bytes(self.payload))
        object.__setattr__(self, "code", DeadLetterCode(self.code))
        object.__setattr__(self, "reason", _header_safe(self.reason)[:MAX_REASON_CHARS])
        if self.deliveries < 0 or self.failed_at_ms < 0:
            raise ValueError("dead letter deliveries and failed_at_ms must be ≥ 0")
        headers = tuple((str(k), str(v)) for k, v in self.headers)
        object.__setattr__(self, "headers", headers)


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    seq: int  # position in the dead-letter store (stable id for show/replay)
    letter: DeadLetter


@dataclass(frozen=True, slots=True)
class ReplayResult:
    replayed: list[int] = field(default_factory=list)  # seqs republished and removed from the store
    failed: list[tuple[int, str]] = field(default_factory=list)  # (seq, why): still in the store


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """One page of a listing over the API. Listed letters come without their payloads
    (payload b""): `show` a letter for its bytes."""

    letters: tuple[StoredDeadLetter, ...]
    next_after_seq: int  # pass as after_seq for the next page; 0 when this page reached the end
    total: int  # letters in the store, of every code


def list_violations(after_seq: int, limit: int, code: str) -> list[FieldViolation]:
    """What is wrong with list arguments (empty: nothing)."""
    out: list[FieldViolation] = []
    if after_seq < 0:
        out.append(FieldViolation("after_seq", f"must be ≥ 0 (got {after_seq})"))
    if not 1 <= limit <= MAX_LIST_LIMIT:
        out.append(FieldViolation("limit", f"must be in 1..{MAX_LIST_LIMIT} (got {limit})"))
    out.extend(code_violations(code))
    return out


def code_violations(code: str, field_name: str = "code") -> list[FieldViolation]:
    if code and code not in CODES:
        return [FieldViolation(field_name, f"unknown code {code!r}; one of {', '.join(sorted(CODES))}")]
    return []


def check_list_args(after_seq: int, limit: int, code: str) -> None:
    violations = list_violations(after_seq, limit, code)
    if violations:
        raise InvalidArgument(violations)
