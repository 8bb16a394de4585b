"""Money: `Decimal` amounts rounded to the currency's minor unit (babel's precision:
CNY 2, JPY 0, KWD 3), half up, as ledgers book them. Never a float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

from babel.numbers import get_currency_precision

ZERO = Decimal(0)
MAX_AMOUNT_CHARS = 40


@lru_cache(maxsize=256)
def minor_units(currency: str) -> int:
    """Decimal places of `currency` (babel knows ISO 4217; an unknown code books 2)."""
    return int(get_currency_precision(currency)) if currency else 2


@lru_cache(maxsize=256)
def _quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def money(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded half up to the currency's minor unit."""
    return amount.quantize(_quantum(currency), rounding=ROUND_HALF_UP)


def parse_amount(text: str) -> Decimal | None:
    """A decimal string as the journal carries it ("12.50"); None when absent or not a
    finite decimal (an accepted journal entry is never refused for it: callers fall back)."""
    if not text or len(text) > MAX_AMOUNT_CHARS:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def unit_cost_of(value: Decimal, qty: int) -> Decimal:
    """Average cost per unit, kept to 6 places (a price, not an amount)."""
    if qty == 0:
        return ZERO
    return (value / qty).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def text(amount: Decimal) -> str:
    """A decimal as the API and the stores carry it: plain notation, no exponent. str() is
    that already for every amount rounded to a currency (exponent ≤ 0, ≥ -6) and ~3× cheaper
    than format(); only a value it would write with an exponent goes through format()."""
    plain = str(amount)
    return plain if "E" not in plain else format(amount, "f")
