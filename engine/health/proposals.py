"""Proposed adjustments (issue 15 items 4, 5; DESIGN.md §14 "nothing is adjusted silently").

Reconciliation and shelf counts never change stock: they *propose* an adjustment of one
quant by a variance, and a person approves (the adjustment then goes through the normal
Adjust path, journaled like any count) or rejects it. The approver must be another person
than the proposer; a proposal is decided once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from engine.domain.errors import FailedPrecondition

SCHEMA = "lotwise.adjustment_proposal/1"
STATES = ("proposed", "approved", "rejected")


@dataclass(frozen=True, slots=True)
class Proposal:
    proposal_id: str  # stable: the same difference seen again is the same proposal
    site: str
    sku: str
    lot_id: str
    bin: str
    status: str
    variance: int  # what the books should gain (negative: lose)
    external_qty: int
    book_qty: int
    origin: str  # "reconciliation:<snapshot id>" | "shelf:<count id>"
    proposed_by: str  # the system or person that proposed it ("system:reconciliation")
    proposed_at_ms: int
    state: str = "proposed"
    decided_by: str = ""
    decided_at_ms: int = 0
    note: str = ""
    adjust_request_id: str = ""  # the Adjust that applied it (approved only)


def approve(p: Proposal, actor: str, at_ms: int, note: str = "") -> Proposal:
    _open(p)
    if actor == p.proposed_by or not actor:
        raise FailedPrecondition(
            "SAME_PERSON", f"proposal {p.proposal_id} must be approved by another person than its proposer"
        )
    return replace(
        p,
        state="approved",
        decided_by=actor,
        decided_at_ms=at_ms,
        note=note[:500],
        adjust_request_id=f"adj:{p.proposal_id}",
    )


def reject(p: Proposal, actor: str, at_ms: int, note: str = "") -> Proposal:
    _open(p)
    return replace(p, state="rejected", decided_by=actor, decided_at_ms=at_ms, note=note[:500])


def _open(p: Proposal) -> None:
    if p.state != "proposed":
        raise FailedPrecondition(
            "PROPOSAL_DECIDED", f"proposal {p.proposal_id} is {p.state} already", {"state": p.state}
        )


def to_record(p: Proposal) -> dict[str, Any]:
    return {"schema": SCHEMA, **{f: getattr(p, f) for f in Proposal.__slots__}}


def from_record(r: Mapping[str, Any]) -> Proposal:
    if r.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} record")
    p = Proposal(**{f: r[f] for f in Proposal.__slots__})
    if p.state not in STATES:
        raise ValueError(f"proposal {p.proposal_id}: unknown state {p.state!r}")
    return p
