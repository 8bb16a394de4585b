"""Vouchers: balanced accounting entries built at the business event (DESIGN.md §1, §14).

`build` is pure: (kind, facts, the amounts per line role, the mapping rules) → a voucher
whose lines each name the account and the rule that chose it. Amounts are already in the
ledger currency's minor unit, and every builder derives its last amount from the others
(AR = revenue + tax; GRNI = the receipt's value), so a voucher balances to the cent by
construction; `check_balanced` re-checks it anyway and raises InvariantViolation.

Red-letter (红字) vouchers carry negative amounts on the same sides: a reversal never
edits its original, and the two net to zero account by account.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from engine.domain.errors import InvariantViolation
from engine.finance.mapping import KIND_ROLES, Facts, Rules
from engine.finance.money import ZERO

SYSTEM_PREPARER = "system:finance"  # the journal follower prepares the vouchers it builds
DEBIT, CREDIT = "D", "C"


class VoucherState:
    PENDING = "pending"
    ANNOTATED = "annotated"
    APPROVED = "approved"
    POSTED = "posted"
    REJECTED = "rejected"
    ALL = ("pending", "annotated", "approved", "posted", "rejected")


class Line(NamedTuple):
    """One line of a voucher. Lines, sources and amounts are named tuples rather than frozen
    dataclasses: as immutable, and ~4× cheaper to make (a frozen dataclass sets each field
    through object.__setattr__), which the follower does ~10 times per movement
    (bench/README.md, "Finance, fifth stop")."""

    line_no: int
    role: str
    account: str
    debit: Decimal
    credit: Decimal
    rule: str  # the mapping rule that chose the account
    account_name: str = ""
    sku: str = ""
    lot_id: str = ""
    qty: int = 0
    memo: str = ""


class Source(NamedTuple):
    """What a voucher comes from: the event (a journal position), the caller's document,
    the movement (sku, site, seq) and the cost layers it consumed or created."""

    event_id: str
    doc_ref: str = ""
    sku: str = ""
    site: str = ""
    seq: int = 0
    lot_id: str = ""
    qty: int = 0
    layer_ids: tuple[str, ...] = ()
    movement: str = ""  # the movement kind (receive, commit, consume, ...)
    # The attributes the voucher's accounts were chosen by (a return: its sale's), so explain
    # shows them; "" in vouchers stored before they were kept (explain reads the doc_ref then).
    tier: str = ""
    channel: str = ""
    tax: str = ""


@dataclass(frozen=True, slots=True)
class Note:
    author: str
    at_ms: int
    text: str


@dataclass(frozen=True, slots=True)
class Voucher:
    voucher_id: str  # stable: derived from its source event, so a replay makes the same one
    company: str
    kind: str
    at_ms: int  # the business event's time (a reversal: the return's, not the original's)
    currency: str
    lines: tuple[Line, ...]
    sources: tuple[Source, ...]
    summary: str = ""
    preparer: str = SYSTEM_PREPARER
    state: str = VoucherState.PENDING
    reversal_of: str = ""  # a red-letter voucher names the one it reverses
    terms: str = ""  # settlement terms of its receivable / payable
    notes: tuple[Note, ...] = ()
    reviewer: str = ""
    reason: str = ""  # why it was rejected
    posted_at_ms: int = 0
    version: int = 0  # +1 on every change of state or notes (stores keep the newest)

    @property
    def debit_total(self) -> Decimal:
        return sum((line.debit for line in self.lines), ZERO)

    @property
    def credit_total(self) -> Decimal:
        return sum((line.credit for line in self.lines), ZERO)


class Amount(NamedTuple):
    role: str
    side: str  # DEBIT or CREDIT
    value: Decimal
    memo: str = ""


def check_balanced(voucher: Voucher) -> None:
    if voucher.debit_total != voucher.credit_total:
        raise InvariantViolation(
            f"voucher {voucher.voucher_id} does not balance: "
            f"debit {voucher.debit_total} ≠ credit {voucher.credit_total}"
        )
    roles = KIND_ROLES.get(voucher.kind, ())
    for line in voucher.lines:
        if line.role not in roles:
            raise InvariantViolation(f"voucher {voucher.voucher_id}: a {voucher.kind} has no {line.role} line")


def build(
    voucher_id: str,
    facts: Facts,
    amounts: Sequence[Amount],
    rules: Rules,
    *,
    at_ms: int,
    currency: str,
    sources: tuple[Source, ...],
    sku: str = "",
    lot_id: str = "",
    qty: int = 0,
    summary: str = "",
    reversal_of: str = "",
    terms: str = "",
    preparer: str = SYSTEM_PREPARER,
) -> Voucher | None:
    """The voucher for `amounts` (zero amounts are left out); None when nothing is left.
    Balance and roles are checked as the lines are made (check_balanced's checks, without
    a second pass over the lines: this runs for every voucher the follower books)."""
    lines: list[Line] = []
    debit_total = credit_total = ZERO
    roles = KIND_ROLES.get(facts.kind, ())
    for amount in amounts:
        if amount.value == ZERO:
            continue
        if amount.role not in roles:
            raise InvariantViolation(f"voucher {voucher_id}: a {facts.kind} has no {amount.role} line")
        match = rules.resolve(facts, amount.role)
        if amount.side == DEBIT:
            debit, credit = amount.value, ZERO
            debit_total += debit
        else:
            debit, credit = ZERO, amount.value
            credit_total += credit
        lines.append(
            Line(
                len(lines) + 1,
                amount.role,
                match.rule.account,
                debit,
                credit,
                match.rule.name,
                match.rule.account_name,
                sku,
                lot_id,
                qty,
                amount.memo,
            )
        )
    if not lines:
        return None
    if debit_total != credit_total:
        raise InvariantViolation(f"voucher {voucher_id} does not balance: debit {debit_total} ≠ credit {credit_total}")
    return Voucher(
        voucher_id,
        facts.company,
        facts.kind,
        at_ms,
        currency,
        tuple(lines),
        sources,
        summary,
        preparer=preparer,
        reversal_of=reversal_of,
        terms=terms,
    )


# ---- the amounts of each kind (the last amount of each is derived: balanced by construction) ----


def receipt_amounts(value: Decimal, inventory: Decimal) -> list[Amount]:
    """Dr Inventory / Cr GRNI at the receipt's cost; a filled shortfall's cost difference to COGS."""
    return [
        Amount("inventory", DEBIT, inventory),
        Amount("cogs", DEBIT, value - inventory, "cost difference on units issued before they arrived"),
        Amount("grni", CREDIT, value),
    ]


def sale_amounts(cost: Decimal, revenue: Decimal, tax: Decimal) -> list[Amount]:
    return [
        Amount("cogs", DEBIT, cost),
        Amount("inventory", CREDIT, cost),
        Amount("ar", DEBIT, revenue + tax),
        Amount("revenue", CREDIT, revenue),
        Amount("output_tax", CREDIT, tax),
    ]


def gift_amounts(cost: Decimal, deemed_tax: Decimal) -> list[Amount]:
    """A gift: the goods' cost (and, as a deemed sale, the output tax on their price) is an expense."""
    return [
        Amount("promotion_expense", DEBIT, cost + deemed_tax),
        Amount("inventory", CREDIT, cost),
        Amount("output_tax", CREDIT, deemed_tax, "deemed sale"),
    ]


def scrap_amounts(cost: Decimal) -> list[Amount]:
    return [Amount("scrap_expense", DEBIT, cost), Amount("inventory", CREDIT, cost)]


def count_amounts(gain: bool, value: Decimal) -> list[Amount]:
    if gain:
        return [Amount("inventory", DEBIT, value), Amount("count_variance", CREDIT, value)]
    return [Amount("count_variance", DEBIT, value), Amount("inventory", CREDIT, value)]


def transfer_out_amounts(cost: Decimal, intercompany: bool) -> list[Amount]:
    return [
        Amount("intercompany_receivable" if intercompany else "transit", DEBIT, cost),
        Amount("inventory", CREDIT, cost),
    ]


def transfer_in_amounts(inventory: Decimal, value: Decimal, intercompany: bool) -> list[Amount]:
    return [
        Amount("inventory", DEBIT, inventory),
        Amount("cogs", DEBIT, value - inventory),
        Amount("intercompany_payable" if intercompany else "transit", CREDIT, value),
    ]


def supplier_invoice_amounts(matched_grni: Decimal, net: Decimal, tax: Decimal) -> list[Amount]:
    """Dr GRNI (what the receipts booked) + input tax, Cr AP (the invoice); the difference
    between the invoice's net and the receipts' value is the price variance."""
    return [
        Amount("grni", DEBIT, matched_grni),
        Amount("price_variance", DEBIT, net - matched_grni),
        Amount("input_tax", DEBIT, tax),
        Amount("ap", CREDIT, net + tax),
    ]


def landed_cost_amounts(amount: Decimal, expensed: Decimal) -> list[Amount]:
    return [
        Amount("inventory", DEBIT, amount - expensed),
        Amount("cogs", DEBIT, expensed, "no stock left on hand to carry it"),
        Amount("landed_cost_clearing", CREDIT, amount),
    ]
