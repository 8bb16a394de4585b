"""The dead-letter desk: list, show and replay dead letters (DESIGN.md §12; `lotwise dlq`).

A service over the dead-letter store port; the Admin service and the CLI use it.

A replay publishes the letter's original bytes to its original subject again, so the
ingestion consumer sees the event as if it had just arrived (after the operator fixed
what was missing: the sku, the site, the cabinet mapping), and only then removes the
letter. A replay that fails leaves the letter where it is. Replaying an event that was
already applied changes nothing: its event id is the engine's request id.

No NATS here: `republish` is a function (adapters.nats.deadletter.nats_republish).
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Sequence

import structlog

from engine.domain.deadletters import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    DeadLetter,
    ReplayResult,
    StoredDeadLetter,
    check_list_args,
    code_violations,
)
from engine.domain.errors import FieldViolation, InvalidArgument, NotFound
from engine.domain.ports import DeadLetterStore

log = structlog.get_logger("lotwise.deadletters")

Republish = Callable[[str, bytes, dict[str, str]], Awaitable[None]]

MAX_REPLAY = 1_000  # letters one replay call handles at most: a bound on the call's time
H_REPLAY_OF = "Lotwise-Replay-Of"
H_MSG_ID = "Nats-Msg-Id"
# Publish-time expectations of the original publisher (Nats-Expected-Last-Sequence, ...)
# no longer hold on a replay and would get it refused: they are not copied.
_DROPPED_PREFIXES = ("nats-expected-",)


def replay_headers(stored: StoredDeadLetter) -> dict[str, str]:
    """The original headers, minus Nats-Msg-Id and publish-time expectations, plus
    `Lotwise-Replay-Of: <seq>` and `Nats-Msg-Id: replay:<key>:<seq>`. The new message id
    keeps the inbound stream's duplicate window from swallowing the replay (the original
    id is in it), yet a replay retried after a lost answer is still stored once.

    A header repeated in the original keeps its last value (publishing takes a dict)."""
    letter = stored.letter
    headers: dict[str, str] = {}
    for name, value in letter.headers:
        lowered = name.lower()
        if lowered in (H_MSG_ID.lower(), H_REPLAY_OF.lower()) or lowered.startswith(_DROPPED_PREFIXES):
            continue
        headers[name] = value
    headers[H_REPLAY_OF] = str(stored.seq)
    headers[H_MSG_ID] = f"replay:{letter.key}:{stored.seq}"
    return headers


class DeadLetterDesk:
    """What the Admin service and the CLI use: a store plus a way to publish again."""

    def __init__(self, store: DeadLetterStore, republish: Republish) -> None:
        self.store = store
        self._republish = republish

    async def list(
        self, *, after_seq: int = 0, limit: int = DEFAULT_LIST_LIMIT, code: str = ""
    ) -> builtins.list[StoredDeadLetter]:
        check_list_args(after_seq, limit, code)
        return await self.store.list(after_seq=after_seq, limit=limit, code=code)

    async def show(self, seq: int) -> StoredDeadLetter:
        if seq <= 0:
            raise InvalidArgument([FieldViolation("seq", f"must be ≥ 1 (got {seq})")])
        return await self.store.get(seq)

    async def count(self) -> int:
        return await self.store.count()

    async def replay(self, seqs: Sequence[int] | None, *, code: str = "", limit: int = MAX_REPLAY) -> ReplayResult:
        """Replay the letters `seqs` (in the order given, each once), or with `seqs=None`
        the oldest `limit` letters (of `code`, if given) as they are when the call starts:
        letters that arrive meanwhile — a replay that fails again comes back as a new
        letter — wait for the next call, so a replay always ends."""
        violations = code_violations(code)
        if not 1 <= limit <= MAX_REPLAY:
            violations.append(FieldViolation("limit", f"must be in 1..{MAX_REPLAY} (got {limit})"))
        if seqs is not None:
            if code:
                violations.append(FieldViolation("code", "filters a replay of all letters; not with seqs"))
            if len(seqs) > MAX_REPLAY:
                violations.append(FieldViolation("seqs", f"at most {MAX_REPLAY} per call (got {len(seqs)})"))
            violations.extend(
                FieldViolation(f"seqs[{i}]", f"must be ≥ 1 (got {s})") for i, s in enumerate(seqs) if s <= 0
            )
        if violations:
            raise InvalidArgument(violations)

        result = ReplayResult()
        if seqs is None:
            for stored in await self._oldest(code, limit):
                await self._replay_one(stored, result)
            return result
        for seq in dict.fromkeys(seqs):
            try:
                stored = await self.store.get(seq)
            except NotFound:
                result.failed.append((seq, "not found (already replayed or deleted?)"))
                continue
            except Exception as exc:  # the store did not answer: this letter stays, the others go on
                result.failed.append((seq, _describe(exc)))
                continue
            await self._replay_one(stored, result)
        return result

    async def _oldest(self, code: str, limit: int) -> builtins.list[StoredDeadLetter]:
        found: builtins.list[StoredDeadLetter] = []
        after = 0
        while len(found) < limit:  # each page advances `after`: at most limit / page + 1 pages
            page = await self.store.list(after_seq=after, limit=min(MAX_LIST_LIMIT, limit - len(found)), code=code)
            if not page:
                break
            found.extend(page)
            after = page[-1].seq
        return found

    async def _replay_one(self, stored: StoredDeadLetter, result: ReplayResult) -> None:
        letter: DeadLetter = stored.letter
        try:
            await self._republish(letter.subject, letter.payload, replay_headers(stored))
        except Exception as exc:
            result.failed.append((stored.seq, f"republish to {letter.subject} failed: {_describe(exc)}"))
            log.warning("dead letter not replayed", seq=stored.seq, key=letter.key, error=_describe(exc))
            return
        try:
            await self.store.delete(stored.seq)
        except NotFound:
            pass  # someone else replayed or deleted it meanwhile: it is gone either way
        except Exception as exc:
            # Published, but still stored: a second replay publishes it with the same
            # message id (deduplicated by the inbound stream) and the same event id.
            result.failed.append((stored.seq, f"republished, but not removed from the store: {_describe(exc)}"))
            return
        result.replayed.append(stored.seq)
        log.info("dead letter replayed", seq=stored.seq, key=letter.key, subject=letter.subject, code=letter.code)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
