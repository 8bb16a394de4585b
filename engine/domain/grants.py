"""Grants: who may do what, where (DESIGN.md §1 "grant", §13). Pure: no infrastructure.

A policy is data: roles (named sets of actions) and grants, each giving one role to a
subject (a token's `sub`) or a group (a token's `groups`) within one scope:

- an org subtree (`org = "medline/east"`; `org = ""` is the whole engine),
- a site (`site = "FW-BOS"`),
- a bin-path prefix inside a site (`site = "FW-BOS"`, `bin = "A/1"`).

Prefixes are path-segment prefixes, as everywhere in Lotwise: `A/1` covers `A/1` and
`A/1/x`, never `A/10`; org `east` covers `east/boston`, never `eastern`.

A principal's grants are compiled once per (subject, groups, policy version) into
dictionaries keyed by org prefix, site and (site → sorted bin prefixes), each with an
action bitset, so a check is a handful of dict lookups (µs). Reads do not check row by
row afterwards: `Permissions.read_scope` gives the filter that the scan applies before
anything is summed, so a total never includes what the caller may not see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntFlag
from typing import Any

from engine.domain.catalog import org_covers
from engine.domain.errors import PermissionDenied

MAX_ROLES = 1_000
MAX_GRANTS = 1_000_000  # a policy larger than this is refused at load, not half-loaded
MAX_PATH_CHARS = 512
MAX_CACHED_ORG_PATHS = 100_000  # per compiled principal


class Action(IntFlag):
    """What a grant allows. `reserve` covers commit, release and sell of a hold too."""

    READ = 1
    READ_COST = 2
    RESERVE = 4
    RECEIVE = 8
    MOVE = 16
    ADJUST = 32
    COUNT = 64
    ADMIN = 128
    APPROVE_TRANSFER = 256  # reserved for transfers (issue 13 item 2)
    PLAN = 512  # decide replenishment suggestions: accept, reject, override (issue 14)
    APPROVE_VOUCHER = 1024  # finance: approve or reject a voucher (never one's own)
    POST_VOUCHER = 2048  # finance: post; record supplier invoices, landed costs, baselines
    EXPORT_VOUCHER = 4096  # finance: export posted vouchers to a ledger file


NO_ACTIONS = Action(0)
ALL_ACTIONS = Action(sum(a.value for a in Action))
ACTION_NAMES: dict[str, Action] = {a.name.lower(): a for a in Action if a.name}


class PolicyError(ValueError):
    """A policy file that cannot be used; `key` names where (e.g. `grants[3].role`)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class AccessDenied(PermissionDenied):
    """The caller has no grant for `action` on `resource` (e.g. `site:FW-BOS/bin:A/1`)."""

    FIELDS = ("action", "resource")
    action: str
    resource: str

    def __init__(self, action: str, resource: str) -> None:
        PermissionDenied.__init__(self, f"no grant for {action} on {resource}")
        self.action, self.resource = action, resource

    def __reduce__(self) -> tuple[Any, ...]:
        return (AccessDenied, (self.action, self.resource))


def covers(path: str, prefix: str) -> bool:
    """Path-segment prefix: "" covers everything; `A/1` covers `A/1/x`, not `A/10`."""
    return not prefix or path == prefix or path.startswith(prefix + "/")


def narrow(a: str, b: str) -> str | None:
    """The intersection of two path prefixes: the longer when one covers the other, else None."""
    if covers(b, a):
        return b
    if covers(a, b):
        return a
    return None


def resource_name(site: str, bin_: str | None = None) -> str:
    return f"site:{site}" if not bin_ else f"site:{site}/bin:{bin_}"


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a grant applies: `org` (a subtree) or `site` [+ `bin` prefix]."""

    org: str | None = None
    site: str = ""
    bin: str = ""


@dataclass(frozen=True, slots=True)
class Grant:
    role: str
    scope: Scope
    subject: str = ""
    group: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy. `version` changes on every reload (compiled caches key on it)."""

    version: str
    roles: Mapping[str, Action]
    by_subject: Mapping[str, tuple[Grant, ...]]
    by_group: Mapping[str, tuple[Grant, ...]]

    @property
    def grant_count(self) -> int:
        return sum(len(g) for g in self.by_subject.values()) + sum(len(g) for g in self.by_group.values())

    def grants_of(self, subject: str, groups: Iterable[str]) -> list[Grant]:
        out = list(self.by_subject.get(subject, ()))
        for group in groups:
            out.extend(self.by_group.get(group, ()))
        return out


# ---- parsing and validation -----------------------------------------------------------


def parse_policy(data: Mapping[str, Any], version: str) -> Policy:
    """Validate a policy document (already decoded from TOML or JSON). Every problem is a
    PolicyError naming its key; nothing half-valid is returned."""
    if not isinstance(data, Mapping):
        raise PolicyError("<root>", "must be a table")
    unknown = set(data) - {"roles", "grants"}
    if unknown:
        raise PolicyError(sorted(unknown)[0], "unknown key (expected roles, grants)")
    roles = _parse_roles(data.get("roles", {}))
    raw_grants = data.get("grants", [])
    if not isinstance(raw_grants, list):
        raise PolicyError("grants", "must be an array of tables")
    if len(raw_grants) > MAX_GRANTS:
        raise PolicyError("grants", f"at most {MAX_GRANTS} grants")
    by_subject: dict[str, list[Grant]] = {}
    by_group: dict[str, list[Grant]] = {}
    for i, raw in enumerate(raw_grants):
        grant = _parse_grant(raw, f"grants[{i}]", roles)
        if grant.subject:
            by_subject.setdefault(grant.subject, []).append(grant)
        else:
            by_group.setdefault(grant.group, []).append(grant)
    return Policy(
        version,
        roles,
        {k: tuple(v) for k, v in by_subject.items()},
        {k: tuple(v) for k, v in by_group.items()},
    )


def _parse_roles(raw: Any) -> dict[str, Action]:
    if not isinstance(raw, Mapping):
        raise PolicyError("roles", "must be a table of role = [actions]")
    if len(raw) > MAX_ROLES:
        raise PolicyError("roles", f"at most {MAX_ROLES} roles")
    roles: dict[str, Action] = {}
    for name, actions in raw.items():
        key = f"roles.{name}"
        if not isinstance(actions, list) or not actions:
            raise PolicyError(key, "must be a non-empty array of action names")
        bits = NO_ACTIONS
        for action in actions:
            if not isinstance(action, str) or action not in ACTION_NAMES:
                raise PolicyError(key, f"unknown action {action!r} (known: {', '.join(ACTION_NAMES)})")
            bits |= ACTION_NAMES[action]
        roles[str(name)] = bits
    return roles


_GRANT_KEYS = frozenset({"subject", "group", "role", "org", "site", "bin"})


def _parse_grant(raw: Any, key: str, roles: Mapping[str, Action]) -> Grant:
    """One grant. The common case (well-formed strings) takes one pass over the values, so
    100,000 grants load in a fraction of a second; any problem takes the slow path that
    names the key."""
    if not isinstance(raw, Mapping):
        raise PolicyError(key, "must be a table")
    if not raw.keys() <= _GRANT_KEYS:
        raise PolicyError(f"{key}.{sorted(set(raw) - _GRANT_KEYS)[0]}", "unknown key")
    get = raw.get
    subject, group, role, site, bin_, org = (
        get("subject", ""),
        get("group", ""),
        get("role", ""),
        get("site", ""),
        get("bin", ""),
        get("org"),
    )
    if not all(type(v) is str and len(v) <= MAX_PATH_CHARS for v in (subject, group, role, site, bin_)) or not (
        org is None or type(org) is str
    ):
        for name in ("subject", "group", "role", "site", "bin", "org"):
            _text(raw, key, name)
    if bool(subject) == bool(group):
        raise PolicyError(key, "needs exactly one of subject, group")
    if role not in roles:
        raise PolicyError(f"{key}.role", f"unknown role {role!r}")
    return Grant(role, _scope(org, site, bin_, key), subject, group)


def _scope(org: str | None, site: str, bin_: str, key: str) -> Scope:
    if (org is not None) == bool(site):
        raise PolicyError(key, 'needs exactly one of org (a subtree; "" = everything), site')
    if bin_ and not site:
        raise PolicyError(f"{key}.bin", "a bin prefix needs a site")
    if org is not None:
        _check_path(org, f"{key}.org")
        return Scope(org=org)
    _check_path(bin_, f"{key}.bin")
    return Scope(site=site, bin=bin_)


def _text(raw: Mapping[str, Any], key: str, name: str) -> str:
    value = raw.get(name, "")
    if not isinstance(value, str):
        raise PolicyError(f"{key}.{name}", "must be a string")
    if len(value) > MAX_PATH_CHARS:
        raise PolicyError(f"{key}.{name}", f"at most {MAX_PATH_CHARS} characters")
    return value


def _check_path(path: str, key: str) -> None:
    if path and (path[0] == "/" or path[-1] == "/" or "//" in path):
        raise PolicyError(key, "a path of non-empty segments without leading or trailing '/'")


# ---- compiled permissions and checks ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadScope:
    """What one action may see, as the filter a scan applies before summing.

    `bins_for(site, org_path)` is `("",)` for the whole site, a tuple of disjoint bin
    prefixes for part of it, or `()` for nothing."""

    everything: bool
    orgs: frozenset[str] = frozenset()
    sites: frozenset[str] = frozenset()
    bins: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def bins_for(self, site: str, org_path: str) -> tuple[str, ...]:
        if self.everything or site in self.sites or _org_hit(self.orgs, org_path):
            return ("",)
        return self.bins.get(site, ())

    def site_limit(self) -> frozenset[str] | None:
        """The sites outside which nothing is visible, or None when org grants make it open-ended."""
        if self.everything or self.orgs:
            return None
        return self.sites | frozenset(self.bins)


def _org_hit(orgs: frozenset[str] | Mapping[str, Any], org_path: str) -> bool:
    """Whether any ancestor-or-self of `org_path` is a key: depth lookups, not a scan."""
    if not orgs:
        return False
    if org_path in orgs:
        return True
    end = org_path.rfind("/")
    while end > 0:
        if org_path[:end] in orgs:
            return True
        end = org_path.rfind("/", 0, end)
    return False


@dataclass(frozen=True, slots=True)
class Permissions:
    """One principal's grants, compiled. Built by `compile_permissions`."""

    subject: str
    everywhere: Action  # org "" grants
    orgs: Mapping[str, Action]  # org prefix → actions
    sites: Mapping[str, Action]  # site → actions (whole site)
    bins: Mapping[str, tuple[tuple[str, Action], ...]]  # site → sorted (bin prefix, actions)
    # read_scope per action, built on first use: every query of this principal reuses it.
    _scopes: dict[Action, ReadScope] = field(default_factory=dict, compare=False, repr=False)
    # org path → the actions org grants give there; a principal meets few org paths.
    _org_bits: dict[str, Action] = field(default_factory=dict, compare=False, repr=False)

    @property
    def any_actions(self) -> Action:
        out = self.everywhere
        for bits in (*self.orgs.values(), *self.sites.values()):
            out |= bits
        for entries in self.bins.values():
            for _, bits in entries:
                out |= bits
        return out

    def allows(self, action: Action, site: str, org_path: str, bin_: str | None = None) -> bool:
        """May the principal do `action` at `site` (under `org_path`), in `bin_`?
        `bin_` None means the whole site (e.g. a reserve without a bin prefix)."""
        if self.everywhere & action or self.sites.get(site, NO_ACTIONS) & action:
            return True
        if self.orgs and self._org_allows(action, org_path):
            return True
        if bin_ is None:
            return False
        return any(bits & action and covers(bin_, prefix) for prefix, bits in self.bins.get(site, ()))

    def summary(self) -> list[tuple[str, list[str]]]:
        """What the grants cover, for people: (scope, action names), most general first."""
        out: list[tuple[str, list[str]]] = []
        if self.everywhere:
            out.append(("everything", _names(self.everywhere)))
        out += [(f"org {org}", _names(bits)) for org, bits in sorted(self.orgs.items())]
        out += [(f"site {site}", _names(bits)) for site, bits in sorted(self.sites.items())]
        for site, entries in sorted(self.bins.items()):
            out += [(f"site {site} bin {prefix}", _names(bits)) for prefix, bits in entries]
        return out

    def allows_global(self, action: Action) -> bool:
        """Engine-wide actions (admin RPCs, catalog writes) need an org "" grant."""
        return bool(self.everywhere & action)

    def _org_allows(self, action: Action, org_path: str) -> bool:
        bits = self._org_bits.get(org_path)
        if bits is None:
            bits = self._org_walk(org_path)
            if len(self._org_bits) < MAX_CACHED_ORG_PATHS:
                self._org_bits[org_path] = bits
        return bool(bits & action)

    def _org_walk(self, org_path: str) -> Action:
        """The actions granted on `org_path` and every node above it."""
        orgs = self.orgs
        bits = orgs.get(org_path, NO_ACTIONS)
        end = org_path.rfind("/")
        while end > 0:
            bits |= orgs.get(org_path[:end], NO_ACTIONS)
            end = org_path.rfind("/", 0, end)
        return bits

    def read_scope(self, action: Action = Action.READ) -> ReadScope:
        found = self._scopes.get(action)
        if found is None:
            found = self._scopes[action] = self._build_read_scope(action)
        return found

    def _build_read_scope(self, action: Action) -> ReadScope:
        if self.everywhere & action:
            return ReadScope(everything=True)
        orgs = _outermost(p for p, bits in self.orgs.items() if bits & action)
        sites = frozenset(s for s, bits in self.sites.items() if bits & action)
        bins: dict[str, tuple[str, ...]] = {}
        for site, entries in self.bins.items():
            if site in sites:
                continue
            kept = _outermost(p for p, bits in entries if bits & action)
            if kept:
                bins[site] = kept
        return ReadScope(False, frozenset(orgs), sites, bins)


def _names(bits: Action) -> list[str]:
    return [name for name, action in ACTION_NAMES.items() if bits & action]


def _outermost(prefixes: Iterable[str]) -> tuple[str, ...]:
    """Drop every prefix another one covers, so the rest are disjoint (nothing counted twice)."""
    out: list[str] = []
    for p in sorted(set(prefixes)):  # a covering prefix sorts before what it covers
        if not out or not covers(p, out[-1]):
            out.append(p)
    return tuple(out)


def compile_permissions(policy: Policy, subject: str, groups: Iterable[str]) -> Permissions:
    everywhere = NO_ACTIONS
    orgs: dict[str, Action] = {}
    sites: dict[str, Action] = {}
    bins: dict[str, dict[str, Action]] = {}
    for grant in policy.grants_of(subject, groups):
        bits = policy.roles[grant.role]
        scope = grant.scope
        if scope.org is not None:
            if scope.org == "":
                everywhere |= bits
            else:
                orgs[scope.org] = orgs.get(scope.org, NO_ACTIONS) | bits
        elif not scope.bin:
            sites[scope.site] = sites.get(scope.site, NO_ACTIONS) | bits
        else:
            per_site = bins.setdefault(scope.site, {})
            per_site[scope.bin] = per_site.get(scope.bin, NO_ACTIONS) | bits
    return Permissions(
        subject,
        everywhere,
        orgs,
        sites,
        {site: tuple(sorted(entries.items())) for site, entries in bins.items()},
    )


def org_in_scope(scope: ReadScope, org_path: str) -> bool:
    """Whether a whole org subtree is visible (roll-ups over org nodes)."""
    return scope.everything or any(org_covers(org_path, o) for o in scope.orgs)


ADMIN_EVERYWHERE = Permissions("", ALL_ACTIONS, {}, {}, {})  # the engine's own calls (auth off)
