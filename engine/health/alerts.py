"""One alert model (DESIGN.md §1 "alert", issue 15 item 8).

An alert is something a person must look at. Whatever raises it (a discrepancy, a dead
letter, a temperature excursion, reconciliation drift, a lot near or past expiry) says
*what* and *where* as a `Condition`; the alert's id is a stable hash of (kind, scope,
subject), so the same condition raised again is the same alert, counted, never a second
one. Its life is opened → acknowledged → closed; a condition seen again after its alert
was closed opens that alert again (a new occurrence, the count goes on).

Every alert keeps the ids of the movements, snapshots or dead letters behind it
(`evidence`, newest last, bounded), so it can be traced to what caused it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from engine.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument

SCHEMA = "lotwise.alert/1"  # the stored record's schema (to_record / from_record)
KIND_EXPIRED = "expired"  # the alert kind (a lot past its expiry), not the status of that name
KINDS = (
    "discrepancy",
    "dead_letter",
    "temperature",
    "reconciliation",
    "near_expiry",
    KIND_EXPIRED,
    "freshness",
    "replenishment",
)
SEVERITIES = ("info", "warning", "critical")  # in rising order
STATES = ("opened", "acknowledged", "closed")
MAX_EVIDENCE = 32  # ids kept per alert: the newest; `count` says how many occurrences there were
MAX_SUMMARY_CHARS = 500
MAX_FIELD_CHARS = 256


@dataclass(frozen=True, slots=True)
class AlertScope:
    """Where the condition is: any of org / site / bin / sku / lot ("" = not narrowed)."""

    org: str = ""
    site: str = ""
    bin: str = ""
    sku: str = ""
    lot: str = ""


@dataclass(frozen=True, slots=True)
class Condition:
    """A raiser's observation: the alert it belongs to is `alert_id_of(kind, scope, subject)`.

    `subject` tells apart two conditions of one kind at one scope (e.g. two dead-letter
    codes at one site); "" when the scope says it all."""

    kind: str
    severity: str
    scope: AlertScope
    summary: str
    at_ms: int
    evidence: tuple[str, ...] = ()
    subject: str = ""


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    kind: str
    severity: str
    scope: AlertScope
    subject: str
    state: str
    summary: str
    count: int  # occurrences of the condition, the first included
    opened_at_ms: int  # when the current occurrence opened (again)
    last_seen_ms: int
    evidence: tuple[str, ...] = ()
    acknowledged_by: str = ""
    acknowledged_at_ms: int = 0
    closed_by: str = ""
    closed_at_ms: int = 0
    note: str = ""


def alert_id_of(kind: str, scope: AlertScope, subject: str = "") -> str:
    """Stable across processes and restarts: the same condition is the same alert."""
    raw = "\x1f".join((kind, scope.org, scope.site, scope.bin, scope.sku, scope.lot, subject))
    return f"al-{kind}-{hashlib.sha256(raw.encode()).hexdigest()[:20]}"


def check_condition(c: Condition) -> None:
    """InvalidArgument naming every bad field; nothing is raised from a bad condition."""
    bad: list[FieldViolation] = []
    if c.kind not in KINDS:
        bad.append(FieldViolation("kind", f"must be one of {', '.join(KINDS)}"))
    if c.severity not in SEVERITIES:
        bad.append(FieldViolation("severity", f"must be one of {', '.join(SEVERITIES)}"))
    if not c.summary or len(c.summary) > MAX_SUMMARY_CHARS:
        bad.append(FieldViolation("summary", f"must be 1..{MAX_SUMMARY_CHARS} characters"))
    for name in ("org", "site", "bin", "sku", "lot"):
        if len(getattr(c.scope, name)) > MAX_FIELD_CHARS:
            bad.append(FieldViolation(f"scope.{name}", f"at most {MAX_FIELD_CHARS} characters"))
    if c.at_ms < 0:
        bad.append(FieldViolation("at_ms", "must be ≥ 0"))
    if bad:
        raise InvalidArgument(bad)


def _merge_evidence(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    merged = [e for e in old if e not in new] + [e for e in dict.fromkeys(new) if e]
    return tuple(merged[-MAX_EVIDENCE:])


def _higher(a: str, b: str) -> str:
    return a if SEVERITIES.index(a) >= SEVERITIES.index(b) else b


def observe(existing: Alert | None, c: Condition) -> Alert:
    """The alert after condition `c` was seen (again). Deduplicated: same id, count + 1;
    a closed alert opens again; severity only rises while the alert is open."""
    check_condition(c)
    alert_id = alert_id_of(c.kind, c.scope, c.subject)
    if existing is None:
        return Alert(
            alert_id=alert_id,
            kind=c.kind,
            severity=c.severity,
            scope=c.scope,
            subject=c.subject,
            state="opened",
            summary=c.summary,
            count=1,
            opened_at_ms=c.at_ms,
            last_seen_ms=c.at_ms,
            evidence=_merge_evidence((), c.evidence),
        )
    if existing.alert_id != alert_id:
        raise ValueError(f"condition of {alert_id} observed on {existing.alert_id}")
    if existing.state == "closed":  # the condition came back: a new occurrence of the same alert
        return replace(
            existing,
            state="opened",
            severity=c.severity,
            summary=c.summary,
            count=existing.count + 1,
            opened_at_ms=c.at_ms,
            last_seen_ms=max(existing.last_seen_ms, c.at_ms),
            evidence=_merge_evidence(existing.evidence, c.evidence),
            acknowledged_by="",
            acknowledged_at_ms=0,
            closed_by="",
            closed_at_ms=0,
            note="",
        )
    return replace(
        existing,
        severity=_higher(existing.severity, c.severity),
        summary=c.summary,
        count=existing.count + 1,
        last_seen_ms=max(existing.last_seen_ms, c.at_ms),
        evidence=_merge_evidence(existing.evidence, c.evidence),
    )


def acknowledge(alert: Alert, actor: str, at_ms: int, note: str = "") -> Alert:
    """opened → acknowledged (someone is on it). Acknowledging again changes nothing."""
    if alert.state == "closed":
        raise FailedPrecondition("ALERT_CLOSED", f"alert {alert.alert_id} is closed", {"alert_id": alert.alert_id})
    if alert.state == "acknowledged":
        return alert
    return replace(alert, state="acknowledged", acknowledged_by=actor, acknowledged_at_ms=at_ms, note=note[:500])


def close(alert: Alert, actor: str, at_ms: int, note: str = "") -> Alert:
    """opened or acknowledged → closed. Closing a closed alert changes nothing."""
    if alert.state == "closed":
        return alert
    return replace(alert, state="closed", closed_by=actor, closed_at_ms=at_ms, note=(note or alert.note)[:500])


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """A listing: by kind, state, site and minimum severity ("" = any), newest first."""

    kinds: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    site: str = ""
    min_severity: str = ""
    limit: int = 100


MAX_LIST_LIMIT = 1_000


def check_query(q: AlertQuery) -> None:
    bad: list[FieldViolation] = []
    for i, kind in enumerate(q.kinds):
        if kind not in KINDS:
            bad.append(FieldViolation(f"kinds[{i}]", f"must be one of {', '.join(KINDS)}"))
    for i, state in enumerate(q.states):
        if state not in STATES:
            bad.append(FieldViolation(f"states[{i}]", f"must be one of {', '.join(STATES)}"))
    if q.min_severity and q.min_severity not in SEVERITIES:
        bad.append(FieldViolation("min_severity", f"must be one of {', '.join(SEVERITIES)}"))
    if not 1 <= q.limit <= MAX_LIST_LIMIT:
        bad.append(FieldViolation("limit", f"must be 1..{MAX_LIST_LIMIT}"))
    if bad:
        raise InvalidArgument(bad)


def matches(alert: Alert, q: AlertQuery) -> bool:
    if q.kinds and alert.kind not in q.kinds:
        return False
    if q.states and alert.state not in q.states:
        return False
    if q.site and alert.scope.site != q.site:
        return False
    return not q.min_severity or SEVERITIES.index(alert.severity) >= SEVERITIES.index(q.min_severity)


def newest_first(alerts: list[Alert]) -> list[Alert]:
    return sorted(alerts, key=lambda a: (-a.last_seen_ms, a.alert_id))


# ---- the stored record: typed and versioned (never a pickle) ----


def to_record(a: Alert) -> dict[str, Any]:
    s = a.scope
    return {
        "schema": SCHEMA,
        "alert_id": a.alert_id,
        "kind": a.kind,
        "severity": a.severity,
        "scope": {"org": s.org, "site": s.site, "bin": s.bin, "sku": s.sku, "lot": s.lot},
        "subject": a.subject,
        "state": a.state,
        "summary": a.summary,
        "count": a.count,
        "opened_at_ms": a.opened_at_ms,
        "last_seen_ms": a.last_seen_ms,
        "evidence": list(a.evidence),
        "acknowledged_by": a.acknowledged_by,
        "acknowledged_at_ms": a.acknowledged_at_ms,
        "closed_by": a.closed_by,
        "closed_at_ms": a.closed_at_ms,
        "note": a.note,
    }


def from_record(r: Mapping[str, Any]) -> Alert:
    if r.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} record: schema {r.get('schema')!r}")
    scope = r["scope"]
    alert = Alert(
        alert_id=str(r["alert_id"]),
        kind=str(r["kind"]),
        severity=str(r["severity"]),
        scope=AlertScope(*(str(scope[k]) for k in ("org", "site", "bin", "sku", "lot"))),
        subject=str(r["subject"]),
        state=str(r["state"]),
        summary=str(r["summary"]),
        count=int(r["count"]),
        opened_at_ms=int(r["opened_at_ms"]),
        last_seen_ms=int(r["last_seen_ms"]),
        evidence=tuple(str(e) for e in r["evidence"]),
        acknowledged_by=str(r["acknowledged_by"]),
        acknowledged_at_ms=int(r["acknowledged_at_ms"]),
        closed_by=str(r["closed_by"]),
        closed_at_ms=int(r["closed_at_ms"]),
        note=str(r["note"]),
    )
    if alert.kind not in KINDS or alert.state not in STATES or alert.severity not in SEVERITIES:
        raise ValueError(f"alert record {alert.alert_id} has an unknown kind, state or severity")
    return alert
