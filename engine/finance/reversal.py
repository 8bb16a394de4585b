"""Red-letter (红字) reversals: a correction is a new voucher with the same accounts and
sides and negative amounts, linked to its original, never an edit of it. Returns and
cancelled transfers get theirs automatically from the journal follower (engine.finance.
ledger); this is the whole-voucher form and the check that originals and reversals net out."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from engine.finance.money import ZERO
from engine.finance.vouchers import Source, Voucher, check_balanced


def red_letter(original: Voucher, voucher_id: str, at_ms: int, sources: tuple[Source, ...], summary: str) -> Voucher:
    """The whole original, reversed: same accounts and sides, negative amounts. A new
    voucher (pending review like any other); the original is never touched."""
    lines = tuple(line._replace(debit=-line.debit, credit=-line.credit) for line in original.lines)
    voucher = Voucher(
        voucher_id,
        original.company,
        original.kind,
        at_ms,
        original.currency,
        lines,
        sources,
        summary,
        reversal_of=original.voucher_id,
        terms=original.terms,
    )
    check_balanced(voucher)
    return voucher


def net_by_account(vouchers: Iterable[Voucher]) -> dict[str, Decimal]:
    """Debit − credit per account over `vouchers` (an original and its full reversal: all zero)."""
    out: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for voucher in vouchers:
        for line in voucher.lines:
            out[line.account] += line.debit - line.credit
    return dict(out)
