"""The status dictionary (DESIGN.md §3): the packaged file, and refusals of malformed ones."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from engine.domain.statuses import (
    DEFAULT_DICTIONARY,
    DEFAULT_ROLES,
    REQUIRED_STATUSES,
    DictionaryError,
    Role,
    StatusDictionary,
    load_dictionary,
    parse_dictionary,
)

TWELVE = {
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
}


def packaged_raw() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(resources.files("engine.domain").joinpath("statuses.json").read_text())
    return raw


def edited(edit: Any) -> dict[str, Any]:
    """A deep copy of the packaged file with `edit(raw)` applied."""
    raw = copy.deepcopy(packaged_raw())
    edit(raw)
    return raw


# ---------------------------------------------------------------- the packaged dictionary


def test_required_statuses_are_the_twelve_of_the_design() -> None:
    assert set(REQUIRED_STATUSES) == TWELVE
    assert len(REQUIRED_STATUSES) == 12


def test_packaged_dictionary_has_the_twelve_required_statuses() -> None:
    d = load_dictionary()
    assert set(d.statuses) >= TWELVE
    assert all(name in d for name in TWELVE)
    assert "sold" not in d
    assert d.version >= 1


def test_default_dictionary_is_the_packaged_file() -> None:
    assert load_dictionary() == DEFAULT_DICTIONARY


def test_packaged_flags_say_how_each_status_counts() -> None:
    d = DEFAULT_DICTIONARY
    assert "available" in d.sellable_names()
    assert {"receiving", "qc_hold", "promo_locked", "quality_frozen", "damaged", "expired"}.isdisjoint(
        d.sellable_names()
    )
    for name in ("in_transit_in", "in_transit_out"):
        status = d.get(name)
        assert status is not None
        assert not status.on_hand
    out = d.get("in_transit_out")
    assert out is not None
    assert out.terminal_out
    assert [s.name for s in d.statuses.values() if s.terminal_out] == ["in_transit_out"]
    assert all(s.on_hand for s in d.statuses.values() if s.name not in {"in_transit_in", "in_transit_out"})


def test_packaged_transitions_name_known_statuses() -> None:
    d = DEFAULT_DICTIONARY
    for status in d.statuses.values():
        assert status.to <= set(d.statuses), status.name
        assert status.name not in status.to
    assert d.can_transition("receiving", "qc_hold")
    assert d.can_transition("qc_hold", "available")
    assert d.can_transition("available", "expired")
    assert not d.can_transition("damaged", "available")
    assert not d.can_transition("expired", "available")
    assert not d.can_transition("nope", "available")
    assert d.get("nope") is None


def test_load_dictionary_reads_a_file(tmp_path: Path) -> None:
    raw = edited(lambda r: r.update(version=7))
    path = tmp_path / "statuses.json"
    path.write_text(json.dumps(raw))
    d = load_dictionary(path)
    assert isinstance(d, StatusDictionary)
    assert d.version == 7
    assert d.statuses == DEFAULT_DICTIONARY.statuses
    assert load_dictionary(str(path)).version == 7


def test_optional_flags_have_safe_defaults() -> None:
    def drop_optional(raw: dict[str, Any]) -> None:
        for spec in raw["statuses"].values():
            del spec["receivable"], spec["allow_negative"]
        del raw["statuses"]["expired"]["to"]

    d = parse_dictionary(edited(drop_optional))
    expired = d.get("expired")
    assert expired is not None
    assert (expired.receivable, expired.allow_negative, expired.to) == (True, False, frozenset())


# ---------------------------------------------------------------- malformed dictionaries


def _set(path: tuple[str, ...], value: Any) -> Any:
    def edit(raw: dict[str, Any]) -> None:
        node = raw
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value

    return edit


def _delete(*path: str) -> Any:
    def edit(raw: dict[str, Any]) -> None:
        node = raw
        for step in path[:-1]:
            node = node[step]
        del node[path[-1]]

    return edit


MALFORMED: list[tuple[str, Any, str]] = [
    (
        "unknown-transition-target",
        _set(("statuses", "available", "to"), ["picking", "sold"]),
        r"status 'available': unknown targets \['sold'\]",
    ),
    ("missing-flag-sellable", _delete("statuses", "qc_hold", "sellable"), r"status 'qc_hold': missing flag 'sellable'"),
    ("missing-flag-on-hand", _delete("statuses", "packed", "on_hand"), r"status 'packed': missing flag 'on_hand'"),
    (
        "missing-flag-terminal-out",
        _delete("statuses", "damaged", "terminal_out"),
        r"status 'damaged': missing flag 'terminal_out'",
    ),
    # nothing moves into in_transit_in, so dropping it leaves every transition target known
    ("missing-required-status", _delete("statuses", "in_transit_in"), r"lacks required statuses \['in_transit_in'\]"),
    ("version-missing", _delete("version"), r"'version' must be a positive integer"),
    ("version-zero", _set(("version",), 0), r"'version' must be a positive integer"),
    ("version-negative", _set(("version",), -3), r"'version' must be a positive integer"),
    ("version-string", _set(("version",), "1"), r"'version' must be a positive integer"),
    ("version-float", _set(("version",), 1.5), r"'version' must be a positive integer"),
    ("version-boolean", _set(("version",), True), r"'version' must be a positive integer"),
    ("statuses-missing", _delete("statuses"), r"'statuses' must be a non-empty object"),
    ("statuses-empty", _set(("statuses",), {}), r"'statuses' must be a non-empty object"),
    ("statuses-a-list", _set(("statuses",), ["available"]), r"'statuses' must be a non-empty object"),
    ("spec-not-an-object", _set(("statuses", "picking"), True), r"status 'picking': spec must be an object"),
    (
        "flag-not-a-boolean",
        _set(("statuses", "damaged", "sellable"), "false"),
        r"status 'damaged': flag 'sellable' must be true or false",
    ),
    (
        "transitions-a-string",
        _set(("statuses", "qc_hold", "to"), "available"),
        r"status 'qc_hold': 'to' must be a list of status names",
    ),
    (
        "transitions-not-a-list",
        _set(("statuses", "qc_hold", "to"), 3),
        r"status 'qc_hold': 'to' must be a list of status names",
    ),
    (
        "transition-not-a-name",
        _set(("statuses", "qc_hold", "to"), ["available", 7]),
        r"status 'qc_hold': 'to' must be a list of status names",
    ),
    ("roles-a-list", _set(("roles",), ["frozen"]), r"'roles' must be an object of role → status name"),
    ("role-unknown", _set(("roles", "teleport"), "available"), r"role 'teleport': unknown role"),
    ("role-unknown-status", _set(("roles", "frozen"), "sold"), r"role 'frozen': 'sold' is not a status"),
    ("role-not-a-name", _set(("roles", "ready"), 3), r"role 'ready': 3 is not a status"),
]


@pytest.mark.parametrize(("edit", "message"), [(e, m) for _, e, m in MALFORMED], ids=[n for n, _, _ in MALFORMED])
def test_malformed_dictionary_is_refused_with_a_clear_message(edit: Any, message: str) -> None:
    with pytest.raises(DictionaryError, match=message):
        parse_dictionary(edited(edit))


@pytest.mark.parametrize(("edit", "message"), [(e, m) for _, e, m in MALFORMED], ids=[n for n, _, _ in MALFORMED])
def test_malformed_dictionary_file_is_refused_by_load(tmp_path: Path, edit: Any, message: str) -> None:
    path = tmp_path / "statuses.json"
    path.write_text(json.dumps(edited(edit)))
    with pytest.raises(DictionaryError, match=message):
        load_dictionary(path)


@pytest.mark.parametrize("text", ["{", "", "not json", '{"version": 1, "statuses": {'])
def test_invalid_json_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "statuses.json"
    path.write_text(text)
    with pytest.raises(DictionaryError, match="status dictionary is not valid JSON"):
        load_dictionary(path)


def test_dictionary_error_is_a_value_error() -> None:
    assert issubclass(DictionaryError, ValueError)


# ---------------------------------------------------------------- roles


def test_every_role_has_a_status_in_the_packaged_dictionary() -> None:
    raw = packaged_raw()
    assert raw["version"] >= 2
    assert set(raw["roles"]) == {r.value for r in Role}
    for role in Role:
        assert DEFAULT_DICTIONARY.role(role) in DEFAULT_DICTIONARY
        assert DEFAULT_DICTIONARY.role(role) == DEFAULT_ROLES[role]


def test_role_names_are_not_status_names() -> None:
    # A role spelled in code must never be mistaken for a hard-coded status.
    assert {r.value for r in Role}.isdisjoint(DEFAULT_DICTIONARY.statuses)


def test_a_version_1_file_without_roles_still_loads_with_the_default_roles(tmp_path: Path) -> None:
    def as_version_1(raw: dict[str, Any]) -> None:
        raw["version"] = 1
        del raw["roles"]

    path = tmp_path / "statuses.json"
    path.write_text(json.dumps(edited(as_version_1)))
    d = load_dictionary(path)
    assert d.version == 1
    assert dict(d.roles) == dict(DEFAULT_ROLES)
    assert d.role(Role.FROZEN) == "quality_frozen"
    assert d.statuses == DEFAULT_DICTIONARY.statuses


def test_a_role_can_name_another_status_and_the_others_keep_their_default() -> None:
    d = parse_dictionary(edited(lambda r: r.update(roles={"receipt": "qc_hold"})))
    assert d.role(Role.RECEIPT) == "qc_hold"
    assert d.role(Role.READY) == DEFAULT_ROLES[Role.READY]


def test_a_dictionary_restored_from_a_snapshot_without_roles_gets_the_default_roles() -> None:
    # A shard snapshot written before roles existed holds the state [version, statuses].
    restored = StatusDictionary.__new__(StatusDictionary)
    restored.__setstate__([1, dict(DEFAULT_DICTIONARY.statuses)])
    assert restored.role(Role.PACK) == DEFAULT_ROLES[Role.PACK]
    assert restored.statuses == DEFAULT_DICTIONARY.statuses
    current = StatusDictionary.__new__(StatusDictionary)
    current.__setstate__([2, dict(DEFAULT_DICTIONARY.statuses), {Role.PACK: "picking"}])
    assert current.role(Role.PACK) == "picking"
