"""`lotwise token`: tokens minted with the engine's secret verify as the engine verifies them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.auth.files import WatchedFile, load_secret, write_private
from engine.api.auth import TokenSettings, TokenVerifier
from engine.cli import app

SECRET = b"s" * 48


def run(data_dir: Path, *args: str, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["token", *args], env={"LOTWISE_DATA_DIR": str(data_dir), "NO_COLOR": "1", "COLUMNS": "200", **env}
    )
    return result.exit_code, result.output


@pytest.fixture(autouse=True)
def _engine_secret_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's test secret (tests/conftest.py) would be the one minted with: use the data dir's."""
    monkeypatch.delenv("LOTWISE_AUTH_SECRET_FILE", raising=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    write_private(tmp_path / "auth" / "signing.key", SECRET)
    return tmp_path


def verify(data_dir: Path, token: str, settings: TokenSettings | None = None) -> tuple[str, tuple[str, ...]]:
    settings = settings or TokenSettings()
    verifier = TokenVerifier([WatchedFile(data_dir / "auth" / "signing.key", load_secret)], settings)
    principal = verifier.verify(token.strip())
    return principal.subject, tuple(principal.groups)


def test_a_minted_token_carries_its_subject_and_groups(data_dir: Path) -> None:
    code, out = run(data_dir, "--subject", "maya", "-g", "site_manager", "-g", "store")
    assert code == 0
    assert verify(data_dir, out) == ("maya", ("site_manager", "store"))


def test_audience_and_issuer_follow_the_settings(data_dir: Path) -> None:
    code, out = run(data_dir, "-s", "pos-7", LOTWISE_AUTH_AUDIENCE="shop", LOTWISE_AUTH_ISSUER="hq")
    assert code == 0
    assert verify(data_dir, out, TokenSettings(audience="shop", issuer="hq"))[0] == "pos-7"


def test_out_writes_a_private_file_and_says_where(data_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "maya.token"
    code, out = run(data_dir, "-s", "maya", "-g", "site_manager", "--out", str(target))
    assert code == 0
    assert f"to {target}" in out
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert verify(data_dir, target.read_text())[0] == "maya"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("-s", "m y"), "must be 1..256 characters without spaces"),
        (("-s", "maya", "--ttl-hours", "0"), "--ttl-hours must be in"),
        (("-s", "maya", "-g", "a b"), "--group"),
        (("-s", "maya", "--out", "/nonexistent/dir/t"), "cannot write it"),
    ],
)
def test_bad_options_exit_2(data_dir: Path, args: tuple[str, ...], words: str) -> None:
    code, out = run(data_dir, *args)
    assert code == 2
    assert words in out


def test_without_a_secret_it_says_how_to_get_one(tmp_path: Path) -> None:
    code, out = run(tmp_path, "-s", "maya")
    assert code == 2
    assert "no signing key at" in out
    assert "lotwise up" in out
