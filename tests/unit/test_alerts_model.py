"""The alert model: stable ids, deduplication, the opened → acknowledged → closed life."""

from __future__ import annotations

import pytest

from engine.domain.errors import FailedPrecondition, InvalidArgument
from engine.health.alerts import (
    MAX_EVIDENCE,
    AlertQuery,
    AlertScope,
    Condition,
    acknowledge,
    alert_id_of,
    check_query,
    close,
    from_record,
    matches,
    observe,
    to_record,
)


def cond(**over: object) -> Condition:
    base: dict[str, object] = {
        "kind": "dead_letter",
        "severity": "warning",
        "scope": AlertScope(site="S1"),
        "summary": "a message could not be applied",
        "at_ms": 100,
        "evidence": ("dlq:1",),
        "subject": "UNKNOWN_SKU",
    }
    base.update(over)
    return Condition(**base)  # type: ignore[arg-type]


def test_the_id_is_stable_and_names_the_condition() -> None:
    a = alert_id_of("dead_letter", AlertScope(site="S1"), "UNKNOWN_SKU")
    assert a == alert_id_of("dead_letter", AlertScope(site="S1"), "UNKNOWN_SKU")
    assert a.startswith("al-dead_letter-")
    assert a != alert_id_of("dead_letter", AlertScope(site="S2"), "UNKNOWN_SKU")
    assert a != alert_id_of("dead_letter", AlertScope(site="S1"), "BAD_QTY")
    assert a != alert_id_of("temperature", AlertScope(site="S1"), "UNKNOWN_SKU")


def test_the_same_condition_counts_on_one_alert() -> None:
    first = observe(None, cond())
    second = observe(first, cond(at_ms=200, evidence=("dlq:2",), severity="info"))
    third = observe(second, cond(at_ms=150, evidence=("dlq:2", "dlq:3"), severity="critical"))
    assert (first.count, second.count, third.count) == (1, 2, 3)
    assert second.severity == "warning"  # severity never falls while open
    assert third.severity == "critical"
    assert third.last_seen_ms == 200
    assert third.opened_at_ms == 100
    assert third.evidence == ("dlq:1", "dlq:2", "dlq:3")


def test_evidence_is_bounded_to_the_newest() -> None:
    alert = observe(None, cond())
    for i in range(MAX_EVIDENCE + 10):
        alert = observe(alert, cond(evidence=(f"mv:{i}",)))
    assert len(alert.evidence) == MAX_EVIDENCE
    assert alert.evidence[-1] == f"mv:{MAX_EVIDENCE + 9}"


def test_life_cycle_and_reopening() -> None:
    alert = observe(None, cond())
    acked = acknowledge(alert, "ana", 300, "looking")
    assert (acked.state, acked.acknowledged_by, acked.note) == ("acknowledged", "ana", "looking")
    assert acknowledge(acked, "bob", 400) == acked
    closed = close(acked, "ana", 500)
    assert (closed.state, closed.closed_by, closed.closed_at_ms) == ("closed", "ana", 500)
    assert close(closed, "bob", 600) == closed
    with pytest.raises(FailedPrecondition) as err:
        acknowledge(closed, "bob", 700)
    assert err.value.reason == "ALERT_CLOSED"
    again = observe(closed, cond(at_ms=800))
    assert (again.state, again.count, again.opened_at_ms, again.acknowledged_by) == ("opened", 2, 800, "")


def test_bad_conditions_are_refused_with_every_field() -> None:
    with pytest.raises(InvalidArgument) as err:
        observe(None, cond(kind="bogus", severity="loud", summary="", at_ms=-1))
    fields = {v.field for v in err.value.violations}
    assert fields == {"kind", "severity", "summary", "at_ms"}


def test_record_round_trip_and_schema_check() -> None:
    alert = acknowledge(observe(None, cond(scope=AlertScope("o/x", "S1", "A/1", "SKU", "L1"))), "ana", 5)
    assert from_record(to_record(alert)) == alert
    with pytest.raises(ValueError, match="schema"):
        from_record({**to_record(alert), "schema": "lotwise.alert/0"})
    with pytest.raises(ValueError, match="unknown kind, state or severity"):
        from_record({**to_record(alert), "state": "lost"})


def test_queries() -> None:
    alert = observe(None, cond(severity="warning"))
    assert matches(alert, AlertQuery())
    assert matches(alert, AlertQuery(kinds=("dead_letter",), states=("opened",), site="S1", min_severity="info"))
    assert not matches(alert, AlertQuery(min_severity="critical"))
    assert not matches(alert, AlertQuery(site="S2"))
    assert not matches(alert, AlertQuery(states=("closed",)))
    with pytest.raises(InvalidArgument) as err:
        check_query(AlertQuery(kinds=("x",), states=("y",), min_severity="z", limit=0))
    assert {v.field for v in err.value.violations} == {"kinds[0]", "states[0]", "min_severity", "limit"}
