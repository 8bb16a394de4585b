"""Envoy as Lotwise's HTTP/JSON gateway (gRPC-JSON transcoding of every method)."""
