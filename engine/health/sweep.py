"""The expiry watch (issue 15 item 1): expiry rules acting on the cells' stock.

Two ways in, one decision (engine.health.expiry_rules.decide):
- a *timer heap*: every lot the watch knows of (from the journal follower's receipts, and
  from each sweep's look ahead) is scheduled at its next crossing (the start of its
  near-expiry window, its expiry); when a timer falls due the watch looks at that one
  (sku, site) pair at once, so a rule acts within a second of the crossing;
- a *sweep* of every pair with stock inside the widest window (daily by default, at start,
  and on demand), which catches whatever the timers did not know (lots received while the
  engine was down, a rules change) and schedules what crosses before the next sweep.

Acting is idempotent: a promotion task is published once per lot and site (a document
with its stable id records it), a status move carries a request id derived from what it
moves (a repeat is answered from the cell's idempotency window, and a moved row no longer
matches). The sweep's progress (when it last completed) is a document too, so a restart
knows when the next one is due. Bounded: timers (MAX_TIMERS), rows per look (MAX_ROWS).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from engine.domain.cell import Dimension, SliceFilter
from engine.domain.commands import ChangeStatus, ExpireLots, LotsExpired
from engine.domain.documents import DocumentStore, RevisionMismatch
from engine.domain.errors import DomainError, FailedPrecondition
from engine.domain.inventory import StockQuery, StockRow
from engine.domain.model import MS_PER_DAY
from engine.domain.statuses import DEFAULT_DICTIONARY, Role
from engine.health.alerts import KIND_EXPIRED, AlertScope, Condition
from engine.health.desk import AlertDesk
from engine.health.expiry_rules import ExpiryRules, PromotionTask, StatusMove, StockSlice, decide, next_crossing_ms
from engine.health.ports import HealthEvent, HealthPublisher

log = structlog.get_logger("lotwise.health.expiry")

MAX_TIMERS = 200_000
MAX_ROWS = 100_000  # rows one look reads; a sweep that reaches it says so (and acts on those)
LOOK_AHEAD_DAYS = 2  # a sweep schedules every crossing within this many days past the widest window
SWEEP_DOC = "health.expiry.sweep"
MAX_LATENCY_SAMPLES = 10_000
MAX_DEFERRED_ALERTS = 10_000  # alerts waiting for their store; the oldest are dropped past it
RETRY_MS = 1_000  # a failed look at a due pair is tried again this much later


class StockPort(Protocol):
    """What the watch needs of the gateway: read slices, change a status."""

    async def query_stock(self, q: StockQuery, deadline: float | None = None) -> list[StockRow]: ...

    async def execute(self, cmd: Any, deadline: float | None = None) -> Any: ...


@dataclass(slots=True)
class LookResult:
    rows: int = 0
    tasks: int = 0  # promotion tasks published now (not those published before)
    moves: int = 0
    refused: int = 0  # moves a cell refused (stock changed meanwhile): the next look redoes them
    truncated: bool = False
    latencies_ms: list[float] = field(default_factory=list)  # the lot's crossing → action, of timers' looks


@dataclass(frozen=True, slots=True)
class WatchHooks:
    """Metrics the composition root attaches (the watch itself knows no Prometheus)."""

    on_action: Callable[[str, float], None] = lambda kind, latency_ms: None  # "promotion" | "near_expiry" | "expiry"
    on_look: Callable[[str, int], None] = lambda scope, rows: None  # "pair" | "sweep"


class ExpiryWatch:
    def __init__(
        self,
        stock: StockPort,
        documents: DocumentStore,
        alerts: AlertDesk,
        publisher: HealthPublisher | None,
        rules: ExpiryRules,
        terminal: frozenset[str],
        now_ms: Callable[[], int],
        hooks: WatchHooks = WatchHooks(),
        sweep_interval_ms: int = MS_PER_DAY,
        expired_role: str = DEFAULT_DICTIONARY.role(Role.EXPIRED),
    ) -> None:
        self.stock = stock
        self.documents = documents
        self.alerts = alerts
        self.publisher = publisher
        self.rules = rules
        self.terminal = terminal
        self.now_ms = now_ms
        self.hooks = hooks
        self.sweep_interval_ms = sweep_interval_ms
        self.expired_role = expired_role  # the dictionary's expired role: what ExpireLots moves to
        self._heap: list[tuple[int, str, str]] = []
        self._queued: set[tuple[int, str, str]] = set()
        self._wake = asyncio.Event()
        self.dropped_timers = 0
        self.refused = 0  # moves a cell refused (each looked at again RETRY_MS later)
        self._deferred: deque[Condition] = deque(maxlen=MAX_DEFERRED_ALERTS)
        self.latencies_ms: list[float] = []

    # ---- timers ----

    def note_lot(self, sku: str, site: str, expires_at_ms: int) -> None:
        """A lot of (sku, site) expiring then exists: schedule its next crossing."""
        rule = self.rules.rule_for(sku, site)
        if rule is None:
            return
        at = next_crossing_ms(expires_at_ms, rule, self.now_ms())
        if at is None:  # crossed already: look now
            at = self.now_ms()
        self.schedule(sku, site, at)

    def schedule(self, sku: str, site: str, at_ms: int) -> None:
        item = (at_ms, sku, site)
        if item in self._queued:
            return
        if len(self._heap) >= MAX_TIMERS:
            self.dropped_timers += 1  # the next sweep still finds it
            return
        heapq.heappush(self._heap, item)
        self._queued.add(item)
        if self._heap[0] == item:
            self._wake.set()  # an earlier timer than the one the loop sleeps for

    def next_timer_ms(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def timers(self) -> int:
        return len(self._heap)

    async def run_due(self) -> LookResult:
        """Look at every pair whose timer is due now."""
        now = self.now_ms()
        due: dict[tuple[str, str], None] = {}  # each pair once, in timer order
        while self._heap and self._heap[0][0] <= now:
            item = heapq.heappop(self._heap)
            self._queued.discard(item)
            due[(item[1], item[2])] = None
        total = LookResult()
        for sku, site in due:
            try:
                result = await self.look((sku,), (site,), timed=True)
            except Exception as exc:  # shards recovering, NATS away: look again soon, not never
                log.warning("expiry look failed; retrying", sku=sku, site=site, error=f"{type(exc).__name__}: {exc}")
                self.schedule(sku, site, self.now_ms() + RETRY_MS)
                continue
            _add(total, result)
        return total

    # ---- looks ----

    async def sweep(self) -> LookResult:
        """Every pair with stock inside the widest window, and a schedule of what crosses
        before the next sweep; records its completion durably."""
        result = await self.look((), (), horizon_days=self.rules.max_window_days + LOOK_AHEAD_DAYS)
        await self._save_progress(self.now_ms())
        self.hooks.on_look("sweep", result.rows)
        return result

    async def look(
        self,
        skus: tuple[str, ...],
        sites: tuple[str, ...],
        *,
        horizon_days: int | None = None,
        timed: bool = False,
    ) -> LookResult:
        horizon = self.rules.max_window_days + 1 if horizon_days is None else horizon_days
        q = StockQuery(
            skus=skus,
            sites=sites,
            filter=SliceFilter(max_shelf_life_days=float(horizon)),
            group_by=(Dimension.LOT, Dimension.BIN, Dimension.STATUS, Dimension.OWNER),
            limit=MAX_ROWS,
        )
        rows = await self.stock.query_stock(q)
        result = LookResult(rows=len(rows), truncated=len(rows) >= MAX_ROWS)
        if result.truncated:
            log.warning("expiry look reached its row bound", rows=len(rows), bound=MAX_ROWS)
        now = self.now_ms()
        for stock_row in rows:
            await self._act_on(_slice(stock_row), now, result, timed)
        if skus or sites:
            self.hooks.on_look("pair", result.rows)
        return result

    async def _act_on(self, row: StockSlice, now: int, result: LookResult, timed: bool) -> None:
        rule = self.rules.rule_for(row.sku, row.site)
        if rule is None:
            return
        task, move = decide(row, rule, now, self.terminal)
        window_start = row.expires_at_ms - rule.near_expiry_days * MS_PER_DAY
        if task is not None and await self._publish_task(task, now):
            result.tasks += 1
            self._acted("promotion", window_start if timed else None, result)
        if move is not None:
            moved = await self._move(move, now)
            if moved:
                result.moves += 1
                crossing = row.expires_at_ms if move.why == "expiry" else window_start
                self._acted(move.why, crossing if timed else None, result)
            elif moved is None:
                result.refused += 1
                self.refused += 1
                self.schedule(row.sku, row.site, now + RETRY_MS)  # moved by the next look, not the next sweep
        nxt = next_crossing_ms(row.expires_at_ms, rule, now)
        if nxt is not None and row.status not in self.terminal:
            self.schedule(row.sku, row.site, nxt)

    def _acted(self, kind: str, crossed_at_ms: int | None, result: LookResult) -> None:
        """Count the action; for a timer's look, its latency from the lot's own crossing."""
        latency = float(max(self.now_ms() - crossed_at_ms, 0)) if crossed_at_ms is not None else -1.0
        if crossed_at_ms is not None:
            result.latencies_ms.append(latency)
            if len(self.latencies_ms) < MAX_LATENCY_SAMPLES:
                self.latencies_ms.append(latency)
        self.hooks.on_action(kind, latency)

    async def _publish_task(self, task: PromotionTask, now: int) -> bool:
        key = _doc_key("health.promo", task.task_id)
        if await self.documents.get(key) is not None:
            return False  # published before (this run or an earlier one)
        body = {
            "task_id": task.task_id,
            "sku": task.sku,
            "site": task.site,
            "lot_id": task.lot_id,
            "qty": task.qty,
            "days_left": task.days_left,
            "expires_at_ms": task.expires_at_ms,
            "suggested_action": task.suggested_action,
        }
        # Published first, recorded after: a crash between the two republishes the same id
        # (the stream's duplicate window and subscribers drop it), never loses the task.
        if self.publisher is not None:
            await self.publisher.publish_event(HealthEvent(task.task_id, "promotion_task", task.site, now, body))
        await self._raise(
            Condition(
                kind="near_expiry",
                severity="warning",
                scope=AlertScope(site=task.site, sku=task.sku, lot=task.lot_id),
                summary=f"{task.qty} of lot {task.lot_id} expire in {task.days_left} days: {task.suggested_action}",
                at_ms=now,
                evidence=(task.task_id,),
            )
        )
        try:
            await self.documents.put(key, {"schema": "lotwise.promotion_task/1", "at_ms": now, **body}, 0)
        except RevisionMismatch:
            return False  # another look published it at the same moment
        return True

    async def _move(self, move: StatusMove, now: int) -> int | None:
        """Book the move; the units moved (0: nothing left to move — another row of the lot
        took it), None when the cell refused (the next look decides again)."""
        row = move.row
        try:
            if move.why == "expiry" and move.to_status == self.expired_role:
                moved, holds_cut = await self._expire(move)
            else:
                moved, holds_cut = await self._change_status(move, move.qty), 0
        except DomainError as err:  # e.g. sold meanwhile: the next look decides again
            log.info("expiry move refused", sku=row.sku, site=row.site, lot=row.lot_id, error=str(err))
            return None
        if move.why == "expiry" and moved:
            cut = f" ({holds_cut} held units: holds cut)" if holds_cut else ""
            await self._raise(
                Condition(
                    kind=KIND_EXPIRED,
                    severity="critical",
                    scope=AlertScope(site=row.site, sku=row.sku, lot=row.lot_id),
                    summary=f"{moved} of lot {row.lot_id} expired and moved to {move.to_status}{cut}",
                    at_ms=now,
                    evidence=(move.request_id,),
                )
            )
        return moved

    async def _expire(self, move: StatusMove) -> tuple[int, int]:
        """The cell's ExpireLots for the row's lot: the journaled expire movement everywhere
        (every on-hand quant of the lot, holds on it cut), idempotent by nature. An opened
        lot past its opened shelf life but not its date is not expired to the cell
        (LOT_NOT_EXPIRED): its free units change status instead."""
        row = move.row
        cmd = ExpireLots(move.request_id, row.sku, row.site, row.lot_id, doc_ref="health:expiry")
        try:
            done = await self.stock.execute(cmd)
        except FailedPrecondition as refusal:
            if refusal.reason != "LOT_NOT_EXPIRED":
                raise
            return await self._change_status(move, row.qty - max(row.held, 0)), 0
        if not isinstance(done, LotsExpired):
            raise TypeError(f"ExpireLots answered {type(done).__name__}")
        return done.qty, sum(c.qty for c in done.holds_cut)

    async def _change_status(self, move: StatusMove, qty: int) -> int:
        row = move.row
        if qty <= 0:
            return 0  # all held: their holds expire on read and are swept; a later look moves them
        cmd = ChangeStatus(
            request_id=move.request_id if qty == move.qty else f"{move.request_id}:free",
            sku=row.sku,
            site=row.site,
            lot_id=row.lot_id,
            qty=qty,
            from_status=row.status,
            to_status=move.to_status,
            bin=row.bin,
            owner=row.owner,
            doc_ref=f"health:{move.why}",
        )
        await self.stock.execute(cmd)
        return qty

    async def _raise(self, condition: Condition) -> None:
        """Raise an alert; one that cannot be stored now (NATS slow or away) waits in a
        bounded queue and is raised again at the next turn, after the stock action it
        belongs to has been counted (the action is never redone for its alert)."""
        try:
            await self.alerts.raise_alert(condition)
        except Exception as exc:
            log.warning("alert deferred", kind=condition.kind, error=f"{type(exc).__name__}: {exc}")
            self._deferred.append(condition)

    async def raise_deferred(self) -> None:
        for _ in range(len(self._deferred)):
            condition = self._deferred.popleft()
            await self._raise(condition)  # back at the end of the queue when it fails again

    # ---- progress and the loop ----

    async def last_sweep_ms(self) -> int:
        found = await self.documents.get(SWEEP_DOC)
        return int(found.value.get("completed_at_ms", 0)) if found is not None else 0

    async def _save_progress(self, at_ms: int) -> None:
        for _ in range(8):  # another gateway may have saved meanwhile: newest wins
            found = await self.documents.get(SWEEP_DOC)
            revision = found.revision if found is not None else 0
            if found is not None and int(found.value.get("completed_at_ms", 0)) >= at_ms:
                return
            try:
                await self.documents.put(
                    SWEEP_DOC, {"schema": "lotwise.expiry_sweep/1", "completed_at_ms": at_ms}, revision
                )
                return
            except RevisionMismatch:
                continue

    async def run(self, stop: asyncio.Event, max_sleep_s: float = 60.0) -> None:
        """Until `stop`: a sweep when due (at start too when the last one is older than the
        interval), and each timer as it falls due. A failure is logged and tried again a
        second later: the loop itself never ends on one."""
        next_sweep: int | None = None
        while not stop.is_set():
            try:
                if next_sweep is None:
                    next_sweep = await self.last_sweep_ms() + self.sweep_interval_ms
                if self.now_ms() >= next_sweep:
                    await self.sweep()
                    next_sweep = self.now_ms() + self.sweep_interval_ms
                await self.raise_deferred()
                await self.run_due()
                wake_at = min(next_sweep, self.next_timer_ms() or next_sweep)
                sleep_s = min(max((wake_at - self.now_ms()) / 1000.0, 0.0), max_sleep_s)
            except Exception as exc:
                log.warning("expiry watch turn failed", error=f"{type(exc).__name__}: {exc}")
                sleep_s = RETRY_MS / 1000
            self._wake.clear()
            if sleep_s > 0:
                await self._sleep(stop, sleep_s)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        """Until `seconds` pass, `stop` is set, or an earlier timer is scheduled."""
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()


def _add(total: LookResult, r: LookResult) -> None:
    total.rows += r.rows
    total.tasks += r.tasks
    total.moves += r.moves
    total.refused += r.refused
    total.truncated = total.truncated or r.truncated
    total.latencies_ms.extend(r.latencies_ms)


def _slice(r: StockRow) -> StockSlice:
    g = dict(r.row.group)
    return StockSlice(
        r.sku, r.site, g["lot"], g["bin"], g["status"], g["owner"], r.row.qty, r.row.held, r.row.earliest_expiry_ms
    )


def _doc_key(prefix: str, text: str) -> str:
    """Document keys allow few characters: a digest of ids that may hold others."""
    return f"{prefix}.{hashlib.sha256(text.encode()).hexdigest()[:40]}"
