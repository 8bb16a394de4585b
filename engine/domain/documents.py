"""Documents: small records of the engine's own workflow (the org tree, transfers) kept
whole, each under a key, each change a new revision (DESIGN.md §9, §10).

Stock lives in cells and their journal; a document is what the engine decides *about*
stock — who asked for a transfer, who approved it, when each step happened. A document
store keeps every revision durably and refuses a write based on a stale revision, so two
gateways changing one document cannot lose an update: the loser reloads and tries again.
Values are JSON objects (never pickle), so any reader can decode them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

MAX_DOCUMENT_BYTES = 512 * 1024  # well under NATS' 1 MiB message limit
MAX_KEY_LEN = 200


@dataclass(frozen=True, slots=True)
class Stored:
    """A document as stored: its JSON value and the revision that value is at (≥ 1)."""

    key: str
    value: dict[str, Any]
    revision: int


class RevisionMismatch(Exception):
    """The document changed since it was read (or was created meanwhile): read it again."""

    def __init__(self, key: str, expected: int) -> None:
        super().__init__(f"document {key!r} is no longer at revision {expected}")
        self.key = key
        self.expected = expected


class DocumentStore(Protocol):
    """Durable, revisioned JSON documents. `expected_revision` 0 means "must not exist"."""

    async def get(self, key: str) -> Stored | None: ...

    async def put(self, key: str, value: dict[str, Any], expected_revision: int) -> int:
        """Store `value` if the document is at `expected_revision`; the new revision.
        RevisionMismatch otherwise; ValueError for a value over MAX_DOCUMENT_BYTES."""
        ...

    async def keys(self, prefix: str) -> list[str]:
        """The keys of the live documents whose key starts with `prefix` (ends with '.')."""
        ...

    async def close(self) -> None: ...
