"""Scale-out shape on one machine: a Ray cluster, a standalone JetStream, two gateways."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.ray
def test_two_gateways_share_one_cluster(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LOTWISE_CLUSTER_DIR": str(tmp_path),
        "RAY_PORT": str(free_port()),
        "NATS_PORT": str(free_port()),
        "LOTWISE_CLUSTER_PORTS": f"{free_port()} {free_port()}",
    }
    done = subprocess.run(
        ["bash", str(ROOT / "deploy" / "local-cluster.sh"), "smoke"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert done.returncode == 0, done.stdout + done.stderr + logs[-4000:]
    assert "committed 4 via the second gateway; it sees 6 available; verify ok=True" in done.stdout
    assert not list(tmp_path.glob("*.pid"))  # everything it started was stopped
