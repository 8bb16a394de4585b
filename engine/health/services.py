"""Reconciliation, proposed adjustments and shelf counts over the ports (issue 15 items
4, 5): the decisions are engine.health.reconcile / shelf / proposals; this module reads
the books, keeps what must survive a restart in documents, raises alerts and publishes.

Zero silent adjustments: nothing here executes a stock command except
`ProposalDesk.approve`, which needs a person other than the proposer."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.domain.cell import Dimension, SliceFilter
from engine.domain.commands import Adjust
from engine.domain.documents import DocumentStore, RevisionMismatch
from engine.domain.errors import (
    FailedPrecondition,
    FieldViolation,
    InsufficientStock,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from engine.domain.inventory import StockQuery
from engine.health.alerts import AlertScope, Condition
from engine.health.books import BooksPort
from engine.health.desk import AlertDesk
from engine.health.ports import HealthEvent, HealthPublisher
from engine.health.proposals import STATES as PROPOSAL_STATES
from engine.health.proposals import Proposal, approve, from_record, reject, to_record
from engine.health.reconcile import (
    ALERT_AFTER_CYCLES,
    Difference,
    Key,
    PairReport,
    Report,
    StockSnapshot,
    Tolerances,
    advance_streaks,
    check_snapshot,
    compare,
    report,
)
from engine.health.shelf import ShelfCount, ShelfResult, ShelfRules, check_counts, evaluate
from engine.health.sweep import StockPort

MAX_REPORTED_DIFFERENCES = 1_000  # kept with a report (the counts cover every line)
MAX_STREAK_KEYS = 5_000  # keys with a running streak remembered per source
MAX_PROPOSALS_LISTED = 1_000
SYSTEM_RECONCILIATION = "system:reconciliation"


def doc_key(prefix: str, *parts: str) -> str:
    return f"{prefix}.{hashlib.sha256(chr(31).join(parts).encode()).hexdigest()[:40]}"


def key_text(key: Key) -> str:
    return "\x1f".join(key)


@dataclass(frozen=True, slots=True)
class Reconciled:
    report: Report
    source: str
    differences: tuple[Difference, ...]  # those that did not match, at most MAX_REPORTED_DIFFERENCES
    streaks: dict[str, int]  # key text → streak, for the reported differences
    proposal_ids: tuple[str, ...]
    alert_ids: tuple[str, ...]
    sites: tuple[str, ...] = ()  # every site the snapshot named (who may read its report)


@dataclass(frozen=True, slots=True)
class ReconcileHooks:
    on_report: Callable[[Reconciled], None] = lambda r: None


class ProposalDesk:
    def __init__(
        self, documents: DocumentStore, stock: StockPort, publisher: HealthPublisher | None, now_ms: Callable[[], int]
    ) -> None:
        self.documents = documents
        self.stock = stock
        self.publisher = publisher
        self.now_ms = now_ms

    async def propose(self, p: Proposal) -> Proposal:
        """Stored once by id: the same difference proposed again is the same proposal."""
        key = doc_key("health.proposal", p.proposal_id)
        try:
            await self.documents.put(key, to_record(p), 0)
        except RevisionMismatch:
            return await self.get(p.proposal_id)
        if self.publisher is not None:
            await self.publisher.publish_event(
                HealthEvent(f"{p.proposal_id}:proposed", "adjustment_proposed", p.site, p.proposed_at_ms, to_record(p))
            )
        return p

    async def get(self, proposal_id: str) -> Proposal:
        if not proposal_id or len(proposal_id) > 256:
            raise InvalidArgument([FieldViolation("proposal_id", "must be 1..256 characters")])
        found = await self.documents.get(doc_key("health.proposal", proposal_id))
        if found is None:
            raise NotFound("proposal", proposal_id)
        return from_record(found.value)

    async def list(self, site: str = "", state: str = "") -> list[Proposal]:
        if state and state not in PROPOSAL_STATES:
            raise InvalidArgument([FieldViolation("state", f"must be one of {', '.join(PROPOSAL_STATES)}")])
        out: list[Proposal] = []
        for key in (await self.documents.keys("health.proposal."))[: MAX_PROPOSALS_LISTED * 10]:
            found = await self.documents.get(key)
            if found is None:
                continue
            p = from_record(found.value)
            if (not site or p.site == site) and (not state or p.state == state):
                out.append(p)
        return sorted(out, key=lambda p: (-p.proposed_at_ms, p.proposal_id))[:MAX_PROPOSALS_LISTED]

    async def approve(self, proposal_id: str, actor: str, note: str = "") -> Proposal:
        """Another person approves: the variance goes through the normal Adjust path (a
        journaled count, doc_ref = the proposal), then the proposal records who and when."""
        key = doc_key("health.proposal", proposal_id)
        found = await self.documents.get(key)
        if found is None:
            raise NotFound("proposal", proposal_id)
        decided = approve(from_record(found.value), actor, self.now_ms(), note)
        await self._apply(decided)
        try:
            await self.documents.put(key, to_record(decided), found.revision)
        except RevisionMismatch:
            raise Unavailable(f"proposal {proposal_id} changed while it was applied; read it again") from None
        if self.publisher is not None:
            await self.publisher.publish_event(
                HealthEvent(
                    f"{proposal_id}:approved",
                    "adjustment_applied",
                    decided.site,
                    decided.decided_at_ms,
                    to_record(decided),
                )
            )
        return decided

    async def reject(self, proposal_id: str, actor: str, note: str = "") -> Proposal:
        key = doc_key("health.proposal", proposal_id)
        found = await self.documents.get(key)
        if found is None:
            raise NotFound("proposal", proposal_id)
        decided = reject(from_record(found.value), actor, self.now_ms(), note)
        try:
            await self.documents.put(key, to_record(decided), found.revision)
        except RevisionMismatch:
            raise Unavailable(f"proposal {proposal_id} changed meanwhile; read it again") from None
        return decided

    async def _apply(self, p: Proposal) -> None:
        """The approved variance as a relative adjustment applied inside the cell: the quant
        as it stands then changes by it, so a sale booked since the difference was seen is
        kept, never undone (an absolute count computed here would race it). Taking more
        than is free there is refused: the books moved, a person recounts."""
        if not p.variance:  # nothing to change (and delta 0 would mean an absolute count)
            return
        try:
            await self.stock.execute(
                Adjust(
                    request_id=p.adjust_request_id,
                    sku=p.sku,
                    site=p.site,
                    lot_id=p.lot_id,
                    counted_qty=0,
                    bin=p.bin,
                    status=p.status,
                    reason="reconciliation",
                    doc_ref=f"proposal:{p.proposal_id}"[:128],
                    delta_qty=p.variance,
                )
            )
        except InsufficientStock as short:
            free = str(short.available)
            raise FailedPrecondition(
                "PROPOSAL_STALE",
                f"proposal {p.proposal_id} would take {-p.variance} from {free} free at {p.site}/{p.bin or '(site)'}",
                {"current_qty": free, "variance": str(p.variance)},
            ) from None


class Reconciler:
    def __init__(
        self,
        books: BooksPort,
        documents: DocumentStore,
        alerts: AlertDesk,
        proposals: ProposalDesk,
        tolerances: Tolerances,
        now_ms: Callable[[], int],
        ready_status: str,
        skew_ms: int = 5_000,
        hooks: ReconcileHooks = ReconcileHooks(),
    ) -> None:
        self.books = books
        self.documents = documents
        self.alerts = alerts
        self.proposals = proposals
        self.tolerances = tolerances
        self.now_ms = now_ms
        self.ready_status = ready_status
        self.skew_ms = skew_ms
        self.hooks = hooks

    async def submit(self, snapshot: StockSnapshot) -> Reconciled:
        check_snapshot(snapshot)
        report_key = doc_key("health.recon.report", snapshot.snapshot_id)
        stored = await self.documents.get(report_key)
        if stored is not None:  # the same snapshot again (a retry, a redelivery): its first report
            return reconciled_from_record(stored.value)
        books = await self.books.window(snapshot.lines, snapshot.as_of_ms, self.skew_ms)
        diffs = compare(snapshot.lines, books, self.tolerances)
        streak_key = doc_key("health.recon.streaks", snapshot.source)
        found = await self.documents.get(streak_key)
        previous = {
            tuple(k.split("\x1f")): int(n) for k, n in (found.value.get("streaks", {}) if found else {}).items()
        }
        streaks, reached = advance_streaks(previous, diffs)
        by_key = {d.key: d for d in diffs}
        proposal_ids, alert_ids = await self._act(
            snapshot, [by_key[k] for k in reached], found.value.get("last_snapshot", "") if found else ""
        )
        kept = dict(sorted(streaks.items(), key=lambda kv: -kv[1])[:MAX_STREAK_KEYS])
        await self._save(
            streak_key,
            {"streaks": {key_text(k): n for k, n in kept.items()}, "last_snapshot": snapshot.snapshot_id},
            found.revision if found else 0,
        )
        unmatched = tuple(d for d in diffs if d.klass != "match")[:MAX_REPORTED_DIFFERENCES]
        result = Reconciled(
            report(snapshot, diffs),
            snapshot.source,
            unmatched,
            {key_text(d.key): streaks.get(d.key, 0) for d in unmatched},
            tuple(proposal_ids),
            tuple(alert_ids),
            tuple(sorted({line.site for line in snapshot.lines})),
        )
        await self._save(report_key, reconciled_to_record(result), 0)
        self.hooks.on_report(result)
        return result

    async def get(self, snapshot_id: str) -> Reconciled:
        stored = await self.documents.get(doc_key("health.recon.report", snapshot_id))
        if stored is None:
            raise NotFound("reconciliation report", snapshot_id)
        return reconciled_from_record(stored.value)

    async def _act(
        self, snapshot: StockSnapshot, reached: list[Difference], previous_snapshot: str
    ) -> tuple[list[str], list[str]]:
        proposal_ids: list[str] = []
        alert_ids: list[str] = []
        now = self.now_ms()
        for d in reached:
            site, sku, lot, bin_, status = d.key
            evidence = tuple(x for x in (previous_snapshot, snapshot.snapshot_id) if x)
            alert = await self.alerts.raise_alert(
                Condition(
                    kind="reconciliation",
                    severity="warning",
                    scope=AlertScope(site=site, bin=bin_, sku=sku, lot=lot),
                    summary=(
                        f"{snapshot.source} says {d.external_qty}, the books {d.book_qty}"
                        f" ({ALERT_AFTER_CYCLES} snapshots in a row)"
                    ),
                    at_ms=now,
                    evidence=evidence,
                    subject=snapshot.source,
                )
            )
            alert_ids.append(alert.alert_id)
            if not lot:  # a pair-level difference: a person recounts; no quant to adjust
                continue
            proposal = Proposal(
                proposal_id=f"rec:{doc_key('p', snapshot.source, key_text(d.key), snapshot.snapshot_id)[2:26]}",
                site=site,
                sku=sku,
                lot_id=lot,
                bin=bin_,
                status=status or self.ready_status,
                variance=d.diff,
                external_qty=d.external_qty,
                book_qty=d.book_qty,
                origin=f"reconciliation:{snapshot.snapshot_id}",
                proposed_by=SYSTEM_RECONCILIATION,
                proposed_at_ms=now,
            )
            proposal_ids.append((await self.proposals.propose(proposal)).proposal_id)
        return proposal_ids, alert_ids

    async def _save(self, key: str, value: dict[str, Any], revision: int) -> None:
        try:
            await self.documents.put(key, value, revision)
        except RevisionMismatch:
            raise Unavailable(
                "another reconciliation of this source ran at the same time; send the snapshot again"
            ) from None


def reconciled_to_record(r: Reconciled) -> dict[str, Any]:
    rep = r.report
    return {
        "schema": "lotwise.reconciliation_report/1",
        "snapshot_id": rep.snapshot_id,
        "source": r.source,
        "as_of_ms": rep.as_of_ms,
        "lines": rep.lines,
        "by_class": rep.by_class,
        "record_accuracy": rep.record_accuracy,
        "value_at_risk": rep.value_at_risk,
        "pairs": [
            [p.site, p.sku, p.lines, p.by_class, p.abs_diff, p.value_at_risk]
            for p in rep.pairs[:MAX_REPORTED_DIFFERENCES]
        ],
        "differences": [[*d.key, d.external_qty, d.book_qty, d.diff, d.klass, d.value] for d in r.differences],
        "streaks": r.streaks,
        "proposal_ids": list(r.proposal_ids),
        "alert_ids": list(r.alert_ids),
        "sites": list(r.sites),
    }


def reconciled_from_record(v: dict[str, Any]) -> Reconciled:
    pairs = tuple(PairReport(p[0], p[1], p[2], dict(p[3]), p[4], p[5]) for p in v["pairs"])
    rep = Report(
        v["snapshot_id"],
        v["as_of_ms"],
        v["lines"],
        dict(v["by_class"]),
        v["record_accuracy"],
        v["value_at_risk"],
        pairs,
    )
    diffs = tuple(Difference((d[0], d[1], d[2], d[3], d[4]), d[5], d[6], d[7], d[8], d[9]) for d in v["differences"])
    return Reconciled(
        rep, v["source"], diffs, dict(v["streaks"]), tuple(v["proposal_ids"]), tuple(v["alert_ids"]), tuple(v["sites"])
    )


@dataclass(frozen=True, slots=True)
class ShelfOutcome:
    result: ShelfResult
    proposal_ids: tuple[str, ...] = field(default_factory=tuple)


class ShelfDesk:
    def __init__(
        self,
        stock: StockPort,
        proposals: ProposalDesk,
        publisher: HealthPublisher | None,
        rules: ShelfRules,
        on_hand_statuses: frozenset[str],
        now_ms: Callable[[], int],
    ) -> None:
        self.stock = stock
        self.proposals = proposals
        self.publisher = publisher
        self.rules = rules
        self.on_hand = frozenset(on_hand_statuses)
        self.now_ms = now_ms

    async def submit(self, count_id: str, source: str, counts: tuple[ShelfCount, ...]) -> ShelfOutcome:
        if not count_id or len(count_id) > 128:
            raise InvalidArgument([FieldViolation("count_id", "must be 1..128 characters")])
        check_counts(counts)
        q = StockQuery(
            skus=tuple(sorted({c.sku for c in counts})),
            sites=tuple(sorted({c.site for c in counts})),
            filter=SliceFilter(statuses=self.on_hand),
            group_by=(Dimension.BIN, Dimension.LOT, Dimension.STATUS, Dimension.OWNER),
            limit=100_000,
        )
        books: dict[tuple[str, str, str], int] = {}
        quants: dict[tuple[str, str, str], list[tuple[str, str, str]]] = {}
        for row in await self.stock.query_stock(q):
            g = dict(row.row.group)
            where = (row.site, g["bin"], row.sku)
            books[where] = books.get(where, 0) + row.row.qty
            quants.setdefault(where, []).append((g["lot"], g["status"], g["owner"]))
        result = evaluate(counts, books, self.rules)
        now = self.now_ms()
        await self._publish_lists(count_id, source, result, now)
        proposal_ids = []
        for line in result.to_propose:
            c = line.count
            held_here = quants.get((c.site, c.bin, c.sku), [])
            if len(held_here) != 1 or held_here[0][2] != "own":
                continue  # which lot the difference belongs to is not known: the lists say it
            lot, status, _ = held_here[0]
            p = Proposal(
                proposal_id=f"shelf:{doc_key('p', count_id, c.site, c.bin, c.sku)[2:26]}",
                site=c.site,
                sku=c.sku,
                lot_id=lot,
                bin=c.bin,
                status=status,
                variance=line.diff,
                external_qty=c.counted,
                book_qty=line.book_qty,
                origin=f"shelf:{source}:{count_id}",
                proposed_by=f"system:shelf:{source}"[:128],
                proposed_at_ms=now,
            )
            proposal_ids.append((await self.proposals.propose(p)).proposal_id)
        return ShelfOutcome(result, tuple(proposal_ids))

    async def _publish_lists(self, count_id: str, source: str, result: ShelfResult, now: int) -> None:
        if self.publisher is None:
            return
        for kind, lines in (("out_of_stock", result.out_of_stock), ("low_facing", result.low_facing)):
            by_site: dict[str, list[dict[str, Any]]] = {}
            for line in lines:
                c = line.count
                by_site.setdefault(c.site, []).append(
                    {
                        "bin": c.bin,
                        "sku": c.sku,
                        "counted": c.counted,
                        "book_qty": line.book_qty,
                        "confidence": c.confidence,
                    }
                )
            for site, items in sorted(by_site.items()):
                rep = self.rules.sales_reps.rep_for(site)
                body = {"count_id": count_id, "source": source, "sales_rep": rep, "items": items}
                await self.publisher.publish_event(
                    HealthEvent(f"shelf:{count_id}:{site}:{kind}", kind, site, now, body, recipient=rep)
                )
