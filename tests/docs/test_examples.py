"""The README's examples are tests: every ```sh and ```python block runs exactly as written.

One engine is started the way the README starts it — `lotwise up --demo` — with a data dir
of its own and free ports (so it never meets a developer's `.data` or a busy port 50051);
the examples find it through `<data_dir>/engine.json`, as a reader's would through
`.data/engine.json`. Each block runs with `lotwise` and `grpcurl` on PATH (.venv/bin), from
the repository root, top to bottom; then the whole sequence runs a second time against the
same engine, and must give the same exit codes and shown output (examples are idempotent).

A command must exit 0 unless its line says `# exits N`; a block followed by an output block
must print every line of it (tables may pad differently); a Python block must exit 0.
Conventions: tests/docs/markdown.py. Starts Ray: needs the loopback-only namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import only_loopback
from tests.docs.markdown import DOCUMENTS, ROOT, Example, examples, missing_output

BIN = Path(sys.executable).parent  # .venv/bin: lotwise, grpcurl, python
START_TIMEOUT_S = 240  # Ray on a loaded 2-core machine, the demo dataset
COMMAND_TIMEOUT_S = 120
PASSES = (1, 2)

pytestmark = pytest.mark.ray


def runnable() -> list[Example]:
    return [ex for doc in DOCUMENTS for ex in examples(doc) if not ex.skip_reason]


def example_env(data_dir: Path) -> dict[str, str]:
    """A reader's shell: the project's tools first on PATH, the engine's data dir, no LOTWISE_*
    from the developer's environment; wide and colourless, so a shown line stays one line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOTWISE_") or k == "LOTWISE_IN_NETNS"}
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "LOTWISE_DATA_DIR": str(data_dir),
            "NO_COLOR": "1",
            "TERM": "dumb",
            "COLUMNS": "200",
            "PYTHONUNBUFFERED": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
    )
    return env


@pytest.fixture(scope="module")
def reader_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not only_loopback() and os.environ.get("LOTWISE_NO_NETNS") != "1":
        pytest.fail("the doc tests start Ray: run them inside scripts/in-netns")
    home = tmp_path_factory.mktemp("doc-engine")
    data_dir = home / "data"
    env = example_env(data_dir)
    up_env = {
        **env,
        "LOTWISE_PORT": "0",
        "LOTWISE_METRICS_PORT": "0",
        "LOTWISE_HTTP_PORT": "0",
        "LOTWISE_LOG_LEVEL": "warning",
    }
    stdout, stderr = home / "up.stdout", home / "up.stderr"  # files: a chatty engine never blocks on a pipe
    with stdout.open("w") as out, stderr.open("w") as err:
        proc = subprocess.Popen(
            ["lotwise", "up", "--demo"], cwd=ROOT, env=up_env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
    try:
        wait_until_serving(proc, stdout, stderr, data_dir / "engine.json")
        yield env
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, stdout.read_text() + stderr.read_text()
        assert not (data_dir / "engine.json").exists(), "a clean stop removes engine.json"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def wait_until_serving(proc: subprocess.Popen[bytes], stdout: Path, stderr: Path, endpoints: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"lotwise up exited {proc.returncode}:\n{stdout.read_text()}{stderr.read_text()}")
        if "Serving." in stdout.read_text() and endpoints.exists():
            assert json.loads(endpoints.read_text())["grpc"].startswith("127.0.0.1:")
            return
        time.sleep(0.5)
    pytest.fail(f"lotwise up not serving after {START_TIMEOUT_S} s:\n{stdout.read_text()}{stderr.read_text()}")


def run_sh(example: Example, env: dict[str, str]) -> str:
    printed: list[str] = []
    for command in example.commands():
        proc = subprocess.run(
            ["sh", "-c", command.text],
            check=False,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        where = f"{example.path.name}:{command.line}: {command.text}"
        assert proc.returncode == command.exit_code, f"{where}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}"
        assert "Traceback" not in proc.stderr, f"{where}\n{proc.stderr}"
        printed.append(proc.stdout)
    return "".join(printed)


def run_python(example: Example, env: dict[str, str], tmp_path: Path) -> str:
    script = tmp_path / "example.py"
    script.write_text(example.code)
    proc = subprocess.run(
        [sys.executable, str(script)],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert proc.returncode == 0, f"{example.name}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("example", [pytest.param(ex, id=f"run{n}-{ex.name}") for n in PASSES for ex in runnable()])
def test_example_runs_as_written(example: Example, reader_env: dict[str, str], tmp_path: Path) -> None:
    printed = run_sh(example, reader_env) if example.lang == "sh" else run_python(example, reader_env, tmp_path)
    if example.expected_output:
        missing = missing_output(example.expected_output, printed)
        assert missing is None, f"{example.name}: the README shows {missing!r}; printed:\n{printed}"
