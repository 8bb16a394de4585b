"""Vague words in date fields are refused (issue 14 item 6): "room temperature",
"long-term", "常温", "长期" in an expiry say how to store the goods or that nobody knows,
not when they expire, and a lot booked with one is a lot whose shelf life no rule can
check. Receipts (the gRPC import's rows) and ingestion (cabinet and WMS events) refuse
them with a clear reason instead of reading them as "never expires". Pure.
"""

from __future__ import annotations

import unicodedata

# Lower-case, spaces and punctuation folded (see _fold); English, Chinese, a few others seen in the field.
VAGUE_WORDS: frozenset[str] = frozenset(
    {
        "roomtemperature",
        "roomtemp",
        "ambient",
        "longterm",
        "long",
        "permanent",
        "indefinite",
        "never",
        "none",
        "na",
        "n/a",
        "unknown",
        "tbd",
        "常温",
        "长期",
        "長期",
        "永久",
        "长期有效",
        "長期有效",
        "无",
        "無",
        "不详",
        "见包装",
        "見包裝",
        "seepackage",
        "seepack",
    }
)


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if ch.isalnum() or ch == "/" or ord(ch) > 0x2E7F)


def vague_word(text: str) -> str | None:
    """The vague word `text` is (as given), or None when it is not one."""
    folded = _fold(text)
    if folded in VAGUE_WORDS or folded.replace("/", "") in VAGUE_WORDS:
        return text.strip()
    return None


def vague_reason(text: str) -> str:
    return f"vague expiry {text.strip()!r} is refused: give the lot's expiry as a date (2027-03-31)"
