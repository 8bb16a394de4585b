"""Tokens and key files: HS256, PEM and JWKS public keys, rotation, the verification cache
re-checking `exp`, policy files kept when a reload is bad, token pickup by clients."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from adapters.auth.files import (
    KeyFileError,
    WatchedFile,
    load_policy,
    load_public_keys,
    load_secret,
    write_private,
)
from engine.api.auth import TokenError, TokenSettings, TokenVerifier, mint_token
from engine.endpoints import Endpoints, resolve_token, write_endpoints

SECRET = b"q" * 40
CLAIMS = {"sub": "ana", "groups": ["clerks"], "aud": "lotwise", "iss": "lotwise"}


def claims(**over: object) -> dict[str, object]:
    return {**CLAIMS, "exp": int(time.time()) + 600, **over}


def pem_of(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def verifier(path: Path, load: object) -> TokenVerifier:
    return TokenVerifier([WatchedFile(path, load, check_interval_s=0.0)], TokenSettings())  # type: ignore[arg-type]


def test_pem_keys_of_several_kinds_verify(tmp_path: Path) -> None:
    ec_key, ed_key = ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "keys.pem").write_bytes(pem_of(ec_key.public_key()) + pem_of(ed_key.public_key()))
    v = verifier(tmp_path / "keys.pem", load_public_keys)
    assert v.verify(jwt.encode(claims(), ec_key, algorithm="ES256")).subject == "ana"
    assert v.verify(jwt.encode(claims(sub="bo"), ed_key, algorithm="EdDSA")).groups == ("clerks",)
    with pytest.raises(TokenError) as err:  # an HS256 token cannot pass as a public-key one
        v.verify(mint_token(SECRET, "ana"))
    assert err.value.reason == "TOKEN_INVALID"


def test_jwks_keys_are_chosen_by_kid_and_rotate(tmp_path: Path) -> None:
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def jwks(*keys: tuple[str, ec.EllipticCurvePrivateKey]) -> str:
        out = []
        for kid, key in keys:
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "alg": "ES256", "use": "sig"})
        return json.dumps({"keys": out})

    path = tmp_path / "jwks.json"
    path.write_text(jwks(("k1", old), ("k2", new)))
    v = verifier(path, load_public_keys)
    old_token = jwt.encode(claims(), old, algorithm="ES256", headers={"kid": "k1"})
    new_token = jwt.encode(claims(), new, algorithm="ES256", headers={"kid": "k2"})
    assert v.verify(old_token).subject == v.verify(new_token).subject == "ana"
    time.sleep(0.01)  # a distinct mtime
    path.write_text(jwks(("k2", new)))  # k1 retired
    with pytest.raises(TokenError) as err:
        v.verify(old_token)  # cached before, refused now
    assert err.value.reason == "TOKEN_INVALID"
    assert v.verify(new_token).subject == "ana"


def test_a_cached_token_still_expires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_private(tmp_path / "k", SECRET)
    v = verifier(tmp_path / "k", load_secret)
    token = mint_token(SECRET, "ana", ttl_s=60)
    v.verify(token)
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(TokenError) as err:
        v.verify(token)
    assert err.value.reason == "TOKEN_EXPIRED"


@pytest.mark.parametrize(
    ("token_claims", "reason"),
    [
        ({"sub": ""}, "TOKEN_INVALID"),
        ({"groups": "admins"}, "TOKEN_INVALID"),
        ({"aud": "other"}, "TOKEN_WRONG_AUDIENCE"),
        ({"iss": "other"}, "TOKEN_WRONG_ISSUER"),
        ({"exp": int(time.time()) - 3600}, "TOKEN_EXPIRED"),
        ({"nbf": int(time.time()) + 3600}, "TOKEN_NOT_YET_VALID"),
    ],
)
def test_claims_are_checked(tmp_path: Path, token_claims: dict[str, object], reason: str) -> None:
    write_private(tmp_path / "k", SECRET)
    with pytest.raises(TokenError) as err:
        verifier(tmp_path / "k", load_secret).verify(jwt.encode(claims(**token_claims), SECRET, algorithm="HS256"))
    assert err.value.reason == reason


def test_key_files_are_checked(tmp_path: Path) -> None:
    (tmp_path / "short").write_bytes(b"too short")
    with pytest.raises(KeyFileError):
        WatchedFile(tmp_path / "short", load_secret)
    (tmp_path / "junk.pem").write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(KeyFileError):
        WatchedFile(tmp_path / "junk.pem", load_public_keys)


def test_a_bad_policy_reload_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[roles]\nr = ["read"]\n[[grants]]\nsubject = "a"\nrole = "r"\norg = ""\n')
    watched = WatchedFile(path, load_policy, check_interval_s=0.0)
    first = watched.current()
    time.sleep(0.01)
    path.write_text('[roles]\nr = ["fly"]\n')
    assert watched.current() is first
    time.sleep(0.01)
    path.write_text('[roles]\nr = ["read", "move"]\n')
    assert watched.current().version != first.version


def test_clients_pick_the_token_engine_json_names_for_that_engine_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOTWISE_TOKEN", raising=False)
    monkeypatch.delenv("LOTWISE_TOKEN_FILE", raising=False)
    write_private(tmp_path / "admin.token", b"tok-123\n")
    write_endpoints(tmp_path, Endpoints("127.0.0.1:50999", token_file=str(tmp_path / "admin.token")))
    assert resolve_token("127.0.0.1:50999", data_dir=tmp_path) == "tok-123"
    assert resolve_token("localhost:50999", data_dir=tmp_path) == "tok-123"
    assert resolve_token("10.0.0.7:50999", data_dir=tmp_path) == ""  # never sent elsewhere
    monkeypatch.setenv("LOTWISE_TOKEN", "from-env")
    assert resolve_token("127.0.0.1:50999", data_dir=tmp_path) == "from-env"
    assert resolve_token("x:1", token_file=tmp_path / "admin.token") == "tok-123"
