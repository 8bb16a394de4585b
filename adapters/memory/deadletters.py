"""The in-memory dead-letter store (engine.domain.ports.DeadLetterStore)."""

from __future__ import annotations

import builtins

from engine.domain.deadletters import (
    DEFAULT_LIST_LIMIT,
    DEFAULT_MAX_LETTERS,
    RESOURCE_TYPE,
    DeadLetter,
    StoredDeadLetter,
    check_list_args,
)
from engine.domain.errors import NotFound, Overloaded


class InMemoryDeadLetters:
    """The DeadLetterStore of unit tests and `journal=memory` engines: bounded, in order."""

    def __init__(self, max_letters: int = DEFAULT_MAX_LETTERS) -> None:
        if max_letters <= 0:
            raise ValueError("max_letters must be positive")
        self.max_letters = max_letters
        self._letters: dict[int, DeadLetter] = {}  # insertion order is seq order
        self._by_key: dict[str, int] = {}
        self._last_seq = 0

    async def put(self, letter: DeadLetter) -> int:
        seq = self._by_key.get(letter.key)
        if seq is not None:
            return seq
        if len(self._letters) >= self.max_letters:
            raise Overloaded("dead-letter store", self.max_letters)
        self._last_seq += 1
        self._letters[self._last_seq] = letter
        self._by_key[letter.key] = self._last_seq
        return self._last_seq

    async def list(
        self, *, after_seq: int = 0, limit: int = DEFAULT_LIST_LIMIT, code: str = ""
    ) -> builtins.list[StoredDeadLetter]:
        check_list_args(after_seq, limit, code)
        out: builtins.list[StoredDeadLetter] = []
        for seq, letter in self._letters.items():  # bounded by max_letters
            if seq <= after_seq or (code and letter.code != code):
                continue
            out.append(StoredDeadLetter(seq, letter))
            if len(out) >= limit:
                break
        return out

    async def get(self, seq: int) -> StoredDeadLetter:
        letter = self._letters.get(seq)
        if letter is None:
            raise NotFound(RESOURCE_TYPE, str(seq))
        return StoredDeadLetter(seq, letter)

    async def delete(self, seq: int) -> None:
        letter = self._letters.pop(seq, None)
        if letter is None:
            raise NotFound(RESOURCE_TYPE, str(seq))
        if self._by_key.get(letter.key) == seq:
            del self._by_key[letter.key]

    async def count(self) -> int:
        return len(self._letters)
