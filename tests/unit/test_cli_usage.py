"""`lotwise` usage errors, caught before any call (exit 2), `--version`, Ctrl-C (exit 130).

Typer's CliRunner, no engine: every case here must fail before a channel is opened, so
the target is a port nothing listens on — reaching it would exit 3, not 2. The codes
that need an engine (0, 1, 3) are in tests/e2e/test_cli_exit_codes.py.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.cli.common import EXIT_CODES, ExitCode, target_problem

ENV = {"NO_COLOR": "1", "COLUMNS": "80", "TERM": "dumb", "LOTWISE_TARGET": "", "LOTWISE_DATA_DIR": "/nonexistent"}
NOWHERE = ("--target", "127.0.0.1:9")  # the discard port: never an engine


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=ENV)


USAGE = [
    (
        ("availability", "GLU 50", "FW-BOS", *NOWHERE),
        "SKU: may contain only letters, digits and ._:-@#+ (got 'GLU 50')",
    ),
    (("availability", "GLU-50", "FW-BOS", "--min-shelf-life-days", "-2", *NOWHERE), "0..36500 (got -2)"),
    (("availability", "GLU-50", "FW-BOS", "--bin-depth", "99", *NOWHERE), "--bin-depth must be in 0..8"),
    (("availability", "GLU-50", "FW-BOS", "--by", "colour", *NOWHERE), "colour"),
    (
        ("availability", "GLU-50", "FW-BOS", "--target", "127.0.0.1:99999"),
        "port 99999 is out of range; ports are 1..65535",
    ),
    (("availability", "GLU-50", "FW-BOS", "--target", "localhost"), "give host:port"),
    (("availability", "GLU-50", "FW-BOS", "--target", "::1:50051"), "written in brackets"),
    (("availability", "GLU-50", "FW-BOS", "--timeout", "0", *NOWHERE), "--timeout must be > 0"),
    (("stock", "--limit", "-5", *NOWHERE), "--limit must be in 1..100000 (got -5)"),
    (
        ("stock", "--site", "NOPE SITE", *NOWHERE),
        "--site: may contain only letters, digits and ._:-@#+ (got 'NOPE SITE')",
    ),
    (("stock", "--format", "xml", *NOWHERE), "xml"),
    (("stock", "--target", "127.0.0.1:http"), "is not a number"),
    (("hold", "", *NOWHERE), "must not be empty"),
    (("sites", "--format", "yaml", *NOWHERE), "yaml"),
    (("sites", "--target", ":50051"), "give host:port"),
    (("verify", "--target", "127.0.0.1:0"), "port 0 is out of range"),
    (("shards", "--timeout", "-1", *NOWHERE), "--timeout must be > 0"),
    (("demo", "--hold-ttl-ms", "5", *NOWHERE), "--hold-ttl-ms must be in 100..60000"),
    (("demo", "--run-id", "a b", *NOWHERE), "--run-id"),
    (("history", "balance", "--limit", "-1", *NOWHERE), "--limit must be in 0..10000"),
    (("history", "balance", "--at", "2026-13-01", *NOWHERE), "--at: cannot read '2026-13-01'"),
    (("history", "balance", "--site", "a b", *NOWHERE), "(got 'a b')"),
    (("history", "movements", "--limit", "0", *NOWHERE), "--limit must be in 1..1000"),
    (("history", "movements", "--from", "2026-02-01", "--to", "2026-01-01", *NOWHERE), "is after --to"),
    (("history", "consumption", "GLU-50", "FW-BOS", "--days", "0", *NOWHERE), "--days must be in 1..3660"),
    (("history", "turnover", "GLU-50", "FW-BOS", "--days", "99999", *NOWHERE), "--days must be in 1..3660"),
    (("history", "expiry", "--within-days", "0", *NOWHERE), "--within-days must be in 1..3650"),
    (("history", "expiry", "--limit", "-1", *NOWHERE), "--limit must be in 0..10000"),
    (("history", "trace", "a b", *NOWHERE), "--lot: may contain only letters, digits and ._:-@#+ (got 'a b')"),
    (("history", "status", "--target", "127.0.0.1:70000"), "port 70000 is out of range"),
    (("dlq", "list", "--limit", "0", *NOWHERE), "--limit must be in 1..1000"),
    (("dlq", "list", "--after", "-1", *NOWHERE), "--after must be ≥ 0"),
    (("dlq", "list", "--code", "NOPE", *NOWHERE), "NOPE"),
    (("dlq", "show", "0", *NOWHERE), "greater than or equal to 1"),
    (("dlq", "replay", *NOWHERE), "give the seqs to replay, or --all"),
    (("dlq", "replay", "1", "--all", *NOWHERE), "not both"),
    (("import", "/nonexistent/lots.csv", *NOWHERE), "cannot import"),
    (("import", "x.csv", "--chunk-rows", "0", *NOWHERE), "--chunk-rows must be in 1..4096"),
    (("where", "--grpc", "--nats"), "give at most one"),
    (("where", "--format", "xml"), "xml"),
    (("up", "--port", "70000"), "70000"),
    (("up", "--shards", "0", "--port", "0", "--metrics-port", "0"), "shards (--shards)"),
    (("up", "--journal", "paper", "--port", "0", "--metrics-port", "0"), "journal (--journal)"),
    (("up", "--log-level", "loud", "--port", "0", "--metrics-port", "0"), "log_level (--log-level)"),
    (("no-such-command",), "No such command"),
    (
        ("stock", "--token-file", "/nonexistent/admin.token", *NOWHERE),
        "--token-file /nonexistent/admin.token: cannot read it: No such file or directory",
    ),
    (("history", "status", "--token-file", "/", *NOWHERE), "--token-file /: cannot read it: Is a directory"),
]


@pytest.mark.parametrize(("args", "needle"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_bad_usage_exits_2_before_any_call(args: tuple[str, ...], needle: str) -> None:
    result = invoke(*args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert "cannot reach" not in result.output  # nothing was dialled


def test_version_is_the_package_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"lotwise {version('lotwise')}"


def test_where_exits_0_2_3(tmp_path: Path) -> None:
    assert invoke("where", "--data-dir", str(tmp_path)).exit_code == ExitCode.UNREACHABLE
    (tmp_path / "engine.json").write_text("not json")
    broken = invoke("where", "--data-dir", str(tmp_path))
    assert broken.exit_code == ExitCode.USAGE, broken.output
    assert "engine.json" in broken.output
    (tmp_path / "engine.json").write_text('{"grpc": "127.0.0.1:50051", "nats": "nats://127.0.0.1:4333"}')
    found = invoke("where", "--data-dir", str(tmp_path), "--format", "csv")
    assert found.exit_code == 0, found.output
    assert found.output.splitlines() == [
        "grpc,metrics,nats,pid,token_file,console,http",
        "127.0.0.1:50051,,nats://127.0.0.1:4333,0,,,",
    ]


class _Interrupted:
    """A client whose connect is interrupted, as Ctrl-C during a call would."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    async def __aenter__(self) -> _Interrupted:
        raise KeyboardInterrupt

    async def __aexit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("args", [("stock",), ("hold", "H1"), ("history", "status"), ("dlq", "list")], ids=" ".join)
def test_ctrl_c_during_a_call_exits_130(monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]) -> None:
    monkeypatch.setattr("engine.api.client.LotwiseClient", _Interrupted)
    result = invoke(*args, *NOWHERE)
    assert result.exit_code == ExitCode.INTERRUPTED, result.output
    assert "lotwise: error: interrupted" in result.output


def test_an_empty_token_file_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "admin.token"
    empty.write_text("\n")
    result = invoke("dlq", "list", "--token-file", str(empty), *NOWHERE)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"--token-file {empty}: the file is empty" in result.output


class _Recording(_Interrupted):
    """Records what the command built its client with, then is interrupted (nothing dialled)."""

    kwargs: ClassVar[list[dict[str, object]]] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.kwargs.append(kwargs)


@pytest.mark.parametrize(
    "args",
    [("stock",), ("verify",), ("history", "status"), ("dlq", "list"), ("demo", "--run-id", "x")],
    ids=" ".join,
)
def test_token_file_reaches_the_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: tuple[str, ...]) -> None:
    token = tmp_path / "reader.token"
    token.write_text("header.payload.signature\n")
    monkeypatch.setattr("engine.api.client.LotwiseClient", _Recording)
    _Recording.kwargs.clear()
    result = invoke(*args, "--token-file", str(token), *NOWHERE)
    assert result.exit_code == ExitCode.INTERRUPTED, result.output
    assert [k.get("token_file") for k in _Recording.kwargs] == [token]


def test_the_exit_code_table_is_complete_and_in_the_readme() -> None:
    assert set(EXIT_CODES) == set(ExitCode)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for code in ExitCode:
        assert f"| {code.value} |" in readme, code


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("127.0.0.1:50051", True),
        ("[::1]:50051", True),
        ("engine.internal:443", True),
        ("dns:///engine.internal:443", True),
        ("127.0.0.1:65536", False),
        ("127.0.0.1:", False),
        ("[::1:50051", False),
        ("[nope]:50051", False),
    ],
)
def test_target_problem(address: str, ok: bool) -> None:
    assert (target_problem(address) == "") is ok


def test_a_retired_setting_is_refused_with_what_replaced_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.cli.common import ConfigError
    from engine.cli.config import build_settings

    monkeypatch.setenv("LOTWISE_SNAPSHOT_EVERY_BATCHES", "5000")
    with pytest.raises(ConfigError) as refused:
        build_settings({})
    assert refused.value.field == "LOTWISE_SNAPSHOT_EVERY_BATCHES"
    assert "LOTWISE_SNAPSHOT_MIN_TAIL_OPS" in refused.value.message
    monkeypatch.delenv("LOTWISE_SNAPSHOT_EVERY_BATCHES")
    assert build_settings({}).snapshot_min_tail_ops > 0
