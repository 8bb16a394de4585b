"""A gRPC server over a gateway with token authentication and a grant policy, as tests need it:
the signing key and the policy written to files the engine watches (no reload delay)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from adapters.auth.files import WatchedFile, load_policy, load_secret, write_private
from engine.api.auth import AuthMetrics, Authorizer, ServerAuth, TokenSettings, TokenVerifier
from engine.api.server import ApiMetrics, LotwiseServer, start_server
from engine.runtime.gateway import Gateway


async def start_authed_server(
    tmp_path: Path, gateway: Gateway, secret: bytes, policy: str
) -> tuple[LotwiseServer, int]:
    """(server, port) on 127.0.0.1: `gateway` serves Inventory and Admin behind `policy` (TOML)."""
    secret_file, policy_file = tmp_path / "signing.key", tmp_path / "policy.toml"
    write_private(secret_file, secret)
    policy_file.write_text(policy)
    verifier = TokenVerifier([WatchedFile(secret_file, load_secret, check_interval_s=0.0)], TokenSettings())
    authorizer = Authorizer(
        WatchedFile(policy_file, load_policy, check_interval_s=0.0).current, AuthMetrics(CollectorRegistry())
    )
    return await start_server(
        gateway,
        "127.0.0.1",
        0,
        metrics=ApiMetrics(CollectorRegistry()),
        admin=gateway,
        auth=ServerAuth(verifier, authorizer),
    )
