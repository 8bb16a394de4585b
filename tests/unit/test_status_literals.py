"""Statuses are data (DESIGN.md §3): no source file but the dictionary spells a status name.

Code that must pick a status asks the dictionary for the status of a role
(`StatusDictionary.role`); this test reads every module of engine/ and adapters/ and fails
on a string literal that is a status name. A few modules use the same word in another
vocabulary (a hold that expired, the available quantity): they are listed below, each
with what the word means there.
"""

from __future__ import annotations

import ast
from pathlib import Path

from engine.domain.statuses import DEFAULT_DICTIONARY, REQUIRED_STATUSES

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("engine", "adapters")
DICTIONARY_MODULE = "engine/domain/statuses.py"
GENERATED = ("engine/api/gen/",)
STATUS_NAMES = frozenset(DEFAULT_DICTIONARY.statuses) | frozenset(REQUIRED_STATUSES)

# (module, word) → what the word means there; none of them is a status.
OTHER_VOCABULARIES: dict[tuple[str, str], str] = {
    ("engine/domain/model.py", "expired"): "HoldState.EXPIRED: a hold's lifecycle state",
    ("engine/runtime/types.py", "expired"): "AggregateState.EXPIRED: a multi-pair hold's state",
    ("engine/api/convert.py", "expired"): "the hold state mapped to pb.HOLD_STATE_EXPIRED",
    ("engine/domain/errors.py", "available"): "InsufficientStock's metadata key: the available quantity",
    ("engine/api/errors.py", "available"): "InsufficientStock's metadata key: the available quantity",
    ("engine/cli/main.py", "available"): "a table column: the available quantity",
    ("engine/cli/common.py", "expired"): "a lot's days left, shown when they ran out",
    ("engine/cli/history.py", "expired"): "a lot's days left, shown when they ran out",
    ("adapters/nats/ingest/events.py", "damaged"): "a scan_return's `condition` on the wire (unopened | damaged)",
    ("engine/console/app.py", "expired"): "the sign-in page's query flag: the session's token expired",
    ("engine/console/i18n.py", "available"): "a label key: the available quantity column",
    ("engine/console/i18n.py", "expired"): "a label key: a lot's days left, shown when they ran out",
    ("engine/console/views/charts.py", "expired"): "the label of the bar of lots whose days left ran out",
    ("engine/console/forms.py", "expired"): "an alert kind in the alerts panel's filter (a lot past its expiry)",
    ("engine/cli/transfers.py", "damaged"): "a receipt's damaged quantity (`damaged=` on --line, a lot's column)",
    ("engine/health/alerts.py", "expired"): "an alert kind: a lot past its expiry (its status comes from the rules)",
}


def status_literals(path: Path) -> list[tuple[int, str]]:
    """(line, word) of every string constant in `path` that is a status name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STATUS_NAMES
    ]


def scanned_modules() -> list[Path]:
    out = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel != DICTIONARY_MODULE and not rel.startswith(GENERATED):
                out.append(path)
    return out


def test_no_status_name_is_spelled_outside_the_dictionary() -> None:
    found = []
    for path in scanned_modules():
        rel = path.relative_to(ROOT).as_posix()
        found += [
            f"{rel}:{line}: {word!r}" for line, word in status_literals(path) if (rel, word) not in OTHER_VOCABULARIES
        ]
    assert not found, "status names spelled in code (use StatusDictionary.role):\n" + "\n".join(found)


def test_the_scan_sees_the_modules_and_would_catch_a_literal(tmp_path: Path) -> None:
    assert len(scanned_modules()) > 50
    assert ROOT / "adapters/nats/ingest/apply.py" in scanned_modules()
    sample = tmp_path / "sample.py"
    sample.write_text('STATUS = "quality_frozen"\n"""A docstring that says available is fine."""\nx = f"{1} packed"\n')
    assert status_literals(sample) == [(1, "quality_frozen")]
