"""Multi-line hold coordination across cells (DESIGN.md §7).

A hold's lines may live in several cells (pairs), each the single writer of its part.
Reserve sends every line at once and, when one fails, compensates the lines already
held (all or nothing). Commit and release are pre-checked with the cells' own rules
(engine.domain.holds) before any part is sent, because a commit cannot be undone.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import structlog

from engine.domain.catalog import Pair
from engine.domain.commands import (
    UNDO_SUFFIX,  # noqa: F401 (re-exported by engine.runtime.gateway)
    Commit,
    Release,
    Reserve,
    Reserved,
    ReserveLine,
    check_doc_ref,
    check_finance,
    check_id,
    check_qty,
    undo_request_id,
    validate_reserve_line,
)
from engine.domain.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from engine.domain.hold_listing import ScanHolds, check_listing
from engine.domain.hold_parts import CheckPart, HoldParts, PartCheck, PartCommand, ReadPart, check_part
from engine.domain.holds import (
    MAX_LINES,
    check_line_count,
    check_ttl,
    commit_plan,
    hold_not_found,
    is_hold_aborted,
)
from engine.domain.inventory import CommitLine
from engine.domain.model import Finance, HoldState, HoldView
from engine.domain.shard import CellAdopting, CellMoved, HoldHeader, LookupHold, ReadHold, RegisterHold
from engine.domain.statuses import StatusDictionary
from engine.runtime.gateway.router import Router, Target, raise_if_refused
from engine.runtime.types import AggregateState, HoldLine, HoldSummary, aggregate_state

log = structlog.get_logger("lotwise.gateway")

HEADER_CACHE_MAX = 100_000  # hold headers remembered by a gateway (≈ 30 MB at most)


class HoldCoordinator:
    """Reserve, commit, release and read holds that span cells."""

    def __init__(self, router: Router, statuses: StatusDictionary) -> None:
        self._router = router
        self._statuses = statuses
        self._headers: OrderedDict[str, HoldHeader] = OrderedDict()

    async def reserve(
        self,
        request_id: str,
        hold_id: str,
        lines: Sequence[HoldLine],
        ttl_ms: int,
        doc_ref: str,
        deadline: float | None,
        finance: Finance | None,
    ) -> HoldSummary:
        """Hold stock over the lines, all or nothing; each pair's Reserve carries `finance`."""
        hold_id = hold_id or request_id
        # Every field of every part, checked once here (the parts differ only in their pair
        # and lines): what engine.domain.commands.validate would refuse in any of them.
        by_pair = _validate_hold(request_id, hold_id, lines, ttl_ms, doc_ref, finance)
        cmds = [
            Reserve(request_id, sku, site, hold_id, tuple(ls), ttl_ms, doc_ref, finance)
            for (sku, site), ls in by_pair.items()
        ]
        header = HoldHeader(hold_id, request_id, tuple(by_pair), ttl_ms)
        # The header and every part go out at once: one round trip, not two.
        home = self._router.directory.home_for(hold_id)
        (header_result,), line_results = await self._send_parts(cmds, deadline, first=[(home, RegisterHold(header))])
        failures = [r for r in (header_result, *line_results) if isinstance(r, BaseException)]
        if failures:
            # All-or-nothing: abort every line that was held, and every line whose outcome
            # is unknown (its shard failed mid-call; the reserve may be in its journal).
            # A line that was refused outright holds nothing and needs no abort.
            undo = [
                c
                for c, r in zip(cmds, line_results, strict=True)
                if not isinstance(r, BaseException) or isinstance(r, Unavailable | DeadlineExceeded)
            ]
            await self._abort(request_id, hold_id, undo, doc_ref)
            raise _root_cause(failures)
        # No failure: the shards answered what these ops answer (their replies are untyped).
        self._remember(cast(HoldHeader, header_result))
        parts = tuple(cast(Reserved, r).hold for r in line_results)
        return HoldSummary(hold_id, aggregate_state(parts), parts, min(p.expires_at_ms for p in parts))

    async def _abort(self, request_id: str, hold_id: str, lines: Sequence[Reserve], doc_ref: str) -> None:
        """Roll back the lines of a failed hold. Best effort by design: a line whose abort
        cannot be delivered now stays held at most until its TTL, and a retry of the same
        reserve aborts it again (its other lines answer HOLD_ABORTED)."""
        if not lines:
            return
        undo = undo_request_id(request_id)
        aborts = [Release(undo, c.sku, c.site, hold_id, doc_ref, abort=True) for c in lines]
        _, results = await self._send_parts(aborts, None, essential=True)
        for cmd, result in zip(lines, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, NotFound | FailedPrecondition):
                log.warning("abort of a failed hold line not delivered", hold_id=hold_id, sku=cmd.sku, site=cmd.site)

    async def commit(
        self,
        request_id: str,
        hold_id: str,
        lines: Sequence[CommitLine] | None,
        doc_ref: str,
        deadline: float | None,
        finance: Finance | None,
    ) -> HoldSummary:
        """Commit the hold at every pair; each pair's Commit carries `finance`."""
        _check_resolve_input(request_id, doc_ref, lines, finance)  # shape first: bad input costs no shard call
        header = await self._header(hold_id, deadline)
        plan = commit_plan(header.pairs, lines) if lines is not None else {}
        cmds = [
            Commit(request_id, sku, site, hold_id, plan.get((sku, site)), doc_ref, finance)
            for sku, site in header.pairs
        ]
        qty_by_pair = {(c.sku, c.site): c.qty for c in cmds}
        return await self._resolve(hold_id, header, cmds, qty_by_pair, HoldState.COMMITTED, deadline)

    async def release(
        self, request_id: str, hold_id: str, doc_ref: str, deadline: float | None, finance: Finance | None
    ) -> HoldSummary:
        """Release the hold at every pair; each pair's Release carries `finance`."""
        _check_resolve_input(request_id, doc_ref, None, finance)  # bad input costs no shard call
        header = await self._header(hold_id, deadline)
        cmds = [Release(request_id, sku, site, hold_id, doc_ref, finance=finance) for sku, site in header.pairs]
        return await self._resolve(hold_id, header, cmds, dict.fromkeys(header.pairs), HoldState.RELEASED, deadline)

    async def _resolve(
        self,
        hold_id: str,
        header: HoldHeader,
        cmds: Sequence[Commit | Release],
        qty_by_pair: dict[Pair, int | None],
        done_state: HoldState,
        deadline: float | None,
    ) -> HoldSummary:
        """Pre-check, then send every part's commit or release at once."""
        # The parts' shape was checked by _check_resolve_input (their ids, doc_ref, finance
        # and a commit's qty) and _header (the hold id); their pairs are the header's.
        results = await self._resolve_on_one_shard(header, cmds, deadline)
        if results is None:
            await self._check_parts(hold_id, header, qty_by_pair, done_state, deadline)
            # The commits (releases) are the request's last ops: a batch's next command on these
            # pairs may queue right behind them (engine.api.batch).
            _, results = await self._send_parts(cmds, deadline, last=True)
        return _summary(hold_id, [r.hold for r in _first_refusal_last(results)])

    async def _resolve_on_one_shard(
        self, header: HoldHeader, cmds: Sequence[Commit | Release], deadline: float | None
    ) -> list[Any] | None:
        """A hold of several pairs that all live on one shard: its commit (release) goes as one
        all-or-nothing op, which that shard pre-checks and applies in one batch — one round
        trip, not a read and then the commands (engine.domain.hold_parts). None when the hold
        spans shards, or a pair moved meanwhile (nothing was applied): the two-step way."""
        directory = self._router.directory
        shards = {directory.shard_for(sku, site) for sku, site in header.pairs}
        if len(header.pairs) == 1 or len(shards) != 1:
            return None  # one pair: its own command is all-or-nothing already
        (shard,) = shards
        (result,) = await self._router.send_all(
            [(shard, HoldParts.of(cmds, all_or_nothing=True))], deadline, return_exceptions=True, last=True
        )
        answers = [result] * len(cmds) if isinstance(result, BaseException) else list(result)
        if any(isinstance(a, CellMoved | CellAdopting) for a in answers):
            return None
        return answers

    async def _check_parts(
        self,
        hold_id: str,
        header: HoldHeader,
        qty_by_pair: dict[Pair, int | None],
        done_state: HoldState,
        deadline: float | None,
    ) -> None:
        """Refuse a commit or release before sending any part that a cell would refuse.

        Parts of one hold live in several cells and a commit cannot be undone, so a refusal
        must come before anything is applied (a refused command changes nothing). The reads
        go through the same per-shard queues as the commands that follow. When no part is
        active any more (a retry, or a hold already resolved), the commands go out as they
        are: cells answer retries from their idempotency window, others with the reason.
        """
        if len(header.pairs) == 1:
            return  # one cell: its own command is all-or-nothing already
        checks = [CheckPart(sku, site, hold_id, done_state, qty_by_pair.get((sku, site))) for sku, site in header.pairs]
        _, answers = await self._send_parts(checks, deadline)
        found = cast(list[PartCheck], _first_refusal_last(answers))
        if not any(active for active, _ in found):
            return
        refusal = next((r for _, r in found if r is not None), None)
        if refusal is not None:
            raise refusal

    async def _parts(self, hold_id: str, header: HoldHeader, deadline: float | None) -> list[HoldView | None]:
        _, views = await self._send_parts([ReadPart(sku, site, hold_id) for sku, site in header.pairs], deadline)
        return _first_refusal_last(views)

    async def _send_parts(
        self,
        cmds: Sequence[PartCommand],
        deadline: float | None,
        *,
        first: Sequence[tuple[Target, Any]] = (),
        essential: bool = False,
        last: bool = False,
    ) -> tuple[list[Any], list[Any]]:
        """Send `first`'s ops, then `cmds` as one HoldParts per shard, all queued at once;
        → (the answers to `first`, each command's answer in `cmds` order). A failed call is
        the answer of each of its ops (as a value); a part whose pair moved meanwhile is
        followed on its own, as Router.to_pair does (rare: a hand-off)."""
        router = self._router
        by_shard: dict[str, list[int]] = {}
        for i, cmd in enumerate(cmds):
            by_shard.setdefault(router.directory.shard_for(cmd.sku, cmd.site), []).append(i)
        sends = [*first, *((name, HoldParts.of([cmds[i] for i in idx])) for name, idx in by_shard.items())]
        results = await router.send_all(sends, deadline, essential=essential, return_exceptions=True, last=last)
        answers: list[Any] = [None] * len(cmds)
        for idx, result in zip(by_shard.values(), results[len(first) :], strict=True):
            for n, i in enumerate(idx):
                answers[i] = result if isinstance(result, BaseException) else result[n]
        moved = [i for i, a in enumerate(answers) if isinstance(a, CellMoved | CellAdopting)]
        if moved:
            followed = await asyncio.gather(
                *(self._follow(cmds[i], deadline, essential) for i in moved),
                return_exceptions=True,
            )
            for i, answer in zip(moved, followed, strict=True):
                answers[i] = answer
        return list(results[: len(first)]), answers

    async def _follow(self, cmd: PartCommand, deadline: float | None, essential: bool) -> Any:
        """A part whose pair moved, sent on its own to the pair's new shard (read and check
        parts as the ReadHold they are; a check is then made here, as the shard would)."""
        if isinstance(cmd, Reserve | Commit | Release):
            return await self._router.to_pair(cmd.sku, cmd.site, cmd, deadline, essential)
        view = raise_if_refused(
            await self._router.to_pair(cmd.sku, cmd.site, ReadHold(cmd.sku, cmd.site, cmd.hold_id), deadline)
        )
        return check_part(cmd, view) if isinstance(cmd, CheckPart) else view

    async def get_hold(self, hold_id: str) -> HoldSummary:
        header = await self._header(hold_id, None)
        found = [p for p in await self._parts(hold_id, header, None) if p is not None]
        if not found:
            raise hold_not_found(hold_id)
        return _summary(hold_id, found)

    async def _header(self, hold_id: str, deadline: float | None) -> HoldHeader:
        out: list[FieldViolation] = []
        check_id(hold_id, "hold_id", out)
        if out:
            raise InvalidArgument(out)
        cached = self._headers.get(hold_id)
        if cached is not None:
            self._headers.move_to_end(hold_id)
            return cached
        header: HoldHeader = raise_if_refused(await self._router.home(hold_id, LookupHold(hold_id), deadline))
        self._remember(header)
        return header

    async def list_holds(self, q: ScanHolds, deadline: float | None) -> tuple[list[HoldSummary], str]:
        """A page of holds, each with its parts that match (and that the caller may see),
        and the hold id the next page starts after ("" on the last page). Each shard
        answers one more id than the page holds, so "is there more" needs no second call."""
        check_listing(q)
        merged: dict[str, list[HoldView]] = {}
        for result in await self._router.broadcast(replace(q, limit=q.limit + 1), deadline):
            for part in raise_if_refused(result):
                merged.setdefault(part.hold_id, []).append(part)
        ids = sorted(merged)
        page = ids[: q.limit]
        holds = [_summary(h, sorted(merged[h], key=lambda p: (p.sku, p.site))) for h in page]
        return holds, page[-1] if len(ids) > q.limit else ""

    def cached_pairs(self, hold_id: str) -> tuple[Pair, ...] | None:
        """The hold's pairs if its header is cached (no shard call; None when it is not)."""
        header = self._headers.get(hold_id)
        return None if header is None else header.pairs

    def _remember(self, header: HoldHeader) -> None:
        """Headers never change once registered, so any gateway may cache them (bounded LRU):
        a commit right after its reserve then needs no lookup round trip."""
        self._headers[header.hold_id] = header
        if len(self._headers) > HEADER_CACHE_MAX:
            self._headers.popitem(last=False)


def _validate_hold(
    request_id: str, hold_id: str, lines: Sequence[HoldLine], ttl_ms: int, doc_ref: str, finance: Finance | None
) -> dict[Pair, list[ReserveLine]]:
    """A hold request's shape, every field at once; its lines grouped by pair."""
    out: list[FieldViolation] = []
    check_id(request_id, "request_id", out)
    check_id(hold_id, "hold_id", out)
    check_ttl(ttl_ms, out)
    check_doc_ref(doc_ref, out)
    check_finance(finance, "finance", out)
    check_line_count(len(lines), out)
    by_pair: dict[Pair, list[ReserveLine]] = {}
    for i, hl in enumerate(lines[:MAX_LINES]):
        check_id(hl.sku, f"lines[{i}].sku", out)
        check_id(hl.site, f"lines[{i}].site", out)
        validate_reserve_line(hl.line, f"lines[{i}]", out)
        by_pair.setdefault((hl.sku, hl.site), []).append(hl.line)
    if out:
        raise InvalidArgument(out)
    return by_pair


def _check_resolve_input(
    request_id: str, doc_ref: str, lines: Sequence[CommitLine] | None, finance: Finance | None
) -> None:
    """What a commit (or release: no lines) can get wrong before its hold is looked up."""
    out: list[FieldViolation] = []
    check_id(request_id, "request_id", out)
    check_doc_ref(doc_ref, out)
    check_finance(finance, "finance", out)
    if lines is not None:
        check_line_count(len(lines), out, required=False)
    for i, line in enumerate((lines or ())[:MAX_LINES]):
        check_id(line.sku, f"lines[{i}].sku", out)
        check_id(line.site, f"lines[{i}].site", out)
        check_qty(line.qty, f"lines[{i}].qty", out, allow_zero=True)
    if out:
        raise InvalidArgument(out)


def _root_cause(failures: Sequence[BaseException]) -> BaseException:
    """Of a failed hold's refusals, the one that says why: a definite refusal (e.g.
    INSUFFICIENT_STOCK) before HOLD_ABORTED (an earlier attempt was rolled back), before
    the retryable UNAVAILABLE."""

    def rank(exc: BaseException) -> int:
        if isinstance(exc, Unavailable | DeadlineExceeded):
            return 2
        if is_hold_aborted(exc):
            return 1
        return 0

    return min(failures, key=rank)


def _first_refusal_last(results: Sequence[Any]) -> list[Any]:
    """Raise the first refusal only after looking at all parts (every part was sent); a
    failure that is no refusal (a bug) first of all."""
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise next((f for f in failures if not isinstance(f, DomainError)), failures[0])
    return list(results)


def _summary(hold_id: str, parts: Sequence[HoldView]) -> HoldSummary:
    views = tuple(parts)
    state = aggregate_state(views) if views else AggregateState.RELEASED
    return HoldSummary(hold_id, state, views, min((p.expires_at_ms for p in views), default=0))
