"""Grants: the role × scope × action × resource matrix against an independent oracle, policy
validation, and compile/check edge cases (engine/domain/grants.py)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from engine.domain.grants import (
    ACTION_NAMES,
    Action,
    PolicyError,
    compile_permissions,
    covers,
    narrow,
    parse_policy,
)

ROLES: dict[str, list[str]] = {
    "admin": list(ACTION_NAMES),
    "reader": ["read"],
    "clerk": ["read", "move", "count"],
    "site_manager": ["read", "read_cost", "reserve", "receive", "move", "adjust", "count"],
    "regional_manager": ["read", "read_cost"],
}

# (name, grant scope keys)
SCOPES: list[tuple[str, dict[str, str]]] = [
    ("everything", {"org": ""}),
    ("org acme", {"org": "acme"}),
    ("org acme/east", {"org": "acme/east"}),
    ("org acme/ea (not a node)", {"org": "acme/ea"}),
    ("site BOS", {"site": "BOS"}),
    ("BOS bin A", {"site": "BOS", "bin": "A"}),
    ("BOS bin A/1", {"site": "BOS", "bin": "A/1"}),
    ("BOS bin A/1/x", {"site": "BOS", "bin": "A/1/x"}),
    ("NYC bin A", {"site": "NYC", "bin": "A"}),
]

# (site, org path, bin; None = the whole site)
RESOURCES: list[tuple[str, str, str | None]] = [
    *(("BOS", "acme/east/boston", b) for b in (None, "", "A", "A/1", "A/1/x", "A/10", "AA", "A/1x", "B")),
    ("BOS", "acme/west/boston", "A/1"),  # the same site after a move to another org node
    ("BOS", "acme/west/boston", None),
    ("NYC", "acme/east/nyc", "A"),
    ("NYC", "acme/east/nyc", "AA"),
    ("NYC", "acme/east/nyc", None),
    ("LA", "acme/west/la", "A/1"),
    ("EST", "acme/eastern", "A"),  # `acme/east` must not cover `acme/eastern`
    ("EST", "acme/ea", "A"),  # but `acme/ea` covers itself
    ("ROOT", "", "A"),  # a site without an org
    ("ZZ", "other/east", "A/1"),
]


def segments_cover(path: str, prefix: str) -> bool:
    """The oracle: segment lists, not strings (independent of grants.covers)."""
    want = [s for s in prefix.split("/") if s]
    have = [s for s in path.split("/") if s]
    return have[: len(want)] == want


def oracle(scope: dict[str, str], actions: list[str], action: str, site: str, org: str, bin_: str | None) -> bool:
    if action not in actions:
        return False
    if "org" in scope:
        return segments_cover(org, scope["org"])
    if scope["site"] != site:
        return False
    if "bin" not in scope:
        return True
    return bin_ is not None and segments_cover(bin_, scope["bin"])


def policy_with(role: str, scope: dict[str, str]) -> Any:
    return parse_policy({"roles": ROLES, "grants": [{"subject": "u", "role": role, **scope}]}, "v1")


MATRIX = list(itertools.product(SCOPES, ROLES, RESOURCES))


def test_the_matrix_has_at_least_500_cases() -> None:
    assert len(MATRIX) * len(Action) >= 500


@pytest.mark.parametrize(("scope", "role", "resource"), MATRIX, ids=str)
def test_matrix(scope: tuple[str, dict[str, str]], role: str, resource: tuple[str, str, str | None]) -> None:
    perms = compile_permissions(policy_with(role, scope[1]), "u", ())
    site, org, bin_ = resource
    for action in ACTION_NAMES:
        expected = oracle(scope[1], ROLES[role], action, site, org, bin_)
        assert perms.allows(ACTION_NAMES[action], site, org, bin_) is expected, (scope[0], role, action, resource)
    # Reads: the scope the scan applies must show exactly the bins a check allows (zero leaks).
    if bin_:
        read_scope = perms.read_scope(Action.READ)
        shown = any(covers(bin_, p) for p in read_scope.bins_for(site, org))
        assert shown is oracle(scope[1], ROLES[role], "read", site, org, bin_), (scope[0], role, resource)


def test_groups_and_subjects_add_up() -> None:
    policy = parse_policy(
        {
            "roles": ROLES,
            "grants": [
                {"group": "clerks", "role": "clerk", "site": "BOS", "bin": "A/1"},
                {"subject": "ann", "role": "reader", "site": "NYC"},
            ],
        },
        "v",
    )
    ann = compile_permissions(policy, "ann", ["clerks"])
    assert ann.allows(Action.MOVE, "BOS", "x", "A/1/2")
    assert ann.allows(Action.READ, "NYC", "x", "Z")
    assert not ann.allows(Action.MOVE, "NYC", "x", "Z")
    bob = compile_permissions(policy, "bob", [])
    assert not bob.allows(Action.READ, "BOS", "x", "A/1")


def test_read_scope_prefixes_are_disjoint() -> None:
    policy = parse_policy(
        {
            "roles": ROLES,
            "grants": [
                {"subject": "u", "role": "reader", "site": "BOS", "bin": b} for b in ("A", "A/1", "A/1/x", "AA", "B/2")
            ]
            + [{"subject": "u", "role": "reader", "org": o} for o in ("acme", "acme/east")],
        },
        "v",
    )
    scope = compile_permissions(policy, "u", ()).read_scope()
    assert scope.bins_for("BOS", "zzz") == ("A", "AA", "B/2")  # A/1 and A/1/x are inside A
    assert scope.orgs == frozenset({"acme"})
    assert scope.bins_for("ANY", "acme/east/x") == ("",)
    assert scope.bins_for("ANY", "acmeX") == ()


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [("", "A", "A"), ("A", "A/1", "A/1"), ("A/1", "A", "A/1"), ("A/1", "A/10", None), ("A", "AA", None), ("", "", "")],
)
def test_narrow(a: str, b: str, expected: str | None) -> None:
    assert narrow(a, b) == expected


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"roles": {"r": ["read", "fly"]}}, "roles.r"),
        ({"roles": {"r": []}}, "roles.r"),
        ({"roles": {"r": ["read"]}, "grants": [{"subject": "u", "role": "x", "org": ""}]}, "grants[0].role"),
        ({"roles": {"r": ["read"]}, "grants": [{"role": "r", "org": ""}]}, "grants[0]"),
        ({"roles": {"r": ["read"]}, "grants": [{"subject": "u", "group": "g", "role": "r", "org": ""}]}, "grants[0]"),
        ({"roles": {"r": ["read"]}, "grants": [{"subject": "u", "role": "r"}]}, "grants[0]"),
        ({"roles": {"r": ["read"]}, "grants": [{"subject": "u", "role": "r", "org": "a", "site": "S"}]}, "grants[0]"),
        ({"roles": {"r": ["read"]}, "grants": [{"subject": "u", "role": "r", "org": "", "bin": "A"}]}, "grants[0].bin"),
        (
            {"roles": {"r": ["read"]}, "grants": [{"subject": "u", "role": "r", "site": "S", "bin": "A/"}]},
            "grants[0].bin",
        ),
        ({"roles": {"r": ["read"]}, "grants": [{"subject": "u", "role": "r", "org": "/a"}]}, "grants[0].org"),
        ({"roles": {"r": ["read"]}, "grants": [{"subject": "u", "role": "r", "site": 7}]}, "grants[0].site"),
        (
            {"roles": {"r": ["read"]}, "grants": [{"subject": "u", "role": "r", "site": "S", "colour": "red"}]},
            "grants[0].colour",
        ),
        ({"roles": {"r": ["read"]}, "grants": {"subject": "u"}}, "grants"),
        ({"roles": {"r": ["read"]}, "extra": 1}, "extra"),
    ],
)
def test_a_bad_policy_names_the_key(doc: dict[str, Any], key: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(doc, "v")
    assert err.value.key == key


def test_a_large_policy_loads_and_compiles() -> None:
    """Correctness at size (the 2-second target is measured in bench/auth.py)."""
    grants = [
        {"subject": f"u{i % 5000}", "role": "reader", "site": f"S{i % 10_000}", "bin": f"A/{i}"} for i in range(50_000)
    ]
    policy = parse_policy({"roles": ROLES, "grants": grants}, "v")
    assert policy.grant_count == 50_000
    perms = compile_permissions(policy, "u7", ())
    assert perms.allows(Action.READ, "S7", "", "A/7/x")
    assert not perms.allows(Action.READ, "S7", "", "A/70")
