"""Account-mapping rules as data: every voucher line of every kind resolves with the default
file; a bad file is refused naming the file, the rule and the field; explain says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.domain.errors import InvalidArgument
from engine.finance.mapping import KIND_ROLES, Facts, default_rules, load_rules, parse_rules, unresolved


def test_every_line_of_every_voucher_kind_resolves_with_the_default_rules() -> None:
    rules = default_rules()
    assert unresolved(rules) == []
    for kind, roles in KIND_ROLES.items():
        for role in roles:
            assert rules.resolve(Facts(kind, role, "any", "any", "any", "any", "any", "any", "any", "CNY")).rule.account


def test_first_match_wins_and_specific_rules_come_first() -> None:
    rules = default_rules()
    assert rules.resolve(Facts("sale", "revenue", channel="web")).rule.account == "6001.02"
    assert rules.resolve(Facts("sale", "revenue", channel="pos")).rule.account == "6001"
    assert rules.resolve(Facts("sale", "ar", tier="key")).rule.account == "1122.01"
    assert rules.resolve(Facts("gift", "output_tax", tax="deemed_sale")).rule.account == "2221.01.05"


def test_explain_walks_the_rules_up_to_the_match() -> None:
    steps = default_rules().explain(Facts("sale", "revenue", channel="pos"))
    assert steps[0][2] == "channel is 'pos', the rule wants 'web'"
    assert steps[-1][1].name == "revenue"
    assert steps[-1][2] == ""


def test_a_bad_file_names_the_file_the_rule_and_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text(
        '[[rule]]\nname = "x"\nrole = "inventory"\nacount = "1405"\n\n'
        '[[rule]]\nname = "y"\nkind = "sale"\nrole = "grni"\naccount = "1"\n\n'
        '[[rule]]\nkind = "lunch"\naccount = "2"\n'
    )
    with pytest.raises(InvalidArgument) as info:
        load_rules(bad)
    found = {v.field: v.description for v in info.value.violations}
    assert set(found) == {"rule[1].acount", "rule[1].account", "rule[2].role", "rule[3].kind"}
    assert all(str(bad) in d for d in found.values())
    assert "rule 1 (x)" in found["rule[1].acount"]
    assert "a sale voucher has no 'grni' line" in found["rule[2].role"]


def test_no_rule_no_file() -> None:
    with pytest.raises(InvalidArgument):
        parse_rules({}, "empty.toml")
    with pytest.raises(InvalidArgument):
        load_rules(Path("/nonexistent/rules.toml"))
    rules = parse_rules({"rule": [{"role": "inventory", "account": "1405"}]}, "mini.toml")
    assert unresolved(rules)
    with pytest.raises(InvalidArgument):
        rules.resolve(Facts("sale", "cogs"))
