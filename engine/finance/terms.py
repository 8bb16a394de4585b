"""Settlement terms and payment plans: when money is due and how much is expected.

Terms as people write them:
    "2/10 n/30"                    2 % off if paid within 10 days of the invoice, else due in 30
    "n/30 after delivery"          the clock starts at delivery
    "60 days after acceptance"     ... at the customer's acceptance, which arrives later as an event
    "monthly statement"            due at the end of the baseline's month (the statement)
    "monthly statement n/30"       30 days after that statement
A discount is on the gross amount by default, or on the amount before tax (tax_mode
"base"), as Odoo's early-payment discount offers. Until its baseline event has arrived a
plan has no dates: it waits, and says for what.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from dateutil.relativedelta import relativedelta

from engine.domain.commands import parse_terms
from engine.finance.money import ZERO, money

BASELINES = ("invoice", "delivery", "acceptance", "statement")
TAX_MODES = ("gross", "base")
MAX_TERMS_CHARS = 64
_AFTER = re.compile(r"^(?P<head>.*?)\s*(?:after|from)\s+(?P<baseline>invoice|delivery|acceptance)$", re.IGNORECASE)
_DAYS = re.compile(r"^(?P<days>\d{1,4})\s+days?$", re.IGNORECASE)
_STATEMENT = re.compile(r"^monthly\s+statement(?:\s+(?P<rest>.+))?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PaymentTerms:
    discount_pct: Decimal = ZERO
    discount_days: int = 0
    net_days: int = 0
    baseline: str = "invoice"
    tax_mode: str = "gross"


@dataclass(frozen=True, slots=True)
class Plan:
    """One receivable or payable: its dates (None while the baseline has not happened) and amounts."""

    doc_key: str
    terms: str
    baseline: str
    baseline_date: date | None
    discount_deadline: date | None
    due_date: date | None
    gross: Decimal
    discount: Decimal  # what paying by the deadline saves
    net_if_discounted: Decimal  # the estimated net receivable (or payable)

    @property
    def waiting_for(self) -> str:
        return "" if self.baseline_date else self.baseline


def parse_payment_terms(text: str, tax_mode: str = "gross") -> PaymentTerms:
    """Raise ValueError saying what is wrong."""
    if tax_mode not in TAX_MODES:
        raise ValueError(f"tax mode must be one of {TAX_MODES}")
    written = text.strip()
    if not written or len(written) > MAX_TERMS_CHARS:
        raise ValueError(f"terms must be 1..{MAX_TERMS_CHARS} characters")
    statement = _STATEMENT.match(written)
    if statement:
        rest = statement.group("rest")
        base = _discount_and_net(rest) if rest else PaymentTerms()
        return PaymentTerms(base.discount_pct, base.discount_days, base.net_days, "statement", tax_mode)
    baseline = "invoice"
    after = _AFTER.match(written)
    if after:
        written, baseline = after.group("head").strip(), after.group("baseline").lower()
    base = _discount_and_net(written)
    return PaymentTerms(base.discount_pct, base.discount_days, base.net_days, baseline, tax_mode)


def _discount_and_net(written: str) -> PaymentTerms:
    days = _DAYS.match(written.strip())
    if days:
        return PaymentTerms(net_days=int(days.group("days")))
    parsed = parse_terms(written)  # "2/10 n/30", "net 30": the engine's own reading
    return PaymentTerms(parsed.discount_pct, parsed.discount_days, parsed.net_days)


def day_of(at_ms: int) -> date:
    return datetime.fromtimestamp(at_ms / 1000, UTC).date()


def plan(
    doc_key: str,
    text: str,
    gross: Decimal,
    tax: Decimal,
    currency: str,
    baseline_at: date | None,
    tax_mode: str = "gross",
) -> Plan:
    """The plan of `gross` (tax included) under `text`, once its baseline is `baseline_at`."""
    terms = parse_payment_terms(text, tax_mode)
    discount_base = gross if terms.tax_mode == "gross" else gross - tax
    discount = money(discount_base * terms.discount_pct / 100, currency)
    if baseline_at is None:
        return Plan(doc_key, text, terms.baseline, None, None, None, gross, discount, gross - discount)
    start = baseline_at
    if terms.baseline == "statement":  # the statement closes the month
        start = baseline_at + relativedelta(day=31)
    deadline = start + relativedelta(days=terms.discount_days) if terms.discount_days else None
    due = start + relativedelta(days=terms.net_days)
    return Plan(doc_key, text, terms.baseline, baseline_at, deadline, due, gross, discount, gross - discount)


@dataclass(frozen=True, slots=True)
class CashDay:
    day: date
    receivable: Decimal  # expected in
    payable: Decimal  # expected out


def cash_flow(receivables: list[Plan], payables: list[Plan]) -> list[CashDay]:
    """Expected cash per day: a discounted plan at its net on the discount deadline (the
    estimate assumes the discount is taken), any other on its due date at gross. Plans
    still waiting for their baseline have no day and are left out (the due-date view lists them)."""
    days: dict[date, tuple[Decimal, Decimal]] = {}

    def add(p: Plan, incoming: bool) -> None:
        day = p.discount_deadline if p.discount and p.discount_deadline else p.due_date
        if day is None:
            return
        amount = p.net_if_discounted if p.discount and p.discount_deadline else p.gross
        rin, rout = days.get(day, (ZERO, ZERO))
        days[day] = (rin + amount, rout) if incoming else (rin, rout + amount)

    for p in receivables:
        add(p, True)
    for p in payables:
        add(p, False)
    return [CashDay(d, i, o) for d, (i, o) in sorted(days.items())]
