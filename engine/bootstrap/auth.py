"""Security from the settings: keys, the policy, the admin token and TLS (DESIGN.md §13).

Secure by default: with no key configured, the first start creates a random HS256 secret
at `<data_dir>/auth/signing.key` and an admin token at `<data_dir>/auth/admin.token`
(both 0600), and logs the token file's path (never the token). engine.json names the
token file, so the CLI, the demo and `LotwiseClient` find it. `auth = off` serves without
any check and says so in a warning at every start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog

from adapters.auth.files import (
    KeyFileError,
    VerificationKey,
    WatchedFile,
    ensure_secret,
    load_policy,
    load_public_keys,
    load_secret,
    read_token_file,
    write_private,
)
from engine.api.auth import Authorizer, ServerAuth, TokenError, TokenSettings, TokenVerifier, mint_token
from engine.bootstrap.config import SettingsProblem
from engine.domain.grants import Policy, PolicyError, parse_policy
from engine.settings import Settings

log = structlog.get_logger("lotwise.auth")

ADMIN_SUBJECT = "admin"
ADMIN_GROUP = "admin"

# The policy when none is configured: roles ready to grant, and the admin group everywhere.
DEFAULT_POLICY: dict[str, object] = {
    "roles": {
        "admin": [
            "read",
            "read_cost",
            "reserve",
            "receive",
            "move",
            "adjust",
            "count",
            "admin",
            "approve_transfer",
            "plan",
            "approve_voucher",
            "post_voucher",
            "export_voucher",
        ],
        "reader": ["read"],
        "planner": ["read", "plan"],
        "clerk": ["read", "move", "count"],
        "site_manager": ["read", "read_cost", "reserve", "receive", "move", "adjust", "count", "approve_transfer"],
        "regional_manager": ["read", "read_cost", "approve_transfer"],
        "device": ["receive", "reserve", "move", "count"],
        "accountant": ["read_cost", "post_voucher", "export_voucher"],  # prepares, posts, exports
        "finance_reviewer": ["read_cost", "approve_voucher"],  # approves what others prepared
    },
    "grants": [{"group": ADMIN_GROUP, "role": "admin", "org": ""}],
}


@dataclass(frozen=True, slots=True)
class AuthRuntime:
    server: ServerAuth
    token_file: Path | None  # the admin token `up` wrote; None when tokens come from an outside issuer


def auth_dir(settings: Settings) -> Path:
    return settings.data_dir / "auth"


def start_auth(settings: Settings) -> AuthRuntime | None:
    """Keys, policy and the admin token; None (with a warning) when auth is off."""
    if not settings.auth:
        log.warning("authentication is OFF: anyone who reaches the port may read and change all stock (LOTWISE_AUTH)")
        return None
    secret_file = _secret_file(settings)
    key_files: list[WatchedFile[list[VerificationKey]]] = []
    try:
        if secret_file is not None:
            key_files.append(WatchedFile(secret_file, load_secret))
        if settings.auth_public_keys_file is not None:
            key_files.append(WatchedFile(settings.auth_public_keys_file, load_public_keys))
    except (OSError, KeyFileError) as exc:
        raise SettingsProblem("auth_secret_file / auth_public_keys_file", str(exc)) from None
    tokens = TokenSettings(audience=settings.auth_audience, issuer=settings.auth_issuer)
    verifier = TokenVerifier(key_files, tokens)
    authorizer = Authorizer(policy_source(settings))
    server = ServerAuth(verifier, authorizer, settings.auth_open_health, settings.auth_open_reflection)
    token_file = None
    if secret_file is not None:
        token_file = _ensure_admin_token(settings, key_files[0].current()[0].key, verifier, tokens)
        log.info(f"admin token: {token_file} (the CLI and LotwiseClient use it; see docs/security.md)")
    return AuthRuntime(server, token_file)


def _secret_file(settings: Settings) -> Path | None:
    """The configured secret, else the data dir's (created now) unless only public keys are configured."""
    if settings.auth_secret_file is not None:
        return settings.auth_secret_file
    if settings.auth_public_keys_file is not None:
        return None
    path = auth_dir(settings) / "signing.key"
    if ensure_secret(path):
        log.info("created a signing key", path=str(path))
    return path


def _ensure_admin_token(settings: Settings, secret: bytes, verifier: TokenVerifier, tokens: TokenSettings) -> Path:
    """Keep a token that still verifies (and has a month left); else write a new one."""
    path = auth_dir(settings) / "admin.token"
    try:
        principal = verifier.verify(read_token_file(path))
        if principal.expires_at - time.time() > 30 * 86_400 and ADMIN_GROUP in principal.groups:
            return path
    except (OSError, TokenError):
        pass
    token = mint_token(
        secret, ADMIN_SUBJECT, [ADMIN_GROUP], ttl_s=settings.auth_admin_token_days * 86_400.0, settings=tokens
    )
    write_private(path, token.encode() + b"\n")
    return path


MAX_TOKEN_TTL_S = 3650 * 86_400.0


def mint_for(settings: Settings, subject: str, groups: list[str], ttl_s: float) -> str:
    """A token for a person or a device, signed with the engine's HS256 secret (the file the
    settings name, else the one the first start created). SettingsProblem when there is none:
    tokens of an outside issuer are minted there."""
    if not subject or len(subject) > 256 or any(c.isspace() for c in subject):
        raise SettingsProblem("subject", f"must be 1..256 characters without spaces (got {subject!r})")
    if not 0 < ttl_s <= MAX_TOKEN_TTL_S:
        raise SettingsProblem("ttl", f"must be more than 0 and at most 3650 days (got {ttl_s:g} s)")
    path = settings.auth_secret_file or auth_dir(settings) / "signing.key"
    try:
        keys = load_secret(path.read_bytes(), path)
    except FileNotFoundError:
        raise SettingsProblem(
            "auth_secret_file", f"no signing key at {path}: start the engine once (`lotwise up`) or name the file"
        ) from None
    except OSError as exc:
        raise SettingsProblem("auth_secret_file", f"cannot read {path}: {exc.strerror or exc}") from None
    except KeyFileError as exc:
        raise SettingsProblem("auth_secret_file", str(exc)) from None
    tokens = TokenSettings(audience=settings.auth_audience, issuer=settings.auth_issuer)
    return mint_token(keys[0].key, subject, groups, ttl_s=ttl_s, settings=tokens)


def policy_source(settings: Settings) -> Callable[[], Policy]:
    """The policy file, watched (reloaded when it changes), or the default policy."""
    path = settings.auth_policy
    if path is None:
        return _Fixed(parse_policy(DEFAULT_POLICY, "default"))
    try:
        return WatchedFile(path, load_policy).current
    except OSError as exc:
        raise SettingsProblem("auth_policy", f"cannot read {path}: {exc.strerror or exc}") from None
    except PolicyError as exc:
        raise SettingsProblem("auth_policy", f"{path}: {exc}") from None


class _Fixed:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def __call__(self) -> Policy:
        return self.policy


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS on the gRPC port when a certificate is set; a client CA makes client certificates required."""
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        if settings.tls_client_ca_file is not None:
            raise SettingsProblem(
                "tls_client_ca_file", "client certificates need TLS: set tls_cert_file and tls_key_file"
            )
        return None
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise SettingsProblem("tls_cert_file", "TLS needs both tls_cert_file and tls_key_file")
    try:
        chain = settings.tls_cert_file.read_bytes()
        key = settings.tls_key_file.read_bytes()
        ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    except OSError as exc:
        raise SettingsProblem("tls_*_file", f"cannot read {exc.filename}: {exc.strerror}") from None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=ca, require_client_auth=ca is not None)
