"""The in-memory document store (engine.domain.documents.DocumentStore): unit tests and
`journal=memory` engines, where nothing is durable anyway."""

from __future__ import annotations

import json
from typing import Any

from engine.domain.documents import MAX_DOCUMENT_BYTES, RevisionMismatch, Stored


class InMemoryDocuments:
    def __init__(self) -> None:
        self._docs: dict[str, tuple[bytes, int]] = {}

    async def get(self, key: str) -> Stored | None:
        found = self._docs.get(key)
        if found is None:
            return None
        # Decoded afresh on every read, as from a real store: callers cannot alias stored state.
        return Stored(key, json.loads(found[0]), found[1])

    async def put(self, key: str, value: dict[str, Any], expected_revision: int) -> int:
        data = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        if len(data) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"document {key!r} is {len(data)} bytes, over {MAX_DOCUMENT_BYTES}")
        current = self._docs.get(key)
        if (current[1] if current else 0) != expected_revision:
            raise RevisionMismatch(key, expected_revision)
        revision = expected_revision + 1
        self._docs[key] = (data, revision)
        return revision

    async def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self._docs if k.startswith(prefix))

    async def close(self) -> None:
        return None
