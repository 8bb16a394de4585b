"""The status dictionary (DESIGN.md §3): statuses are data, not code branches."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

REQUIRED_STATUSES = (
    "receiving",
    "qc_hold",
    "available",
    "promo_locked",
    "picking",
    "packed",
    "in_transit_in",
    "in_transit_out",
    "returned_pending",
    "quality_frozen",
    "damaged",
    "expired",
)


_FLAGS = ("on_hand", "sellable", "terminal_out", "receivable", "allow_negative")


class DictionaryError(ValueError):
    """The status dictionary file is malformed; raised at start-up, never mid-flight."""


@dataclass(frozen=True, slots=True)
class Status:
    name: str
    on_hand: bool
    sellable: bool
    terminal_out: bool
    receivable: bool
    allow_negative: bool
    to: frozenset[str]


@dataclass(frozen=True, slots=True)
class StatusDictionary:
    version: int
    statuses: Mapping[str, Status]

    def __contains__(self, name: object) -> bool:
        return name in self.statuses

    def get(self, name: str) -> Status | None:
        return self.statuses.get(name)

    def can_transition(self, from_status: str, to_status: str) -> bool:
        status = self.statuses.get(from_status)
        return status is not None and to_status in status.to

    def sellable_names(self) -> frozenset[str]:
        return frozenset(s.name for s in self.statuses.values() if s.sellable)


def parse_dictionary(raw: Mapping[str, object]) -> StatusDictionary:
    """Build and check a dictionary; every transition must name a known status."""
    version = raw.get("version")
    entries = raw.get("statuses")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:  # JSON true is no version
        raise DictionaryError("status dictionary: 'version' must be a positive integer")
    if not isinstance(entries, Mapping) or not entries:
        raise DictionaryError("status dictionary: 'statuses' must be a non-empty object")
    statuses: dict[str, Status] = {}
    for name, spec in entries.items():
        if not isinstance(spec, Mapping):
            raise DictionaryError(f"status {name!r}: spec must be an object")
        # bool("false") is True: a quoted flag would silently make a status sellable.
        for flag in _FLAGS:
            if flag in spec and not isinstance(spec[flag], bool):
                raise DictionaryError(f"status {name!r}: flag {flag!r} must be true or false")
        targets = spec.get("to", ())
        if not isinstance(targets, list | tuple) or not all(isinstance(t, str) for t in targets):
            raise DictionaryError(f"status {name!r}: 'to' must be a list of status names")
        try:
            statuses[name] = Status(
                name=name,
                on_hand=bool(spec["on_hand"]),
                sellable=bool(spec["sellable"]),
                terminal_out=bool(spec["terminal_out"]),
                receivable=bool(spec.get("receivable", True)),
                allow_negative=bool(spec.get("allow_negative", False)),
                to=frozenset(spec.get("to", ())),
            )
        except KeyError as missing:
            raise DictionaryError(f"status {name!r}: missing flag {missing}") from None
    for status in statuses.values():
        unknown = status.to - statuses.keys()
        if unknown:
            raise DictionaryError(f"status {status.name!r}: unknown targets {sorted(unknown)}")
    missing = [name for name in REQUIRED_STATUSES if name not in statuses]
    if missing:
        raise DictionaryError(f"status dictionary lacks required statuses {missing}")
    return StatusDictionary(version=version, statuses=statuses)


def load_dictionary(path: str | Path | None = None) -> StatusDictionary:
    """Load the dictionary from `path`, or the packaged default."""
    if path is None:
        text = resources.files("engine.domain").joinpath("statuses.json").read_text()
    else:
        text = Path(path).read_text()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DictionaryError(f"status dictionary is not valid JSON: {exc}") from None
    return parse_dictionary(raw)


DEFAULT_DICTIONARY = load_dictionary()
