"""Stock health's Prometheus metrics move with what they count."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from engine.bootstrap.health import HealthMetrics
from engine.health.alerts import AlertScope, Condition, observe
from engine.health.reconcile import BookWindow, SnapshotLine, StockSnapshot, Tolerances, compare, report
from engine.health.services import Reconciled


def test_alerts_actions_and_drift_are_counted() -> None:
    registry = CollectorRegistry()
    m = HealthMetrics(registry)
    alert = observe(None, Condition("expired", "critical", AlertScope(site="S"), "gone", 1))
    m.on_transition(alert, "opened")
    m.on_transition(alert, "repeated")
    m.on_action("expiry", 12.0)
    m.on_action("promotion", -1.0)  # a sweep's action: counted, no latency
    lines = (SnapshotLine("S", "A", 5), SnapshotLine("S", "B", 3))
    diffs = compare(lines, {("S", "A", "", "", ""): BookWindow(5, 5, 5)}, Tolerances({}))
    m.on_report(Reconciled(report(StockSnapshot("s1", "wms:x", 1, lines), diffs), "wms:x", (), {}, (), ()))
    value = registry.get_sample_value
    assert value("lotwise_alerts_total", {"kind": "expired", "transition": "opened"}) == 1
    assert value("lotwise_alerts_total", {"kind": "expired", "transition": "repeated"}) == 1
    assert value("lotwise_expiry_actions_total", {"action": "expiry"}) == 1
    assert value("lotwise_expiry_action_latency_ms_count") == 1
    assert value("lotwise_reconciliation_lines_total", {"class": "match"}) == 1
    assert value("lotwise_reconciliation_lines_total", {"class": "real"}) == 1
    assert value("lotwise_reconciliation_record_accuracy", {"source": "wms:x"}) == 0.5
