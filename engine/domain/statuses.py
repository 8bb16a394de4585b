"""The status dictionary (DESIGN.md §3): statuses are data, not code branches.

Code never names a status. Where it must pick one (what a receipt lands in, what a
temperature excursion freezes into), it asks the dictionary for the status that plays a
*role*: the file's `roles` map says which status that is. This module and the JSON file
are the only places that spell status names; tests/unit/test_status_literals.py keeps it so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from importlib import resources
from pathlib import Path
from types import MappingProxyType

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


class Role(StrEnum):
    """What a status is used for where code must choose one. Role names are not status
    names, so a role in code can never be mistaken for a hard-coded status."""

    RECEIPT = "receipt"  # where received stock lands before it is checked
    INSPECTION = "inspection"  # held for a quality check
    READY = "ready"  # checked and usable: counted, returned unopened, put away
    REJECTED = "rejected"  # failed a check or came back damaged: to scrap
    FROZEN = "frozen"  # blocked for a quality dispute (a temperature excursion)
    PICK = "pick"  # taken off the shelf for an order
    PACK = "pack"  # packed for shipping; a ship without a hold issues from here
    ARRIVING = "arriving"  # on its way here from another site (a transfer's receiving leg)
    EXPIRED = "out_of_date"  # past its expiry date: kept on hand, out of available-to-promise


# Version-1 files have no `roles` map: their roles are these (the statuses the code used
# to name), and a later file that leaves a role out keeps this one too.
DEFAULT_ROLES: Mapping[Role, str] = MappingProxyType(
    {
        Role.RECEIPT: "receiving",
        Role.INSPECTION: "qc_hold",
        Role.READY: "available",
        Role.REJECTED: "damaged",
        Role.FROZEN: "quality_frozen",
        Role.PICK: "picking",
        Role.PACK: "packed",
        Role.ARRIVING: "in_transit_in",
        Role.EXPIRED: "expired",
    }
)


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
    roles: Mapping[Role, str] = field(default_factory=lambda: dict(DEFAULT_ROLES))  # a dict: shards ship it

    def __contains__(self, name: object) -> bool:
        return name in self.statuses

    def get(self, name: str) -> Status | None:
        return self.statuses.get(name)

    def can_transition(self, from_status: str, to_status: str) -> bool:
        status = self.statuses.get(from_status)
        return status is not None and to_status in status.to

    def sellable_names(self) -> frozenset[str]:
        return frozenset(s.name for s in self.statuses.values() if s.sellable)

    def __setstate__(self, state: list[object]) -> None:
        """Restore from a shard snapshot; one written before `roles` existed (version-1
        dictionaries, positional state without it) gets the default roles."""
        values: dict[str, object] = {"roles": dict(DEFAULT_ROLES)}
        values.update(zip((f.name for f in fields(self)), state, strict=False))
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def role(self, role: Role) -> str:
        """The name of the status that plays `role` (every role has one: parse checks it)."""
        # A dictionary built before a role existed (shipped to a shard by an older release)
        # lacks it: the default names a required status, so it always exists.
        return self.roles.get(role) or DEFAULT_ROLES[role]


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
        except KeyError as absent:
            raise DictionaryError(f"status {name!r}: missing flag {absent}") from None
    for status in statuses.values():
        unknown = status.to - statuses.keys()
        if unknown:
            raise DictionaryError(f"status {status.name!r}: unknown targets {sorted(unknown)}")
    missing = [name for name in REQUIRED_STATUSES if name not in statuses]
    if missing:
        raise DictionaryError(f"status dictionary lacks required statuses {missing}")
    return StatusDictionary(version=version, statuses=statuses, roles=parse_roles(raw.get("roles"), statuses))


def parse_roles(raw: object, statuses: Mapping[str, Status]) -> Mapping[Role, str]:
    """The `roles` map (absent in version-1 files): role → status name. A role left out
    keeps its default; an unknown role or a role naming an unknown status is refused."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise DictionaryError("status dictionary: 'roles' must be an object of role → status name")
    known = {r.value for r in Role}
    roles = dict(DEFAULT_ROLES)
    for name, target in raw.items():
        if name not in known:
            raise DictionaryError(f"role {name!r}: unknown role (one of {', '.join(sorted(known))})")
        if not isinstance(target, str) or target not in statuses:
            raise DictionaryError(f"role {name!r}: {target!r} is not a status of the dictionary")
        roles[Role(name)] = target
    return roles


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
