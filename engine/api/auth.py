"""Authentication and the principal of a call (DESIGN.md §13).

`AuthInterceptor` reads the bearer token from the call's metadata, verifies it once
(`TokenVerifier`: signature, exp, nbf, aud, iss; cached with exp re-checked on every hit)
and puts the caller's `Principal` in a ContextVar for the servicers and the authorizing
gateway (engine.api.authz) to check resources against. Missing or bad credentials are
refused UNAUTHENTICATED with an ErrorInfo reason (TOKEN_MISSING, TOKEN_EXPIRED, ...).

It is the outermost interceptor, before the admission door: refusing a call without a
valid token costs a dict lookup (a cached token) or one signature check, never a slot of
the door, a request decode or a log line at info — so a flood of unauthenticated calls
cannot crowd out the callers the door is there to serve.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
import jwt
import structlog
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from adapters.auth.files import VerificationKey, WatchedFile
from engine.api.errors import ERROR_DOMAIN
from engine.api.gen.lotwise.v1 import identity_pb2 as ipb
from engine.domain.grants import (
    AccessDenied,
    Action,
    Permissions,
    Policy,
    compile_permissions,
)

log = structlog.get_logger("lotwise.auth")

TOKEN_MISSING = "TOKEN_MISSING"
TOKEN_EXPIRED = "TOKEN_EXPIRED"
TOKEN_NOT_YET_VALID = "TOKEN_NOT_YET_VALID"
TOKEN_WRONG_AUDIENCE = "TOKEN_WRONG_AUDIENCE"
TOKEN_WRONG_ISSUER = "TOKEN_WRONG_ISSUER"
TOKEN_INVALID = "TOKEN_INVALID"  # malformed, bad signature, unknown key, missing claim

MAX_TOKEN_CHARS = 8_192
TOKEN_CACHE_MAX = 10_000  # verified tokens remembered (LRU)
REFUSED_CACHE_MAX = 1_024  # bad tokens remembered, so a replayed one costs no signature check
MAX_GROUPS = 256


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's `sub` and `groups`. `permissions` is filled by the Authorizer."""

    subject: str
    groups: tuple[str, ...] = ()
    expires_at: float = 0.0
    permissions: Permissions | None = field(default=None, compare=False)


# The caller of the RPC being served; None outside a call (ingestion, the engine itself)
# and when authentication is off.
PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("lotwise_principal", default=None)


class TokenError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class TokenSettings:
    audience: str = "lotwise"
    issuer: str = "lotwise"
    leeway_s: float = 30.0  # clock skew between the issuer and us


class TokenVerifier:
    """Verifies bearer tokens against the keys of one or more watched files."""

    def __init__(self, key_files: Iterable[WatchedFile[list[VerificationKey]]], settings: TokenSettings) -> None:
        self._files = tuple(key_files)
        self._settings = settings
        self._ok: OrderedDict[str, tuple[Principal, float, float, tuple[int, ...]]] = OrderedDict()
        self._refused: OrderedDict[str, tuple[TokenError, tuple[int, ...]]] = OrderedDict()

    def _keys(self) -> tuple[list[VerificationKey], tuple[int, ...]]:
        keys: list[VerificationKey] = []
        for f in self._files:
            keys.extend(f.current())
        return keys, tuple(f.version for f in self._files)

    def verify(self, token: str) -> Principal:
        keys, version = self._keys()
        hit = self._ok.get(token)
        now = time.time()
        leeway = self._settings.leeway_s
        if hit is not None and hit[3] == version:  # a rotated key file re-verifies everything
            principal, exp, nbf, _ = hit
            if now > exp + leeway:
                raise TokenError(TOKEN_EXPIRED, "the token has expired")
            if now < nbf - leeway:
                raise TokenError(TOKEN_NOT_YET_VALID, "the token is not valid yet")
            self._ok.move_to_end(token)
            return principal
        refused = self._refused.get(token)
        if refused is not None and refused[1] == version:
            raise refused[0]
        try:
            principal, exp, nbf = self._decode(token, keys)
        except TokenError as err:
            if err.reason in (TOKEN_INVALID, TOKEN_WRONG_AUDIENCE, TOKEN_WRONG_ISSUER):  # time does not cure these
                _put(self._refused, token, (err, version), REFUSED_CACHE_MAX)
            raise
        _put(self._ok, token, (principal, exp, nbf, version), TOKEN_CACHE_MAX)
        return principal

    def _decode(self, token: str, keys: list[VerificationKey]) -> tuple[Principal, float, float]:
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError(TOKEN_INVALID, f"the token is longer than {MAX_TOKEN_CHARS} characters")
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
        except jwt.DecodeError:
            raise TokenError(TOKEN_INVALID, "the token is not a JWT") from None
        candidates = [k for k in keys if not kid or not k.kid or k.kid == kid]
        if not candidates:
            raise TokenError(TOKEN_INVALID, "the token's signing key is unknown")
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=list(key.algorithms),
                    audience=self._settings.audience,
                    issuer=self._settings.issuer,
                    leeway=self._settings.leeway_s,
                    options={"require": ["exp", "sub", "aud", "iss"]},
                )
            except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError, jwt.InvalidKeyError):
                continue
            except jwt.PyJWTError as exc:
                raise _token_error(exc) from None
            return _principal(claims), float(claims["exp"]), float(claims.get("nbf", 0))
        raise TokenError(TOKEN_INVALID, "the token's signature does not verify")


def _token_error(exc: jwt.PyJWTError) -> TokenError:
    match exc:
        case jwt.ExpiredSignatureError():
            return TokenError(TOKEN_EXPIRED, "the token has expired")
        case jwt.ImmatureSignatureError():
            return TokenError(TOKEN_NOT_YET_VALID, "the token is not valid yet")
        case jwt.InvalidAudienceError():
            return TokenError(TOKEN_WRONG_AUDIENCE, "the token is for another audience")
        case jwt.InvalidIssuerError():
            return TokenError(TOKEN_WRONG_ISSUER, "the token is from another issuer")
    return TokenError(TOKEN_INVALID, f"the token is invalid ({type(exc).__name__})")


def _principal(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    groups = claims.get("groups", [])
    if not isinstance(sub, str) or not sub:
        raise TokenError(TOKEN_INVALID, "the token's sub must be a non-empty string")
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS or not all(isinstance(g, str) for g in groups):
        raise TokenError(TOKEN_INVALID, f"the token's groups must be a list of at most {MAX_GROUPS} strings")
    return Principal(sub, tuple(groups), float(claims["exp"]))


def _put(cache: OrderedDict[str, Any], key: str, value: Any, bound: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > bound:
        cache.popitem(last=False)


def mint_token(
    secret: bytes,
    subject: str,
    groups: Iterable[str] = (),
    *,
    ttl_s: float = 3600.0,
    settings: TokenSettings = TokenSettings(),
    not_before: float | None = None,
) -> str:
    """An HS256 token the engine accepts (the admin token, tests, scripts)."""
    now = time.time()
    claims = {
        "sub": subject,
        "groups": list(groups),
        "aud": settings.audience,
        "iss": settings.issuer,
        "iat": int(now),
        "nbf": int(now if not_before is None else not_before),
        "exp": int(now + ttl_s),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


# ---- authorization state ---------------------------------------------------------------


class AuthMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.unauthenticated = Counter(
            "lotwise_auth_unauthenticated", "calls refused UNAUTHENTICATED, by reason", ("reason",), registry=registry
        )
        self.denied = Counter(
            "lotwise_auth_denied", "calls refused PERMISSION_DENIED, by action", ("action",), registry=registry
        )


@functools.cache
def default_auth_metrics() -> AuthMetrics:
    return AuthMetrics(REGISTRY)


PERMISSIONS_CACHE_MAX = 10_000


class Authorizer:
    """The current policy, compiled per principal (cached by subject, groups and policy version)."""

    def __init__(self, policy: Callable[[], Policy], metrics: AuthMetrics | None = None) -> None:
        self._policy = policy
        self.metrics = self._metrics = metrics or default_auth_metrics()
        self._compiled: dict[tuple[str, tuple[str, ...], str], Permissions] = {}

    def permissions(self, principal: Principal) -> Permissions:
        policy = self._policy()
        key = (principal.subject, principal.groups, policy.version)
        found = self._compiled.get(key)
        if found is None:
            if len(self._compiled) >= PERMISSIONS_CACHE_MAX:
                self._compiled.clear()  # bounded; old versions' entries go with it
            found = self._compiled[key] = compile_permissions(policy, principal.subject, principal.groups)
        return found

    def denied(self, principal: Principal, action: Action, resource: str) -> AccessDenied:
        """Count and log a denial; the caller raises what this returns."""
        name = (action.name or str(action.value)).lower()
        self._metrics.denied.labels(name).inc()
        log.info("permission denied", subject=principal.subject, action=name, resource=resource)
        return AccessDenied(name, resource)


# ---- the interceptor -------------------------------------------------------------------

OPEN_HEALTH = (f"/{health.SERVICE_NAME}/",)
OPEN_REFLECTION = (f"/{reflection.SERVICE_NAME}/", "/grpc.reflection.v1.ServerReflection/")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call but the `open_prefixes` (health, reflection) from its
    `authorization: Bearer <jwt>` metadata, and sets PRINCIPAL for the handler."""

    def __init__(
        self,
        verifier: TokenVerifier,
        authorizer: Authorizer,
        open_prefixes: tuple[str, ...] = OPEN_HEALTH + OPEN_REFLECTION,
        metrics: AuthMetrics | None = None,
    ) -> None:
        self._verifier = verifier
        self._authorizer = authorizer
        self._open = open_prefixes
        self._metrics = metrics or default_auth_metrics()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        if method.startswith(self._open):
            return await continuation(handler_call_details)
        try:
            principal = self._verifier.verify(_bearer(handler_call_details.invocation_metadata))
        except TokenError as err:
            self._metrics.unauthenticated.labels(err.reason).inc()
            log.debug("unauthenticated", method=method, reason=err.reason)
            handler = await continuation(handler_call_details)
            return None if handler is None else _refusing(handler, _unauthenticated(err))
        principal = Principal(
            principal.subject, principal.groups, principal.expires_at, self._authorizer.permissions(principal)
        )
        # The handler runs in this same task (grpc.aio awaits the interceptors, then the
        # behaviour, in one coroutine), so what is set here is what the servicer reads.
        PRINCIPAL.set(principal)
        return await continuation(handler_call_details)


def _bearer(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise TokenError(TOKEN_INVALID, "the authorization metadata must be 'Bearer <token>'")
            return token.strip()
    raise TokenError(TOKEN_MISSING, "this call needs 'authorization: Bearer <token>' metadata")


def _unauthenticated(err: TokenError) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN)
    status = status_pb2.Status(code=grpc.StatusCode.UNAUTHENTICATED.value[0], message=err.message)
    status.details.add().Pack(info)
    return rpc_status.to_status(status)


def _refusing(handler: grpc.RpcMethodHandler[Any, Any], status: grpc.Status) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same kind as `handler` that answers `status` without reading the request."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort_with_status(status)

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(refuse)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(refuse)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(refuse)
    return grpc.stream_stream_rpc_method_handler(refuse)


def current_principal() -> Principal | None:
    return PRINCIPAL.get()


@dataclass(frozen=True, slots=True)
class ServerAuth:
    """What the server needs to authenticate and authorize (built by engine.bootstrap.auth)."""

    verifier: TokenVerifier
    authorizer: Authorizer
    open_health: bool = True  # load-balancer probes without credentials
    open_reflection: bool = True  # `grpcurl list/describe` without credentials

    def interceptor(self) -> AuthInterceptor:
        open_prefixes = (OPEN_HEALTH if self.open_health else ()) + (OPEN_REFLECTION if self.open_reflection else ())
        return AuthInterceptor(self.verifier, self.authorizer, open_prefixes, self.authorizer.metrics)


class IdentityServicer:
    """lotwise.v1.Identity: the caller as the engine sees it (engine.api.gen identity.proto)."""

    def __init__(self, auth: bool) -> None:
        self._auth = auth

    async def WhoAmI(self, request: ipb.WhoAmIRequest, context: grpc.aio.ServicerContext) -> ipb.WhoAmIResponse:
        principal = PRINCIPAL.get()
        if not self._auth or principal is None or principal.permissions is None:
            return ipb.WhoAmIResponse(auth=self._auth)
        scopes = [ipb.ScopeSummary(scope=s, actions=a) for s, a in principal.permissions.summary()]
        return ipb.WhoAmIResponse(subject=principal.subject, groups=list(principal.groups), auth=True, scopes=scopes)
