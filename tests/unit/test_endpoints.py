"""engine.json: where a running engine listens, how clients pick their target, `lotwise where`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.endpoints import (
    FALLBACK_TARGET,
    Endpoints,
    EndpointsError,
    find_engine,
    read_endpoints,
    remove_endpoints,
    resolve_target,
    write_endpoints,
)

ENGINE = Endpoints(
    "127.0.0.1:40001",
    "http://127.0.0.1:40002/metrics",
    "nats://127.0.0.1:40003",
    pid=4242,
    console="http://127.0.0.1:40004/",
)


def test_written_endpoints_read_back_and_leave_no_temporary_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"  # created on write: `lotwise up` may run before anything else made it
    path = write_endpoints(data_dir, ENGINE)
    assert read_endpoints(data_dir) == ENGINE
    assert json.loads(path.read_text())["version"] == 1
    assert [p.name for p in data_dir.iterdir()] == ["engine.json"]


def test_no_file_means_no_engine(tmp_path: Path) -> None:
    assert read_endpoints(tmp_path) is None
    with pytest.raises(EndpointsError, match="is `lotwise up` running"):
        find_engine(tmp_path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "not JSON"), ('{"metrics": "x"}', "no gRPC address"), ("[]", "no gRPC address")],
)
def test_an_unusable_file_is_an_error_naming_it(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "engine.json").write_text(content)
    with pytest.raises(EndpointsError, match=problem) as caught:
        read_endpoints(tmp_path)
    assert caught.value.path == tmp_path / "engine.json"


def test_a_clean_stop_removes_only_its_own_file(tmp_path: Path) -> None:
    write_endpoints(tmp_path, ENGINE)
    newer = Endpoints("127.0.0.1:50001", pid=5151)
    write_endpoints(tmp_path, newer)  # a second engine took over the data dir
    remove_endpoints(tmp_path, ENGINE)
    assert read_endpoints(tmp_path) == newer
    remove_endpoints(tmp_path, newer)
    assert read_endpoints(tmp_path) is None


def test_target_given_then_engine_json_then_the_default(tmp_path: Path) -> None:
    assert resolve_target("10.0.0.1:7", tmp_path).address == "10.0.0.1:7"
    fallback = resolve_target("", tmp_path)
    assert fallback.address == FALLBACK_TARGET
    assert "no " + str(tmp_path / "engine.json") in fallback.source
    write_endpoints(tmp_path, Endpoints(ENGINE.grpc, pid=os.getpid()))  # this process: alive
    found = resolve_target("", tmp_path)
    assert (found.address, found.source) == (ENGINE.grpc, str(tmp_path / "engine.json"))


def test_a_file_left_by_a_dead_engine_says_so(tmp_path: Path) -> None:
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True)
    dead_pid = int(gone.stdout)
    write_endpoints(tmp_path, Endpoints("127.0.0.1:40001", pid=dead_pid))
    assert f"left by pid {dead_pid}, which is no longer running" in resolve_target("", tmp_path).source
    write_endpoints(tmp_path, Endpoints("127.0.0.1:40001", pid=os.getpid()))
    assert resolve_target("", tmp_path).source == str(tmp_path / "engine.json")


def test_find_engine_reads_the_data_dir_of_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_endpoints(tmp_path, ENGINE)
    monkeypatch.setenv("LOTWISE_DATA_DIR", str(tmp_path))
    assert find_engine().nats == ENGINE.nats


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_where_prints_every_address_or_one(tmp_path: Path, runner: CliRunner) -> None:
    write_endpoints(tmp_path, ENGINE)
    table = runner.invoke(app, ["where", "--data-dir", str(tmp_path)])
    assert table.exit_code == 0, table.output
    assert table.output.split() == [
        "grpc",
        ENGINE.grpc,
        "metrics",
        ENGINE.metrics,
        "nats",
        ENGINE.nats,
        "console",
        ENGINE.console,
    ]
    as_json = runner.invoke(app, ["where", "--data-dir", str(tmp_path), "--format", "json"])
    assert json.loads(as_json.output) == {
        "grpc": ENGINE.grpc,
        "metrics": ENGINE.metrics,
        "nats": ENGINE.nats,
        "pid": 4242,
        "token_file": "",  # the admin token's path when auth is on (never the token)
        "console": ENGINE.console,
    }
    for flag, value in (
        ("--grpc", ENGINE.grpc),
        ("--nats", ENGINE.nats),
        ("--metrics", ENGINE.metrics),
        ("--console", ENGINE.console),
    ):
        single = runner.invoke(app, ["where", "--data-dir", str(tmp_path), flag])
        assert (single.exit_code, single.output) == (0, value + "\n")


def test_where_without_an_engine_exits_3_and_says_where_it_looked(tmp_path: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["where", "--data-dir", str(tmp_path)])
    assert result.exit_code == 3
    assert str(tmp_path / "engine.json") in " ".join(result.output.split())


def test_where_refuses_two_single_addresses_and_a_broken_file(tmp_path: Path, runner: CliRunner) -> None:
    write_endpoints(tmp_path, Endpoints("127.0.0.1:1"))
    assert runner.invoke(app, ["where", "--data-dir", str(tmp_path), "--grpc", "--nats"]).exit_code == 2
    assert runner.invoke(app, ["where", "--data-dir", str(tmp_path), "--nats"]).exit_code == 3  # no NATS: off
    assert runner.invoke(app, ["where", "--data-dir", str(tmp_path), "--console"]).exit_code == 3  # console off
    (tmp_path / "engine.json").write_text("{oops")
    assert runner.invoke(app, ["where", "--data-dir", str(tmp_path)]).exit_code == 2


def test_a_client_command_with_a_broken_engine_json_exits_2(
    tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "engine.json").write_text("{oops")
    monkeypatch.setenv("LOTWISE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LOTWISE_TARGET", raising=False)
    result = runner.invoke(app, ["hold", "SO-1"])
    assert result.exit_code == 2
    assert "engine.json" in result.output
