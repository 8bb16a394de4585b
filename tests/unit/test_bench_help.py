"""Bench commands answer --help with their usage and refuse bad arguments with a usage error,
like every other command of the project (they used to treat `--help` as a file name)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench import pyspy, served


@pytest.mark.parametrize("main", [pyspy.main, served.main], ids=["pyspy", "served"])
def test_help_prints_usage_and_exits_0(main: Callable[[list[str]], object], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m bench." in capsys.readouterr().out


def test_pyspy_refuses_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        pyspy.main([str(tmp_path / "absent.txt")])
    assert exit_info.value.code == 2
    assert "no such file" in capsys.readouterr().err


def test_served_refuses_a_negative_cost_bound(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        served.main([str(tmp_path / "port"), "-1"])
    assert exit_info.value.code == 2
    assert "door_max_cost" in capsys.readouterr().err
