"""The header a caller sends with the timeout it set (`lotwise-timeout-ms`), so that the
server's door (engine.api.admission) can tell how long the call waited before it reached
Python: clients and the door share this module, and clients import nothing of the door."""

from __future__ import annotations

TIMEOUT_HEADER = "lotwise-timeout-ms"
_MAX_SENT_TIMEOUT_MS = 86_400_000.0  # a day: anything longer is not a timeout a caller means
_MAX_HEADER_LEN = 32  # longer values are not parsed at all: the check must stay cheap


def timeout_metadata(timeout_s: float) -> tuple[str, str]:
    """The TIMEOUT_HEADER entry for a call sent with `timeout=timeout_s` (the same value)."""
    return (TIMEOUT_HEADER, f"{timeout_s * 1000:.3f}")


def parse_sent_timeout_s(value: str | bytes) -> float | None:
    """The timeout a caller says it set (TIMEOUT_HEADER, ms), or None if it is not a sane one.

    A bad value is ignored rather than refused: the header is advice for shedding, and a
    caller must never fail for sending it wrongly."""
    if not isinstance(value, str) or len(value) > _MAX_HEADER_LEN:
        return None
    try:
        ms = float(value)
    except ValueError:
        return None
    # NaN fails both comparisons; inf, zero and negatives fail one.
    return ms / 1000 if 0 < ms <= _MAX_SENT_TIMEOUT_MS else None
