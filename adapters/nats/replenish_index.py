"""Every stored suggestion's key, state, flag and version, in key order, kept in memory by one
ordered consumer of the replenishment bucket's `s.` subjects, headers only.

Why: a listing over 100,000 pairs used to learn the keys with a fresh key watch per page
(every key's message, ~1.5 s of CPU and 4-5 s here) and then read values one by one until
its page was full, so a filter on state or flag read most of the bucket. Each suggestion
write now carries its state and flag as message headers (STATE_HEADER, FLAGGED_HEADER),
this index follows them (the values never cross the wire), and a page reads the values of
its own rows only. Writers in other processes are seen as soon as their message arrives; a
write of this process is noted at once (`note`), so a listing right after a decision shows
it. A suggestion written before the headers existed has state and flag None: the listing
reads its value to know.

The replenishment trigger asks it too (`stamp`): a moved pair whose stored suggestion it holds
with the stamp known here needs no read of it. The trigger starts the index itself (`follow`).

Bounded: one entry per stored suggestion (the bucket's own bound); started on the first
listing (an engine nobody lists pays nothing), waited for at most `ready_timeout_s`."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api

from engine.domain.errors import Unavailable
from engine.replenish.store import SuggestionEntry, SuggestionStamp, entries_after

STATE_HEADER = "Lotwise-State"
FLAGGED_HEADER = "Lotwise-Flagged"
VERSION_HEADER = "Lotwise-Version"
KV_OPERATION = "KV-Operation"
REMOVED = ("DEL", "PURGE")


def suggestion_headers(state: str, flagged: bool, version: int) -> dict[str, str]:
    return {STATE_HEADER: state, FLAGGED_HEADER: "1" if flagged else "0", VERSION_HEADER: str(version)}


def _version_of(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(slots=True)
class _Known:
    state: str | None
    flagged: bool | None
    seq: int  # the stream sequence it was written at: an older message never overwrites it
    version: int | None = None  # None: written before the version header


class SuggestionIndex:
    def __init__(
        self,
        client: Callable[[], Awaitable[tuple[NatsClient, JetStreamContext]]],
        stream: str,
        subject_prefix: str,
        key_of_token: Callable[[str], str],
    ) -> None:
        self._client, self._stream, self._prefix = client, stream, subject_prefix
        self._key_of = key_of_token  # the store's decoding of a subject's key token
        self._known: dict[str, _Known] = {}
        self._keys: list[str] = []  # sorted pair keys
        self._ready = asyncio.Event()
        self._sub: Subscription | None = None
        self._nc: NatsClient | None = None
        self._starting = asyncio.Lock()
        self._following: asyncio.Task[None] | None = None

    async def entries(self, after: str, limit: int, site: str, ready_timeout_s: float) -> list[SuggestionEntry]:
        await self._loaded(ready_timeout_s)
        return entries_after(self._keys, after, limit, site, self._entry)

    async def keys(self, ready_timeout_s: float) -> list[str]:
        await self._loaded(ready_timeout_s)
        return list(self._keys)

    async def _loaded(self, ready_timeout_s: float) -> None:
        """Started, and holding everything stored when it started; else Unavailable (a listing
        answers UNAVAILABLE, retryable, not INTERNAL) after `ready_timeout_s`."""
        await self._start()
        try:
            await asyncio.wait_for(self._ready.wait(), ready_timeout_s)
        except TimeoutError:
            raise Unavailable(
                f"the suggestion index did not load within {ready_timeout_s:.0f} s ({len(self._keys)} keys so far)"
            ) from None

    def note(self, key: str, state: str, flagged: bool, seq: int, version: int | None = None) -> None:
        """A write of this process, acknowledged at stream sequence `seq`."""
        self._put(key, _Known(state, flagged, seq, version))

    def stamp(self, key: str) -> SuggestionStamp | None:
        """The key's stamp once the index holds everything stored (else None: read the value).
        The first call starts the index in the background (`follow`)."""
        if not self._ready.is_set():
            self.follow()
            return None
        known = self._known.get(key)
        if known is None or known.version is None or known.state is None or known.flagged is None:
            return None
        return SuggestionStamp(known.version, known.state, known.flagged)

    def absent(self, key: str) -> bool:
        """True once the index holds everything stored and `key` is not in it (a key written
        or deleted since reaches it by the bucket's stream; a write of this process at once)."""
        if not self._ready.is_set():
            self.follow()
            return False
        return key not in self._known

    def follow(self) -> None:
        """Start following the bucket in the background, once (a failed start is tried again
        on the next call)."""
        if self._following is not None and not self._following.done():
            return
        self._following = asyncio.get_running_loop().create_task(self._follow(), name="replenish-index-follow")

    async def _follow(self) -> None:
        try:
            await self._start()
        except Exception:  # e.g. the connection is down: the trigger reads values meanwhile
            return

    async def stop(self) -> None:
        if self._following is not None:
            self._following.cancel()
            await asyncio.gather(self._following, return_exceptions=True)
            self._following = None
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(Exception):  # the connection may be closing with it
                await sub.unsubscribe()

    def _entry(self, key: str) -> SuggestionEntry:
        known = self._known[key]
        return SuggestionEntry(key, known.state, known.flagged)

    def _put(self, key: str, known: _Known) -> None:
        before = self._known.get(key)
        if before is not None and before.seq >= known.seq:
            return
        if before is None:
            bisect.insort(self._keys, key)
        self._known[key] = known

    def _remove(self, key: str, seq: int) -> None:
        before = self._known.get(key)
        if before is None or before.seq >= seq:
            return
        del self._known[key]
        del self._keys[bisect.bisect_left(self._keys, key)]

    async def _start(self) -> None:
        async with self._starting:
            if self._sub is not None and self._nc is not None and not self._nc.is_closed:
                return
            # First listing, or the connection was replaced (its subscription died with it):
            # load afresh; the ordered consumer itself rides out reconnects of one connection.
            self._known, self._keys, self._ready = {}, [], asyncio.Event()
            self._nc, js = await self._client()
            self._sub = await js.subscribe(
                f"{self._prefix}>",
                stream=self._stream,
                cb=self._on_message,
                ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
                headers_only=True,
            )
            info = await self._sub.consumer_info()
            if info.num_pending == 0 and self._sub.delivered == 0:
                self._ready.set()  # nothing stored

    async def _on_message(self, msg: Msg) -> None:
        meta = msg.metadata
        key = self._key_of(msg.subject[len(self._prefix) :])
        headers = msg.headers or {}
        if headers.get(KV_OPERATION) in REMOVED:
            self._remove(key, meta.sequence.stream)
        else:
            flagged = headers.get(FLAGGED_HEADER)
            self._put(
                key,
                _Known(
                    headers.get(STATE_HEADER),
                    None if flagged is None else flagged == "1",
                    meta.sequence.stream,
                    _version_of(headers.get(VERSION_HEADER)),
                ),
            )
        if meta.num_pending == 0:
            self._ready.set()
