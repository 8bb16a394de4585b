"""Key, token and policy files (engine.api.auth verifies with what these load).

Every file is re-read when it changes (its mtime, size or inode), checked at most once a
`check_interval_s`, so keys rotate and policies change without a restart: an operator
replaces the file (atomically: write then rename) and the next check picks it up. A file
that turns unreadable or invalid keeps the last good contents and logs why.

Secrets are written 0600 and never logged.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import jwt
import structlog
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from engine.domain.grants import Policy, PolicyError, parse_policy

log = structlog.get_logger("lotwise.auth")

MAX_KEYS = 32  # keys tried for a token without `kid`, at most
MAX_FILE_BYTES = 64 * 1024 * 1024  # a 100,000-grant policy is ~10 MB
MIN_SECRET_BYTES = 32  # HS256 with less is guessable (RFC 7518 §3.2)

_T = TypeVar("_T")


class KeyFileError(ValueError):
    """A key file that cannot be used; names the file and why (never its contents)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class VerificationKey:
    kid: str  # "" when the file gives none (PEM, a bare secret)
    key: Any  # bytes for HS256, a cryptography public key otherwise
    algorithms: tuple[str, ...]


class WatchedFile(Generic[_T]):
    """A file parsed by `load`, re-parsed when it changes. `version` grows on every reload."""

    def __init__(self, path: Path, load: Callable[[bytes, Path], _T], check_interval_s: float = 1.0) -> None:
        self.path = path
        self._load = load
        self._interval_s = check_interval_s
        self._stamp = _stamp(path)
        self.value: _T = load(_read(path), path)  # the first load fails loudly: a bad start stops start-up
        self.version = 1
        self._next_check = time.monotonic() + check_interval_s

    def current(self) -> _T:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self._interval_s
            self._maybe_reload()
        return self.value

    def _maybe_reload(self) -> None:
        try:
            stamp = _stamp(self.path)
            if stamp == self._stamp:
                return
            value = self._load(_read(self.path), self.path)
        except (OSError, ValueError) as exc:
            log.warning("auth file unusable, keeping the last good one", path=str(self.path), error=str(exc))
            return
        self.value, self._stamp = value, stamp
        self.version += 1
        log.info("auth file reloaded", path=str(self.path), version=self.version)


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read(path: Path) -> bytes:
    with path.open("rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise KeyFileError(path, f"larger than {MAX_FILE_BYTES} bytes")
    return data


# ---- keys ------------------------------------------------------------------------------


def load_secret(data: bytes, path: Path) -> list[VerificationKey]:
    """An HS256 shared secret: the file's bytes, surrounding whitespace stripped."""
    secret = data.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise KeyFileError(path, f"an HS256 secret needs at least {MIN_SECRET_BYTES} bytes")
    return [VerificationKey("", secret, ("HS256",))]


def load_public_keys(data: bytes, path: Path) -> list[VerificationKey]:
    """Public keys: a JWKS document (`{"keys": [...]}`) or one or more PEM public keys."""
    text = data.decode("utf-8", errors="replace").strip()
    keys = _jwks(text, path) if text.startswith("{") else _pems(text, path)
    if not keys:
        raise KeyFileError(path, "no public key in it")
    if len(keys) > MAX_KEYS:
        raise KeyFileError(path, f"at most {MAX_KEYS} keys")
    return keys


def _jwks(text: str, path: Path) -> list[VerificationKey]:
    try:
        keyset = jwt.PyJWKSet.from_json(text)
    except (jwt.PyJWKSetError, jwt.InvalidKeyError, ValueError) as exc:
        raise KeyFileError(path, f"not a usable JWKS ({exc})") from None
    out = []
    for k in keyset.keys:
        if k.key_type == "oct":
            continue  # a JWKS publishes public keys; a shared secret does not belong in one
        out.append(VerificationKey(k.key_id or "", k.key, (k.algorithm_name,)))
    return out


_PEM_END = "-----END PUBLIC KEY-----"


def _pems(text: str, path: Path) -> list[VerificationKey]:
    out = []
    for block in text.split(_PEM_END):
        if "-----BEGIN PUBLIC KEY-----" not in block:
            continue
        try:
            key = load_pem_public_key((block.strip() + "\n" + _PEM_END + "\n").encode())
        except ValueError as exc:
            raise KeyFileError(path, f"not a PEM public key ({exc})") from None
        out.append(VerificationKey("", key, _algorithms_of(key, path)))
    return out


def _algorithms_of(key: Any, path: Path) -> tuple[str, ...]:
    if isinstance(key, rsa.RSAPublicKey):
        return ("RS256", "RS384", "RS512", "PS256")
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": ("ES256",), "secp384r1": ("ES384",), "secp521r1": ("ES512",)}.get(key.curve.name, ())
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ("EdDSA",)
    raise KeyFileError(path, f"unsupported key type {type(key).__name__}")


# ---- policy ----------------------------------------------------------------------------


def load_policy(data: bytes, path: Path) -> Policy:
    """A policy file: TOML, or JSON when it ends in .json. Problems name the key."""
    try:
        doc = json.loads(data) if path.suffix == ".json" else tomllib.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise PolicyError("<file>", f"{path}: cannot parse ({exc})") from None
    return parse_policy(doc, version=f"{path.name}@{time.time_ns()}")


# ---- writing secrets -------------------------------------------------------------------


def write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600 (the file never exists with wider permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_secret(path: Path) -> bool:
    """Create a random HS256 signing secret at `path` unless one exists; True when created."""
    if path.exists():
        return False
    write_private(path, secrets.token_hex(32).encode() + b"\n")
    return True


def read_token_file(path: Path) -> str:
    """A bearer token from a file (surrounding whitespace stripped)."""
    return path.read_text(encoding="utf-8").strip()
