"""Approval by declared value and org distance, and deadlines with escalation
(engine.domain.transfer_flow; the watch that runs them: engine.bootstrap.documents)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest

from engine.bootstrap.documents import RELAY_EVERY_S, deadline_check_s, watch_every_s, watch_transfers
from engine.domain.errors import FailedPrecondition, InvalidArgument
from engine.domain.events import TRANSFER_EVENT_KINDS
from engine.domain.transfer_flow import (
    ESCALATE,
    ESCALATION_ACTOR,
    FlowError,
    RoleNotAllowed,
    Step,
    Transfer,
    TransferLine,
    decide,
    durations,
    entered_state_at_ms,
    escalation_step,
    needs_escalation,
    org_distance,
    overdue,
    parse_flow,
    parse_value,
    state_times,
    step_event,
    transfer_from_doc,
    transfer_to_doc,
    validate_create,
    with_step,
)

HOUR_MS = 3_600_000
RAW: dict[str, Any] = {
    "format": 1,
    "transitions": [
        # near and cheap: the site manager alone
        {"state": "requested", "action": "approve", "next_state": "approved", "role": "site_manager",
         "max_value": "1000", "max_org_distance": 1},
        # everything else: the site manager, then the region
        {"state": "requested", "action": "approve", "next_state": "pending_regional", "role": "site_manager"},
        {"state": "pending_regional", "action": "approve", "next_state": "approved", "role": "regional_manager",
         "max_value": 50000},
        {"state": "pending_regional", "action": "approve", "next_state": "pending_finance", "role": "regional_manager",
         "min_value": "50000.01"},
        {"state": "pending_finance", "action": "approve", "next_state": "approved", "role": "finance"},
        {"state": "requested", "action": "reject", "next_state": "rejected", "role": "site_manager"},
    ],
    "deadlines": [{"state": "requested", "within_ms": 4 * HOUR_MS, "escalate_to": "regional_manager"}],
}  # fmt: skip
FLOW = parse_flow(RAW)


def transfer(value: str, distance: int = 0, qty: int = 10, state: str = "requested", at_ms: int = 0) -> Transfer:
    created = Step("create", "requested", "sam", at_ms, "r0", "d0")
    t = Transfer("T1", "DC", "BOS", (TransferLine("GLU", qty, "", value),), "sam", org_distance=distance)
    t = with_step(t, created)
    if state != "requested":
        t = with_step(t, Step("approve", state, "maya", at_ms + 1, "r1", "d1"))
    return t


def test_org_distance_counts_the_steps_through_the_nearest_common_node() -> None:
    assert org_distance("acme/east/boston", "acme/east/boston") == 0
    assert org_distance("acme/east/boston", "acme/east") == 1
    assert org_distance("acme/east/boston", "acme/west") == 3
    assert org_distance("acme/east", "globex/north") == 4
    assert org_distance("", "acme/east") == 2
    assert org_distance("acme/east/", "/acme/east") == 0  # stray slashes are not nodes


def test_the_value_is_qty_times_unit_value_and_unknown_without_one() -> None:
    assert transfer("12.50", qty=8).value == Decimal("100.00")
    assert transfer("").value is None


def test_value_and_distance_pick_the_chain() -> None:
    assert decide(FLOW, transfer("100"), "approve", "maya", ["site_manager"]).next_state == "approved"
    assert decide(FLOW, transfer("100.01"), "approve", "maya", ["site_manager"]).next_state == "pending_regional"
    far = transfer("1", distance=3)  # cheap but to another region
    assert decide(FLOW, far, "approve", "maya", ["site_manager"]).next_state == "pending_regional"
    big = transfer("6000", state="pending_regional")  # 60,000 in all
    assert decide(FLOW, big, "approve", "rita", ["regional_manager"]).next_state == "pending_finance"
    small = transfer("5000", state="pending_regional")  # 50,000: the bound is inclusive
    assert decide(FLOW, small, "approve", "rita", ["regional_manager"]).next_state == "approved"


def test_a_transfer_without_a_value_meets_no_value_bound() -> None:
    # leaving the value out cannot skip the regional step
    assert decide(FLOW, transfer(""), "approve", "maya", ["site_manager"]).next_state == "pending_regional"
    with pytest.raises(FailedPrecondition):  # no pending_regional rule covers an unknown value
        decide(FLOW, transfer("", state="pending_regional"), "approve", "rita", ["regional_manager"])


def test_a_flow_by_value_requires_a_value_on_every_line() -> None:
    assert FLOW.by_value
    lines = [TransferLine("GLU", 1, "", "3.5"), TransferLine("IVC", 1)]
    with pytest.raises(InvalidArgument) as err:
        validate_create("T1", "DC", "BOS", lines, "", by_value=True)
    assert [v.field for v in err.value.violations] == ["lines[1].unit_value"]
    validate_create("T1", "DC", "BOS", lines, "", by_value=False)  # a flow by quantity does not ask


@pytest.mark.parametrize("bad", ["-1", "1e3", "NaN", "1.1234567", "12,50", " 1", "1" * 41])
def test_a_bad_unit_value_is_named(bad: str) -> None:
    assert parse_value(bad) is None
    with pytest.raises(InvalidArgument) as err:
        validate_create("T1", "DC", "BOS", [TransferLine("GLU", 1, "", bad)], "")
    assert [v.field for v in err.value.violations] == ["lines[0].unit_value"]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda r: r["transitions"][0].update(max_value="cheap"), "transitions[0].max_value"),
        (lambda r: r["transitions"][0].update(min_value=True), "transitions[0].min_value"),
        (lambda r: r["transitions"][0].update(min_value="2000"), "transitions[0].max_value"),
        (lambda r: r["transitions"][0].update(max_org_distance=-1), "transitions[0].max_org_distance"),
        (lambda r: r["transitions"][0].update(min_org_distance=2), "transitions[0].max_org_distance"),
        (lambda r: r["transitions"][0].update(min_org_distance="far"), "transitions[0].min_org_distance"),
        (lambda r: r.update(deadlines={}), "deadlines"),
        (lambda r: r["deadlines"][0].update(state="shipped"), "deadlines[0].state"),
        (lambda r: r["deadlines"][0].update(within_ms=0), "deadlines[0].within_ms"),
        (lambda r: r["deadlines"][0].update(within_ms=True), "deadlines[0].within_ms"),
        (lambda r: r["deadlines"][0].update(escalate_to=""), "deadlines[0].escalate_to"),
        (lambda r: r["deadlines"][0].update(colour="red"), "deadlines[0].colour"),
        (lambda r: r["deadlines"].append(dict(r["deadlines"][0])), "deadlines[1].state"),
        (lambda r: r.update(deadline=[]), "deadline"),
    ],
)
def test_a_bad_rule_or_deadline_is_refused_naming_the_key(change: Any, key: str) -> None:
    raw = json.loads(json.dumps(RAW))
    change(raw)
    with pytest.raises(FlowError) as err:
        parse_flow(raw)
    assert err.value.key == key


def test_the_deadline_passes_only_after_its_time_in_the_state() -> None:
    t = transfer("1", at_ms=1_000)
    assert entered_state_at_ms(t) == 1_000
    assert overdue(FLOW, t, 1_000 + 4 * HOUR_MS) is None
    assert overdue(FLOW, t, 1_001 + 4 * HOUR_MS) is not None
    regional = transfer("2000", state="pending_regional", at_ms=1_000)
    assert overdue(FLOW, regional, 10**12) is None  # that state has no deadline


def test_past_the_deadline_the_escalation_role_may_act_and_no_one_else() -> None:
    t = transfer("100", at_ms=0)
    with pytest.raises(RoleNotAllowed) as err:  # before the deadline: the site manager only
        decide(FLOW, t, "approve", "rita", ["regional_manager"], now_ms=HOUR_MS)
    assert err.value.roles == "site_manager"
    late = 5 * HOUR_MS
    assert decide(FLOW, t, "approve", "rita", ["regional_manager"], now_ms=late).next_state == "approved"
    assert decide(FLOW, t, "reject", "rita", ["regional_manager"], now_ms=late).next_state == "rejected"
    with pytest.raises(RoleNotAllowed) as err:
        decide(FLOW, t, "approve", "fred", ["finance"], now_ms=late)
    assert err.value.roles == "regional_manager, site_manager"
    with pytest.raises(FailedPrecondition):  # escalation does not lift the self-approval rule
        decide(FLOW, t, "approve", "sam", ["regional_manager"], now_ms=late)


def test_one_escalation_per_state_entered_recorded_and_published() -> None:
    t = transfer("100", at_ms=0)
    now = 5 * HOUR_MS
    deadline = needs_escalation(FLOW, t, now)
    assert deadline is not None
    assert deadline.escalate_to == "regional_manager"
    step = escalation_step(t, deadline, now)
    assert (step.action, step.state, step.actor) == (ESCALATE, "requested", ESCALATION_ACTOR)
    assert "waited 5.0 h in requested" in step.note
    assert step.request_id.startswith("~")
    escalated = with_step(t, step)
    assert escalated.state == "requested"
    assert entered_state_at_ms(escalated) == 0
    assert needs_escalation(FLOW, escalated, now + HOUR_MS) is None  # once
    assert escalation_step(escalated, deadline, now + HOUR_MS).request_id == step.request_id  # a retry: same id
    event = step_event(escalated, 1)
    assert (event.kind, event.state, event.previous_state) == (TRANSFER_EVENT_KINDS[ESCALATE], "requested", "requested")
    assert [x.state for x in state_times(escalated, now)] == ["requested"]


def test_the_document_keeps_values_and_distance_and_reads_older_ones() -> None:
    t = transfer("12.5", distance=3)
    assert transfer_from_doc(json.loads(json.dumps(transfer_to_doc(t)))) == t
    old = transfer_to_doc(t)
    del old["org_distance"]
    for line in old["lines"]:
        del line["unit_value"]
    del old["told"]
    back = transfer_from_doc(old)
    assert back.org_distance == 0
    assert back.value is None
    assert back.told == len(back.steps)  # written before the outbox: its events were told by their calls


def test_checks_come_at_a_quarter_of_the_shortest_deadline_within_bounds() -> None:
    assert deadline_check_s(FLOW) == 30.0
    quick = parse_flow({**RAW, "deadlines": [{"state": "requested", "within_ms": 8_000, "escalate_to": "x"}]})
    assert deadline_check_s(quick) == 2.0
    quicker = parse_flow({**RAW, "deadlines": [{"state": "requested", "within_ms": 1, "escalate_to": "x"}]})
    assert deadline_check_s(quicker) == 0.5


def test_the_watch_runs_when_there_is_something_to_watch() -> None:
    no_deadlines = parse_flow({**RAW, "deadlines": []})
    assert watch_every_s(no_deadlines, events=False) is None
    assert watch_every_s(no_deadlines, events=True) == RELAY_EVERY_S
    assert watch_every_s(FLOW, events=False) == 30.0
    assert watch_every_s(FLOW, events=True) == min(30.0, RELAY_EVERY_S)


class _Desk:
    """The part of the transfer desk the watch uses: counts rounds, fails the first."""

    def __init__(self) -> None:
        self.checks = 0
        self.relays = 0

    async def escalate_overdue(self) -> int:
        self.checks += 1
        if self.checks == 1:
            raise OSError("nats away")
        return 0

    async def relay_untold(self) -> int:
        self.relays += 1
        return 0


async def test_the_watch_keeps_checking_after_a_failed_check() -> None:
    desk = _Desk()
    watch = asyncio.create_task(watch_transfers(desk, 0.01))  # type: ignore[arg-type]
    for _ in range(200):
        await asyncio.sleep(0.01)
        if desk.checks >= 3:
            break
    watch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watch
    assert desk.checks >= 3
    assert desk.relays == desk.checks - 1  # the failed round relayed nothing


def test_the_example_flow_in_deploy_loads_and_decides_as_the_docs_say() -> None:
    from pathlib import Path

    example = parse_flow(json.loads((Path(__file__).parents[2] / "deploy/transfer_flow.example.json").read_text()))
    assert example.by_value
    assert [d.state for d in example.deadlines] == ["requested", "pending_regional"]
    cheap_near = transfer("500", distance=0)
    assert decide(example, cheap_near, "approve", "maya", ["site_manager"]).next_state == "approved"
    assert (
        decide(example, transfer("500", distance=1), "approve", "m", ["site_manager"]).next_state == "pending_regional"
    )
    huge = transfer("6000", state="pending_regional")
    assert decide(example, huge, "approve", "rita", ["regional_manager"]).next_state == "pending_finance"


def test_durations_are_nearest_rank_over_the_samples() -> None:
    assert durations([]) == durations(())
    assert (durations([]).count, durations([]).p90_ms) == (0, 0)
    d = durations([5, 1, 4, 2, 3, 10, 9, 8, 7, 6])
    assert (d.count, d.mean_ms, d.p50_ms, d.p90_ms) == (10, 5, 5, 9)
    one = durations([42])
    assert (one.mean_ms, one.p50_ms, one.p90_ms) == (42, 42, 42)


def test_with_authentication_off_the_roles_and_self_approval_are_not_checked() -> None:
    t = transfer("100.01")  # requested by sam
    rule = decide(FLOW, t, "approve", "sam", [], unchecked=True)
    assert rule.next_state == "pending_regional"  # the bounds still choose the rule
    with pytest.raises(FailedPrecondition):  # and the state still matters
        decide(FLOW, transfer("1", state="pending_finance"), "reject", "x", [], unchecked=True)
