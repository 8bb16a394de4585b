"""Transfers as data: the approval flow (a table, like Frappe's workflow_transition) and
the transfer document with its steps, lots and times in state (DESIGN.md §1, §4, §14).

Pure: no stock moves here. The transfer desk (engine.runtime.gateway.transfers) asks this
module what a step leads to, moves the stock through the cells, then records the step.

States: `requested` → (one or more approval steps, by the table) → `approved` → `shipped`
→ `received`; `rejected` and `cancelled` end a transfer early. The table decides only the
approval part: which role may `approve` or `reject` in which state, for which total
quantity, declared value and org distance, and whether the requester may approve their own
transfer (never, by default). Deadlines say how long a transfer may wait in an approval state;
past it the transfer is escalated (a step of its own, published like the others) and the
deadline's `escalate_to` role may then act in the waiting role's place.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any, ClassVar

from engine.domain.commands import MAX_ID_LEN, check_id
from engine.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, PermissionDenied, RequestConflict
from engine.domain.events import TRANSFER_EVENT_KINDS, TransferEvent

REQUESTED, APPROVED, SHIPPED, RECEIVED = "requested", "approved", "shipped", "received"
REJECTED, CANCELLED = "rejected", "cancelled"
FIXED_STATES = frozenset({REQUESTED, APPROVED, SHIPPED, RECEIVED, REJECTED, CANCELLED})
FLOW_ACTIONS = ("approve", "reject")  # the actions the table decides
ANY_ROLE = "*"
MAX_LINES = 256
MAX_STEPS = 64  # a transfer's steps (receipts included): bounds the document
MAX_RULES = 256
MAX_NOTE = 1024
MAX_QTY = 10**12
MAX_HOLD_TTL_MS = 7 * 24 * 3600 * 1000  # the hold coordinator's bound
REASON_SELF_APPROVAL = "SELF_APPROVAL"
REASON_TRANSFER_STATE = "TRANSFER_STATE"
REASON_TRANSFER_SHIPPED = "TRANSFER_SHIPPED"
REASON_RECEIPT_EXCEEDS_TRANSIT = "RECEIPT_EXCEEDS_TRANSIT"
REASON_TOO_MANY_STEPS = "TOO_MANY_STEPS"
ESCALATE = "escalate"  # the step a passed deadline records (state unchanged)
ESCALATION_ACTOR = "system:deadlines"
MAX_DEADLINE_MS = 30 * 24 * 3600 * 1000
MAX_VALUE_PLACES = 6
MAX_VALUE = Decimal(10) ** 15
MAX_ORG_DISTANCE = 1024


class FlowError(ValueError):
    """A flow table that cannot be used; `key` names where (e.g. `transitions[2].role`)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


class RoleNotAllowed(PermissionDenied):
    """The flow names no `action` step in `state` for the caller's roles; `roles` may act."""

    FIELDS: ClassVar[tuple[str, ...]] = ("action", "state", "roles")
    action: str
    state: str
    roles: str

    def __init__(self, action: str, state: str, roles: str) -> None:
        PermissionDenied.__init__(self, f"{action} in state {state} is for the roles: {roles or '(none)'}")
        self.action, self.state, self.roles = action, state, roles

    def __reduce__(self) -> tuple[Any, ...]:
        return (RoleNotAllowed, (self.action, self.state, self.roles))


@dataclass(frozen=True, slots=True)
class FlowRule:
    state: str
    action: str
    next_state: str
    role: str
    allow_self_approval: bool = False
    min_qty: int = 0  # applies to transfers of at least this many units in all
    max_qty: int = 0  # … and at most this many (0: no upper bound)
    min_value: Decimal | None = None  # declared value Σ qty × unit_value at least this …
    max_value: Decimal | None = None  # … and at most this (None: no bound)
    min_org_distance: int = 0  # steps through the org tree between the two sites' nodes
    max_org_distance: int | None = None

    def covers(self, total_qty: int, value: Decimal | None = None, org_distance: int = 0) -> bool:
        """Whether a transfer of this size, value and reach is this rule's to decide. A
        transfer without a declared value never meets a value bound (the desk refuses such a
        transfer when the table decides by value, so leaving values out cannot skip a step)."""
        if total_qty < self.min_qty or (self.max_qty and total_qty > self.max_qty):
            return False
        if self.min_value is not None and (value is None or value < self.min_value):
            return False
        if self.max_value is not None and (value is None or value > self.max_value):
            return False
        return org_distance >= self.min_org_distance and (
            self.max_org_distance is None or org_distance <= self.max_org_distance
        )

    @property
    def by_value(self) -> bool:
        return self.min_value is not None or self.max_value is not None


@dataclass(frozen=True, slots=True)
class Deadline:
    """A transfer may wait `within_ms` in `state`; then it is escalated to `escalate_to`."""

    state: str
    within_ms: int
    escalate_to: str


@dataclass(frozen=True, slots=True)
class TransferFlow:
    rules: tuple[FlowRule, ...]
    hold_ttl_ms: int = MAX_HOLD_TTL_MS  # how long approved stock stays held before it ships
    deadlines: tuple[Deadline, ...] = ()

    @property
    def by_value(self) -> bool:
        """The table decides by declared value: every line must then declare one."""
        return any(rule.by_value for rule in self.rules)

    def deadline(self, state: str) -> Deadline | None:
        return next((d for d in self.deadlines if d.state == state), None)


# ---- the table ----


def parse_flow(data: Mapping[str, Any]) -> TransferFlow:
    """Validate a flow table (a parsed JSON/TOML object); FlowError names the bad key."""
    if data.get("format") != 1:
        raise FlowError("format", "must be 1")
    ttl = data.get("hold_ttl_ms", MAX_HOLD_TTL_MS)
    if not isinstance(ttl, int) or not 1 <= ttl <= MAX_HOLD_TTL_MS:
        raise FlowError("hold_ttl_ms", f"must be an integer in 1..{MAX_HOLD_TTL_MS}")
    raw = data.get("transitions")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_RULES:
        raise FlowError("transitions", f"must be a list of 1..{MAX_RULES} transitions")
    unknown = set(data) - {"format", "hold_ttl_ms", "transitions", "deadlines"}
    if unknown:
        raise FlowError(sorted(unknown)[0], "unknown field")
    rules = tuple(_parse_rule(r, f"transitions[{i}]") for i, r in enumerate(raw))
    if APPROVED not in _reachable(rules):
        raise FlowError("transitions", "no chain of approve steps leads from requested to approved")
    return TransferFlow(rules, ttl, _parse_deadlines(data.get("deadlines", []), rules))


def _parse_deadlines(raw: Any, rules: Sequence[FlowRule]) -> tuple[Deadline, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_RULES:
        raise FlowError("deadlines", f"must be a list of at most {MAX_RULES} deadlines")
    approval_states = {r.state for r in rules}
    out: list[Deadline] = []
    for i, item in enumerate(raw):
        key = f"deadlines[{i}]"
        if not isinstance(item, dict):
            raise FlowError(key, "must be a table")
        unknown = set(item) - {"state", "within_ms", "escalate_to"}
        if unknown:
            raise FlowError(f"{key}.{sorted(unknown)[0]}", "unknown field")
        for name in ("state", "escalate_to"):
            if not isinstance(item.get(name), str) or not item[name] or len(item[name]) > MAX_ID_LEN:
                raise FlowError(f"{key}.{name}", f"must be a string of 1..{MAX_ID_LEN} characters")
        if item["state"] not in approval_states:
            raise FlowError(f"{key}.state", "must be a state the table approves or rejects in")
        within = item.get("within_ms")
        if not isinstance(within, int) or isinstance(within, bool) or not 1 <= within <= MAX_DEADLINE_MS:
            raise FlowError(f"{key}.within_ms", f"must be an integer in 1..{MAX_DEADLINE_MS}")
        if any(d.state == item["state"] for d in out):
            raise FlowError(f"{key}.state", "a state has at most one deadline")
        out.append(Deadline(item["state"], within, item["escalate_to"]))
    return tuple(out)


def _parse_rule(raw: Any, key: str) -> FlowRule:
    if not isinstance(raw, dict):
        raise FlowError(key, "must be a table")
    unknown = set(raw) - {f for f in FlowRule.__slots__}
    if unknown:
        raise FlowError(f"{key}.{sorted(unknown)[0]}", "unknown field")
    for name in ("state", "action", "next_state", "role"):
        if not isinstance(raw.get(name), str) or not raw[name] or len(raw[name]) > MAX_ID_LEN:
            raise FlowError(f"{key}.{name}", f"must be a string of 1..{MAX_ID_LEN} characters")
    values = {name: _flow_value(raw.get(name), f"{key}.{name}") for name in ("min_value", "max_value")}
    rule = FlowRule(**{**raw, **values})
    if rule.action not in FLOW_ACTIONS:
        raise FlowError(f"{key}.action", f"must be one of {', '.join(FLOW_ACTIONS)}")
    if rule.state in FIXED_STATES - {REQUESTED}:
        raise FlowError(f"{key}.state", "approval steps start from requested or a state of the table's own")
    if rule.action == "reject":
        bad_end = rule.next_state != REJECTED
    else:
        bad_end = rule.next_state != APPROVED and rule.next_state in FIXED_STATES
    if bad_end:
        raise FlowError(f"{key}.next_state", "approve leads to approved or a state of its own; reject to rejected")
    for name in ("min_qty", "max_qty"):
        value = getattr(rule, name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_QTY:
            raise FlowError(f"{key}.{name}", f"must be an integer in 0..{MAX_QTY}")
    if not isinstance(rule.allow_self_approval, bool):
        raise FlowError(f"{key}.allow_self_approval", "must be true or false")
    _check_distances(rule, key)
    if rule.min_value is not None and rule.max_value is not None and rule.min_value > rule.max_value:
        raise FlowError(f"{key}.max_value", "must be at least min_value")
    return rule


def _flow_value(raw: Any, key: str) -> Decimal | None:
    """A value bound: a number or a decimal string ("5000.00"); absent or null: no bound."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise FlowError(key, 'must be a number or a decimal string such as "5000.00"')
    value = parse_value(str(raw))
    if value is None:
        raise FlowError(key, f"must be a non-negative amount below {MAX_VALUE} with at most {MAX_VALUE_PLACES} places")
    return value


def _check_distances(rule: FlowRule, key: str) -> None:
    low, high = rule.min_org_distance, rule.max_org_distance
    if isinstance(low, bool) or not isinstance(low, int) or not 0 <= low <= MAX_ORG_DISTANCE:
        raise FlowError(f"{key}.min_org_distance", f"must be an integer in 0..{MAX_ORG_DISTANCE}")
    if high is not None and (
        isinstance(high, bool) or not isinstance(high, int) or not low <= high <= MAX_ORG_DISTANCE
    ):
        raise FlowError(f"{key}.max_org_distance", f"must be an integer in min_org_distance..{MAX_ORG_DISTANCE}")


def parse_value(text: str) -> Decimal | None:
    """A declared amount in plain notation, or None when it is not one."""
    if not text or len(text) > 40 or not all(c.isdigit() or c == "." for c in text):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    exponent = value.as_tuple().exponent
    if not value.is_finite() or value >= MAX_VALUE or (isinstance(exponent, int) and -exponent > MAX_VALUE_PLACES):
        return None
    return value


def org_distance(from_org: str, to_org: str) -> int:
    """Steps up from one org node to the nodes' nearest common ancestor and down to the
    other ("group/east/boston" to "group/west": 3). Sites under the same node: 0."""
    a = [p for p in from_org.split("/") if p]
    b = [p for p in to_org.split("/") if p]
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    return len(a) - common + len(b) - common


def _reachable(rules: Sequence[FlowRule]) -> set[str]:
    seen, todo = {REQUESTED}, [REQUESTED]
    while todo:  # bounded: each state is added once
        state = todo.pop()
        for rule in rules:
            if rule.state == state and rule.action == "approve" and rule.next_state not in seen:
                seen.add(rule.next_state)
                todo.append(rule.next_state)
    return seen


def default_flow() -> TransferFlow:
    text = resources.files("engine.domain").joinpath("transfer_flow.json").read_text()
    return parse_flow(json.loads(text))


# ---- the document ----


@dataclass(frozen=True, slots=True)
class TransferLine:
    sku: str
    qty: int
    lot_id: str = ""  # "": first expiry, first out
    unit_value: str = ""  # declared value of one unit ("12.50"): the flow may decide by value


@dataclass(frozen=True, slots=True)
class Step:
    action: str
    state: str  # the state the step led to
    actor: str
    at_ms: int
    request_id: str
    digest: str  # of the step's request: a retry must carry the same one
    note: str = ""


@dataclass(frozen=True, slots=True)
class TransferLot:
    """One lot of one sku on its way: shipped, then taken in (or not) at the destination."""

    sku: str
    lot_id: str
    shipped_qty: int
    expires_at_ms: int = 0
    owner: str = "own"
    received_qty: int = 0
    damaged_qty: int = 0
    short_qty: int = 0

    @property
    def in_transit(self) -> int:
        return self.shipped_qty - self.received_qty - self.damaged_qty - self.short_qty


@dataclass(frozen=True, slots=True)
class Pick:
    """One quant the approval's hold took at the source: what shipping issues. Recorded on
    the transfer, so a retried ship issues the same quants even after the hold ended."""

    sku: str
    lot_id: str
    bin: str
    owner: str
    qty: int
    expires_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class Transfer:
    transfer_id: str
    from_site: str
    to_site: str
    lines: tuple[TransferLine, ...]
    requested_by: str
    state: str = REQUESTED
    steps: tuple[Step, ...] = ()
    lots: tuple[TransferLot, ...] = ()
    picks: tuple[Pick, ...] = ()
    eta_ms: int = 0
    hold_id: str = ""
    org_distance: int = 0  # between the sites' org nodes, fixed at creation
    told: int = 0  # the outbox mark: steps[:told] are known stored on the event stream

    @property
    def total_qty(self) -> int:
        return sum(line.qty for line in self.lines)

    @property
    def value(self) -> Decimal | None:
        """Σ qty × unit_value, or None when a line declares no value."""
        if not self.lines or any(not line.unit_value for line in self.lines):
            return None
        return sum((line.qty * Decimal(line.unit_value) for line in self.lines), Decimal(0))


def digest_of(payload: Mapping[str, Any]) -> str:
    data = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def validate_create(
    transfer_id: str, from_site: str, to_site: str, lines: Sequence[TransferLine], note: str, by_value: bool = False
) -> None:
    """`by_value`: the flow decides by declared value, so every line must declare one."""
    out: list[FieldViolation] = []
    check_id(transfer_id, "transfer_id", out)
    check_id(from_site, "from_site", out)
    check_id(to_site, "to_site", out)
    if from_site and from_site == to_site:
        out.append(FieldViolation("to_site", "a transfer must go to another site"))
    if not 1 <= len(lines) <= MAX_LINES:
        out.append(FieldViolation("lines", f"must have 1..{MAX_LINES} lines"))
    for i, line in enumerate(lines[:MAX_LINES]):
        check_id(line.sku, f"lines[{i}].sku", out)
        check_id(line.lot_id, f"lines[{i}].lot_id", out, required=False)
        if not 1 <= line.qty <= MAX_QTY:
            out.append(FieldViolation(f"lines[{i}].qty", f"must be in 1..{MAX_QTY}"))
        _check_unit_value(line.unit_value, f"lines[{i}].unit_value", by_value, out)
    if len(note) > MAX_NOTE:
        out.append(FieldViolation("note", f"must be at most {MAX_NOTE} characters"))
    if out:
        raise InvalidArgument(out)


def _check_unit_value(text: str, field: str, required: bool, out: list[FieldViolation]) -> None:
    if not text:
        if required:
            out.append(FieldViolation(field, "is required: the approval flow decides by declared value"))
    elif parse_value(text) is None:
        out.append(
            FieldViolation(field, f'must be a non-negative decimal such as "12.50" (at most {MAX_VALUE_PLACES} places)')
        )


def repeated_step(transfer: Transfer, request_id: str, digest: str) -> bool:
    """True when this request already made one of the transfer's steps (a retry: answer
    as now); RequestConflict when that step was another request under the same id."""
    for step in transfer.steps:
        if step.request_id == request_id:
            if step.digest != digest:
                raise RequestConflict(request_id)
            return True
    return False


def decide(
    flow: TransferFlow,
    transfer: Transfer,
    action: str,
    actor: str,
    roles: Sequence[str],
    now_ms: int = 0,
    unchecked: bool = False,
) -> FlowRule:
    """The rule an approve/reject by `actor` (in `roles`) follows, or the typed refusal.
    Once the state's deadline has passed (`now_ms`), its `escalate_to` role may act too.
    `unchecked` (authentication off: nobody is known) skips the roles and the self-approval
    rule; the state and the size, value and distance bounds still decide the rule."""
    value = transfer.value
    candidates = [r for r in flow.rules if r.state == transfer.state and r.action == action]
    candidates = [r for r in candidates if r.covers(transfer.total_qty, value, transfer.org_distance)]
    if not candidates:
        raise FailedPrecondition(
            REASON_TRANSFER_STATE,
            f"transfer {transfer.transfer_id} is {transfer.state}: it cannot be {action}d now",
            {"state": transfer.state, "action": action},
        )
    if unchecked:
        return candidates[0]
    mine = [r for r in candidates if r.role == ANY_ROLE or r.role in roles]
    escalated = overdue(flow, transfer, now_ms) if now_ms else None
    if not mine and escalated is not None and escalated.escalate_to in roles:
        mine = candidates  # the escalation role stands in for whoever the table names
    if not mine:
        allowed = {r.role for r in candidates} | ({escalated.escalate_to} if escalated else set())
        raise RoleNotAllowed(action, transfer.state, ", ".join(sorted(allowed)))
    if actor == transfer.requested_by and not any(r.allow_self_approval for r in mine):
        raise FailedPrecondition(
            REASON_SELF_APPROVAL,
            f"{actor} requested transfer {transfer.transfer_id} and may not {action} it too",
            {"requested_by": transfer.requested_by, "actor": actor, "action": action},
        )
    return next(r for r in mine if actor != transfer.requested_by or r.allow_self_approval)


# ---- deadlines ----


def entered_state_at_ms(transfer: Transfer) -> int:
    """When the transfer entered the state it is in (its first step that led there since
    the last change of state; an escalation does not change it)."""
    at: int | None = None
    for step in transfer.steps:
        if step.state != transfer.state:
            at = None
        elif at is None:
            at = step.at_ms
    return at or 0


def overdue(flow: TransferFlow, transfer: Transfer, now_ms: int) -> Deadline | None:
    """The deadline of the transfer's state when it has passed, else None."""
    deadline = flow.deadline(transfer.state)
    if deadline is None or not transfer.steps:
        return None
    return deadline if now_ms - entered_state_at_ms(transfer) > deadline.within_ms else None


def needs_escalation(flow: TransferFlow, transfer: Transfer, now_ms: int) -> Deadline | None:
    """A passed deadline not yet recorded as an escalation step in this state."""
    deadline = overdue(flow, transfer, now_ms)
    if deadline is None:
        return None
    return None if escalation_request_id(transfer) in {s.request_id for s in transfer.steps} else deadline


def escalation_request_id(transfer: Transfer) -> str:
    """One escalation per state entered: the step index the state began at keys it, so a
    retried sweep finds its own step (idempotent) and a later return to the state is new."""
    first = next((i for i in range(len(transfer.steps) - 1, -1, -1) if transfer.steps[i].state != transfer.state), -1)
    return f"~{ESCALATE}/{transfer.state}/{first + 1}"  # "~" and "/": no caller's request id has them


def escalation_step(transfer: Transfer, deadline: Deadline, now_ms: int) -> Step:
    waited_h = (now_ms - entered_state_at_ms(transfer)) / 3_600_000
    note = f"waited {waited_h:.1f} h in {transfer.state} (deadline {deadline.within_ms / 3_600_000:g} h); "
    note += f"{deadline.escalate_to} may now act"
    request_id = escalation_request_id(transfer)
    digest = digest_of({"action": ESCALATE, "state": transfer.state, "request_id": request_id})
    return Step(ESCALATE, transfer.state, ESCALATION_ACTOR, now_ms, request_id, digest, note)


def with_step(transfer: Transfer, step: Step, **changes: Any) -> Transfer:
    if len(transfer.steps) >= MAX_STEPS:
        raise FailedPrecondition(REASON_TOO_MANY_STEPS, f"a transfer has at most {MAX_STEPS} steps")
    return replace(transfer, steps=(*transfer.steps, step), state=step.state, **changes)


def require_state(transfer: Transfer, action: str, *states: str) -> None:
    if transfer.state not in states:
        reason = REASON_TRANSFER_SHIPPED if transfer.state in (SHIPPED, RECEIVED) else REASON_TRANSFER_STATE
        raise FailedPrecondition(
            reason,
            f"transfer {transfer.transfer_id} is {transfer.state}: it cannot be {action} now",
            {"state": transfer.state, "action": action},
        )


def cancellable(transfer: Transfer) -> None:
    """Anything before shipping: nothing has left the source yet."""
    if transfer.state in (SHIPPED, RECEIVED, REJECTED, CANCELLED):
        require_state(transfer, "cancelled")


# ---- receipts ----


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    sku: str
    qty: int
    damaged_qty: int = 0
    lot_id: str = ""  # "": the lots in transit, first expiry first


@dataclass(frozen=True, slots=True)
class Take:
    """Units of the transfer's lot `index` leaving `in transit` at the destination, as
    `kind` received, damage or short."""

    index: int
    sku: str
    lot_id: str
    qty: int
    kind: str


def validate_receipt(lines: Sequence[ReceiptLine], final: bool) -> None:
    out: list[FieldViolation] = []
    if not lines and not final:
        out.append(FieldViolation("lines", "name what arrived, or set final"))
    if len(lines) > MAX_LINES:
        out.append(FieldViolation("lines", f"at most {MAX_LINES} lines"))
    for i, line in enumerate(lines[:MAX_LINES]):
        check_id(line.sku, f"lines[{i}].sku", out)
        check_id(line.lot_id, f"lines[{i}].lot_id", out, required=False)
        if not 0 <= line.qty <= MAX_QTY or not 0 <= line.damaged_qty <= MAX_QTY:
            out.append(FieldViolation(f"lines[{i}].qty", f"qty and damaged_qty must be in 0..{MAX_QTY}"))
        elif not line.qty and not line.damaged_qty:
            out.append(FieldViolation(f"lines[{i}].qty", "a line receives or reports damaged at least one unit"))
    if out:
        raise InvalidArgument(out)


def plan_receipt(transfer: Transfer, lines: Sequence[ReceiptLine], final: bool) -> list[Take]:
    """What each lot in transit gives up: received and damaged units as the lines say (a
    line without a lot takes the lots in transit by earliest expiry), then, when `final`,
    everything still in transit as short. Refused whole when a line asks for more than is
    in transit."""
    left = [lot.in_transit for lot in transfer.lots]
    order = sorted(range(len(left)), key=lambda i: (transfer.lots[i].expires_at_ms or 2**62, transfer.lots[i].lot_id))
    takes: list[Take] = []
    for n, line in enumerate(lines):
        mine = [i for i in order if _matches(transfer.lots[i], line)]
        for kind, qty in (("received", line.qty), ("damage", line.damaged_qty)):
            takes.extend(_take(transfer.lots, mine, left, kind, qty, n))
    if final:
        takes.extend(
            Take(i, lot.sku, lot.lot_id, left[i], "short") for i, lot in enumerate(transfer.lots) if left[i] > 0
        )
    return takes


def _matches(lot: TransferLot, line: ReceiptLine) -> bool:
    return lot.sku == line.sku and (not line.lot_id or lot.lot_id == line.lot_id)


def _take(lots: Sequence[TransferLot], mine: Sequence[int], left: list[int], kind: str, qty: int, n: int) -> list[Take]:
    takes: list[Take] = []
    for i in mine:
        k = min(qty, left[i])
        if k > 0:
            takes.append(Take(i, lots[i].sku, lots[i].lot_id, k, kind))
            left[i] -= k
            qty -= k
    if qty:
        raise FailedPrecondition(
            REASON_RECEIPT_EXCEEDS_TRANSIT,
            f"lines[{n}] takes {qty} more {kind} units than are in transit",
            {"line": str(n), "excess_qty": str(qty)},
        )
    return takes


_COUNTER = {"received": "received_qty", "damage": "damaged_qty", "short": "short_qty"}


def after_receipt(transfer: Transfer, takes: Sequence[Take]) -> tuple[TransferLot, ...]:
    lots = list(transfer.lots)
    for take in takes:
        name = _COUNTER[take.kind]
        lots[take.index] = replace(lots[take.index], **{name: getattr(lots[take.index], name) + take.qty})
    return tuple(lots)


def all_arrived(lots: Sequence[TransferLot]) -> bool:
    return all(lot.in_transit == 0 for lot in lots)


# ---- time in state ----


@dataclass(frozen=True, slots=True)
class StateTime:
    state: str
    entered_at_ms: int
    left_at_ms: int  # 0: still there
    duration_ms: int  # up to `now_ms` while still there


def state_times(transfer: Transfer, now_ms: int) -> list[StateTime]:
    """How long the transfer spent in each state, from its steps (a partial receipt stays
    in `shipped`: it is not a new state)."""
    entered: list[tuple[str, int]] = []
    for step in transfer.steps:
        if not entered or entered[-1][0] != step.state:
            entered.append((step.state, step.at_ms))
    out: list[StateTime] = []
    for i, (state, at) in enumerate(entered):
        left = entered[i + 1][1] if i + 1 < len(entered) else 0
        out.append(StateTime(state, at, left, (left or now_ms) - at))
    return out


@dataclass(frozen=True, slots=True)
class Durations:
    """How long transfers took, over a set of them (ms): count, mean, median, 90th percentile."""

    count: int
    mean_ms: int
    p50_ms: int
    p90_ms: int


def durations(samples: Sequence[int]) -> Durations:
    """Nearest-rank percentiles: each is one of the samples, never an interpolation."""
    if not samples:
        return Durations(0, 0, 0, 0)
    ordered = sorted(samples)

    def rank(percent: int) -> int:
        return ordered[max(0, math.ceil(len(ordered) * percent / 100) - 1)]

    return Durations(len(ordered), sum(ordered) // len(ordered), rank(50), rank(90))


# ---- as business events ----


def step_event(transfer: Transfer, index: int) -> TransferEvent:
    """The event of the transfer's step `index`. Pure: the same step gives the same event,
    so a retried step republishes an identical one (the stream drops it by its id)."""
    step = transfer.steps[index]
    return TransferEvent(
        event_id=f"transfer:{transfer.transfer_id}:{index}",
        kind=TRANSFER_EVENT_KINDS[step.action],
        transfer_id=transfer.transfer_id,
        step=index,
        from_site=transfer.from_site,
        to_site=transfer.to_site,
        state=step.state,
        previous_state=transfer.steps[index - 1].state if index else "",
        actor=step.actor,
        request_id=step.request_id,
        note=step.note,
        at_ms=step.at_ms,
        total_qty=transfer.total_qty,
        eta_ms=transfer.eta_ms if step.action in ("ship", "receive") else 0,
    )


def step_index(transfer: Transfer, request_id: str) -> int:
    """The index of the step a request id recorded (the last one when several match)."""
    for i in range(len(transfer.steps) - 1, -1, -1):
        if transfer.steps[i].request_id == request_id:
            return i
    raise ValueError(f"no step of {transfer.transfer_id} has request id {request_id!r}")


# ---- listing ----

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class TransferQuery:
    """Which transfers a ListTransfers asks for ("" / 0: no bound) and which page."""

    site: str = ""  # the source or the destination
    state: str = ""
    created_after_ms: int = 0  # created at or after
    created_before_ms: int = 0  # created before
    page_size: int = DEFAULT_PAGE_SIZE
    after: tuple[int, str] | None = None  # the (created_at_ms, transfer_id) the last page ended on


def created_at_ms(transfer: Transfer) -> int:
    return transfer.steps[0].at_ms if transfer.steps else 0


def list_order(transfer: Transfer) -> tuple[int, str]:
    """Oldest request first; the id breaks ties, so a page cursor is one exact place."""
    return created_at_ms(transfer), transfer.transfer_id


def parse_query(
    site: str, state: str, created_after_ms: int, created_before_ms: int, page_size: int, page_token: str
) -> TransferQuery:
    """Validate a ListTransfers request; InvalidArgument names every bad field."""
    out: list[FieldViolation] = []
    if not 0 <= page_size <= MAX_PAGE_SIZE:
        out.append(FieldViolation("page_size", f"must be in 0..{MAX_PAGE_SIZE} (0: {DEFAULT_PAGE_SIZE})"))
    if created_after_ms < 0 or created_before_ms < 0:
        out.append(FieldViolation("created_after_ms", "times must be ≥ 0 (0: no bound)"))
    elif created_after_ms and created_before_ms and created_after_ms >= created_before_ms:
        out.append(FieldViolation("created_before_ms", "must be after created_after_ms"))
    for name, value in (("site", site), ("state", state)):
        if len(value) > MAX_ID_LEN:
            out.append(FieldViolation(name, f"at most {MAX_ID_LEN} characters"))
    after = _parse_token(page_token, out)
    if out:
        raise InvalidArgument(out)
    size = page_size or DEFAULT_PAGE_SIZE
    return TransferQuery(site, state, created_after_ms, created_before_ms, size, after)


def page_token_of(transfer: Transfer) -> str:
    at, transfer_id = list_order(transfer)
    return f"{at}:{transfer_id}"


def _parse_token(token: str, out: list[FieldViolation]) -> tuple[int, str] | None:
    if not token:
        return None
    at, sep, transfer_id = token.partition(":")  # a transfer id may itself hold ':'
    if not sep or not at.isdigit() or not transfer_id or len(transfer_id) > MAX_ID_LEN:
        out.append(FieldViolation("page_token", "not a token this engine gave (pass next_page_token as is)"))
        return None
    return int(at), transfer_id


def in_query(transfer: Transfer, query: TransferQuery) -> bool:
    """The filters of the query, and past the page cursor (visibility is the caller's)."""
    created = created_at_ms(transfer)
    return (
        (not query.site or query.site in (transfer.from_site, transfer.to_site))
        and (not query.state or transfer.state == query.state)
        and (not query.created_after_ms or created >= query.created_after_ms)
        and (not query.created_before_ms or created < query.created_before_ms)
        and (query.after is None or list_order(transfer) > query.after)
    )


# ---- as a document (JSON) ----


def transfer_to_doc(transfer: Transfer) -> dict[str, Any]:
    return {"format": 1, **asdict(transfer)}


def transfer_from_doc(doc: dict[str, Any]) -> Transfer:
    if doc.get("format") != 1:
        raise ValueError(f"transfer document format {doc.get('format')!r} is not 1")
    return Transfer(
        transfer_id=doc["transfer_id"],
        from_site=doc["from_site"],
        to_site=doc["to_site"],
        lines=tuple(TransferLine(**line) for line in doc["lines"]),
        requested_by=doc["requested_by"],
        state=doc["state"],
        steps=tuple(Step(**s) for s in doc["steps"]),
        lots=tuple(TransferLot(**lot) for lot in doc["lots"]),
        picks=tuple(Pick(**p) for p in doc["picks"]),
        eta_ms=doc["eta_ms"],
        hold_id=doc["hold_id"],
        org_distance=doc.get("org_distance", 0),  # documents written before distances counted
        told=doc.get("told", len(doc["steps"])),  # … and before the outbox: taken as told
    )
