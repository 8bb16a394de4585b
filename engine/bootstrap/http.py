"""The HTTP/JSON gateway from the settings: Envoy in front of the engine's gRPC port."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from engine.settings import Settings

if TYPE_CHECKING:
    from adapters.envoy.gateway import EnvoyGateway

log = structlog.get_logger("lotwise.app")

# Generated with the protos (scripts/gen_protos.sh) and committed: the gateway and the
# OpenAPI document describe the very same services.
GEN_DIR = Path(__file__).resolve().parents[1] / "api" / "gen"
DESCRIPTOR = GEN_DIR / "lotwise_descriptor.pb"
OPENAPI = GEN_DIR / "openapi.json"


class HttpGatewayError(RuntimeError):
    """The HTTP gateway could not start; the message says why and how to go without it."""


def http_skipped_because(settings: Settings) -> str:
    """Why this engine serves no HTTP/JSON ("" when it does)."""
    if not settings.http:
        return "off (LOTWISE_HTTP=off)"
    if settings.tls_cert_file is not None:
        # Envoy would need the gRPC port's trust chain and, with client CAs, a certificate of
        # its own; not wired yet, so say so instead of serving plaintext next to TLS.
        return "off: the gRPC port uses TLS, which the HTTP gateway does not speak yet (docs/http.md)"
    return ""


async def start_http_gateway(settings: Settings, grpc_port: int) -> EnvoyGateway:
    """Envoy on `settings.host:settings.http_port`, forwarding to the gRPC port; ready (its
    health check of the engine passed) when this returns."""
    from adapters.envoy.gateway import EnvoyConfig, EnvoyError, EnvoyGateway

    grpc_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    config = EnvoyConfig(
        data_dir=settings.data_dir / "envoy",
        grpc_host=grpc_host,
        grpc_port=grpc_port,
        descriptor=DESCRIPTOR,
        openapi=OPENAPI,
        host=settings.host,
        port=settings.http_port,
    )
    gateway = EnvoyGateway(config)
    try:
        await gateway.start()
    except EnvoyError as exc:
        lines = str(exc).splitlines()
        raise HttpGatewayError(
            f"the HTTP/JSON gateway (Envoy) could not start: {lines[0]}; LOTWISE_HTTP=off starts without it"
            + "".join(f"\n{line}" for line in lines[1:])
        ) from exc
    log.info("http gateway started", url=gateway.url, grpc=f"{grpc_host}:{grpc_port}")
    return gateway
