#!/usr/bin/env python3
"""Write the OpenAPI 3 document of Lotwise's HTTP/JSON API from the descriptor set.

    scripts/gen_openapi.py engine/api/gen/lotwise_descriptor.pb engine/api/gen/openapi.json

Every method of every lotwise.v1 service gets its auto-mapped route
(`POST /lotwise.v1.<Service>/<Method>`, the whole request as the JSON body) and, when its
proto names one, its REST route from the `google.api.http` annotation (path fields from
the URL; the other fields from the body, or from the query string for GET). Schemas follow
the proto3 JSON mapping as Envoy's transcoder prints it (proto field names, 64-bit
integers as strings, enums by name, every field printed). Descriptions are the protos'
comments. Deterministic: sorted keys, no timestamps (scripts/check_protos.sh diffs it).

No OpenAPI generator for protos installs from PyPI (protoc-gen-openapiv2 is Go), so this
small one reads the descriptor set Envoy loads: the document and the gateway cannot drift.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

FDP = descriptor_pb2.FieldDescriptorProto
PACKAGE = "lotwise.v1"
TITLE = "Lotwise HTTP/JSON API"
VERSION = "v1"

# proto3 JSON mapping (https://protobuf.dev/programming-guides/json/).
_SCALARS: dict[int, dict[str, Any]] = {
    FDP.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FDP.TYPE_FLOAT: {"type": "number", "format": "float"},
    FDP.TYPE_INT64: {"type": "string", "format": "int64"},
    FDP.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FDP.TYPE_SINT64: {"type": "string", "format": "int64"},
    FDP.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    FDP.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    FDP.TYPE_INT32: {"type": "integer", "format": "int32"},
    FDP.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    FDP.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FDP.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    FDP.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FDP.TYPE_BOOL: {"type": "boolean"},
    FDP.TYPE_STRING: {"type": "string"},
    FDP.TYPE_BYTES: {"type": "string", "format": "byte"},
}

# Envoy's transcoder answers a gRPC error with this HTTP status (docs/http.md has the table).
ERROR_STATUSES = {
    "400": "INVALID_ARGUMENT (google.rpc.BadRequest field violations), FAILED_PRECONDITION or OUT_OF_RANGE",
    "401": "UNAUTHENTICATED: no token, or a bad one",
    "403": "PERMISSION_DENIED: the token's grants do not cover this",
    "404": "NOT_FOUND (google.rpc.ResourceInfo)",
    "409": "ALREADY_EXISTS or ABORTED (google.rpc.ErrorInfo)",
    "429": "RESOURCE_EXHAUSTED (google.rpc.RetryInfo): the engine is overloaded",
    "503": "UNAVAILABLE (google.rpc.RetryInfo): retry after the delay",
    "504": "DEADLINE_EXCEEDED: nothing was applied",
}


@dataclass(frozen=True, slots=True)
class Index:
    messages: dict[str, descriptor_pb2.DescriptorProto]
    enums: dict[str, descriptor_pb2.EnumDescriptorProto]
    comments: dict[tuple[str, tuple[int, ...]], str]  # (file, location path) -> leading comment
    where: dict[str, tuple[str, tuple[int, ...]]]  # full type name -> (file, path)


def load(path: Path) -> tuple[descriptor_pb2.FileDescriptorSet, Index]:
    assert annotations_pb2.http  # registers the extension before parsing
    fds = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    index = Index({}, {}, {}, {})
    for f in fds.file:
        for loc in f.source_code_info.location:
            if loc.leading_comments:
                index.comments[(f.name, tuple(loc.path))] = _clean(loc.leading_comments)
        for i, m in enumerate(f.message_type):
            _index_message(index, f.name, f".{f.package}", m, (4, i))
        for i, e in enumerate(f.enum_type):
            name = f".{f.package}.{e.name}"
            index.enums[name] = e
            index.where[name] = (f.name, (5, i))
    return fds, index


def _index_message(
    index: Index, file: str, scope: str, m: descriptor_pb2.DescriptorProto, path: tuple[int, ...]
) -> None:
    name = f"{scope}.{m.name}"
    index.messages[name] = m
    index.where[name] = (file, path)
    for j, nested in enumerate(m.nested_type):
        _index_message(index, file, name, nested, (*path, 3, j))
    for j, e in enumerate(m.enum_type):
        index.enums[f"{name}.{e.name}"] = e
        index.where[f"{name}.{e.name}"] = (file, (*path, 4, j))


def _clean(comment: str) -> str:
    return "\n".join(line.strip() for line in comment.strip().splitlines())


def _ref(type_name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{type_name.lstrip('.')}"}


class Builder:
    def __init__(self, index: Index) -> None:
        self.index = index
        self.schemas: dict[str, Any] = {}

    def comment(self, type_name: str, *sub: int) -> str:
        file, path = self.index.where[type_name]
        return self.index.comments.get((file, (*path, *sub)), "")

    def field_schema(self, f: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        if f.type == FDP.TYPE_MESSAGE:
            entry = self.index.messages[f.type_name]
            if entry.options.map_entry:
                return {"type": "object", "additionalProperties": self.field_schema(entry.field[1])}
            self.message(f.type_name)
            one: dict[str, Any] = _any_schema() if f.type_name == ".google.protobuf.Any" else _ref(f.type_name)
        elif f.type == FDP.TYPE_ENUM:
            self.enum(f.type_name)
            one = _ref(f.type_name)
        else:
            one = dict(_SCALARS[f.type])
        if f.label == FDP.LABEL_REPEATED:
            return {"type": "array", "items": one}
        return one

    def message(self, type_name: str) -> None:
        key = type_name.lstrip(".")
        if key in self.schemas or type_name == ".google.protobuf.Any":
            return
        m = self.index.messages[type_name]
        schema: dict[str, Any] = {"type": "object", "properties": {}}
        self.schemas[key] = schema  # before the fields: messages may refer to themselves
        if text := self.comment(type_name):
            schema["description"] = text
        for i, f in enumerate(m.field):
            prop = self.field_schema(f)
            if text := self.comment(type_name, 2, i):
                prop = {"allOf": [prop], "description": text} if "$ref" in prop else {**prop, "description": text}
            schema["properties"][f.name] = prop

    def enum(self, type_name: str) -> None:
        key = type_name.lstrip(".")
        if key in self.schemas:
            return
        e = self.index.enums[type_name]
        schema: dict[str, Any] = {"type": "string", "enum": [v.name for v in e.value]}
        if text := self.comment(type_name):
            schema["description"] = text
        self.schemas[key] = schema


def _any_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
        "description": "A google.protobuf.Any: `@type` names the message, its fields follow.",
    }


def _error_responses() -> dict[str, Any]:
    return {code: {"$ref": f"#/components/responses/error{code}"} for code in ERROR_STATUSES}


def _error_components() -> dict[str, Any]:
    status = {"application/json": {"schema": _ref("google.rpc.Status")}}
    return {f"error{code}": {"description": why, "content": status} for code, why in ERROR_STATUSES.items()}


def _path_fields(template: str) -> list[str]:
    return re.findall(r"\{([^}=]+)(?:=[^}]*)?\}", template)


def _query_parameters(b: Builder, request: str, skip: set[str]) -> list[dict[str, Any]]:
    """GET routes take the request's other fields from the query string: scalars, repeated
    scalars and enums, and one level into nested messages (`filter.bin_prefix=A`)."""
    params: list[dict[str, Any]] = []
    for f in b.index.messages[request].field:
        if f.name in skip:
            continue
        if f.type == FDP.TYPE_MESSAGE:
            nested = b.index.messages[f.type_name]
            if nested.options.map_entry or f.label == FDP.LABEL_REPEATED:
                continue
            for g in nested.field:
                if g.type != FDP.TYPE_MESSAGE and f"{f.name}.{g.name}" not in skip:
                    params.append(_param(f"{f.name}.{g.name}", "query", b.field_schema(g), required=False))
            continue
        params.append(_param(f.name, "query", b.field_schema(f), required=False))
    return params


def _param(name: str, where: str, schema: dict[str, Any], *, required: bool) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "in": where, "required": required, "schema": schema}
    if schema.get("type") == "array":
        p["explode"] = True
    return p


def _operation(
    b: Builder, service: str, method: descriptor_pb2.MethodDescriptorProto, summary: str, op_id: str
) -> dict[str, Any]:
    b.message(method.input_type)
    b.message(method.output_type)
    response: dict[str, Any] = _ref(method.output_type)
    if method.server_streaming:
        response = {"type": "array", "items": response}
    op: dict[str, Any] = {
        "operationId": op_id,
        "tags": [service],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": response}}}},
    }
    op["responses"].update(_error_responses())
    if summary:
        op["description"] = summary
        op["summary"] = summary.split("\n", 1)[0]
    return op


def _body(b: Builder, method: descriptor_pb2.MethodDescriptorProto) -> dict[str, Any]:
    schema: dict[str, Any] = _ref(method.input_type)
    if method.client_streaming:
        schema = {"type": "array", "items": schema, "description": "The stream's messages, in order."}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _rest_route(
    b: Builder, paths: dict[str, Any], service: str, method: descriptor_pb2.MethodDescriptorProto, summary: str
) -> None:
    """The annotation's routes; a binding that repeats the auto-mapped path (protos spell it
    out, since Envoy auto-maps only methods without an annotation) is already there."""
    top: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]
    auto = f"/{PACKAGE}.{service}/{method.name}"
    for n, rule in enumerate([top, *top.additional_bindings]):
        verb = rule.WhichOneof("pattern")
        if verb is None or getattr(rule, verb) == auto:
            continue
        template = getattr(rule, verb)
        op = _operation(b, service, method, summary, f"{service}_{method.name}_rest{n or ''}")
        fields = _path_fields(template)
        op["parameters"] = [_param(name, "path", {"type": "string"}, required=True) for name in fields]
        if rule.body:
            op["requestBody"] = _body(b, method)
        elif verb == "get":
            op["parameters"] += _query_parameters(b, method.input_type, set(fields))
        url = re.sub(r"\{([^}=]+)(?:=[^}]*)?\}", r"{\1}", template)
        paths.setdefault(url, {})[verb] = op


def build(fds: descriptor_pb2.FileDescriptorSet, index: Index) -> dict[str, Any]:
    b = Builder(index)
    b.message(".google.rpc.Status")
    for name in (
        ".google.rpc.BadRequest",
        ".google.rpc.ErrorInfo",
        ".google.rpc.ResourceInfo",
        ".google.rpc.RetryInfo",
    ):
        b.message(name)
    paths: dict[str, Any] = {}
    tags = []
    for f in fds.file:
        if f.package != PACKAGE:
            continue
        for si, svc in enumerate(f.service):
            full = f"{PACKAGE}.{svc.name}"
            tags.append({"name": svc.name, "description": index.comments.get((f.name, (6, si)), full)})
            for mi, method in enumerate(svc.method):
                summary = index.comments.get((f.name, (6, si, 2, mi)), "")
                op = _operation(b, svc.name, method, summary, f"{svc.name}_{method.name}")
                op["requestBody"] = _body(b, method)
                paths[f"/{full}/{method.name}"] = {"post": op}
                _rest_route(b, paths, svc.name, method, summary)
    paths["/healthz"] = {
        "get": {
            "operationId": "healthz",
            "tags": ["Health"],
            "summary": "200 while the engine's gRPC server reports SERVING; 503 otherwise. No token needed.",
            "security": [],
            "responses": {"200": {"description": "serving"}, "503": {"description": "not serving"}},
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "tags": ["Health"],
            "summary": "This document. No token needed.",
            "security": [],
            "responses": {"200": {"description": "the OpenAPI document"}},
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Every gRPC method of Lotwise over HTTP/JSON (Envoy gRPC-JSON transcoder); docs/http.md.",
        },
        "tags": [
            *sorted(tags, key=lambda t: t["name"]),
            {"name": "Health", "description": "Probes and this document."},
        ],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": b.schemas,
            "responses": _error_components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    fds, index = load(Path(argv[1]))
    doc = build(fds, index)
    Path(argv[2]).write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
