"""A tiny HTTP/JSON client for the tests: urllib in a thread, so the event loop that serves
the engine's gRPC server in the same process keeps running while a request waits."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

# Never through a proxy the environment may name: the gateway is on 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)


def _send(url: str, method: str, body: Any, token: str | None, timeout_s: float) -> Answer:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout_s) as r:
            return Answer(int(r.status), r.read(), r.headers.get("content-type", ""))
    except urllib.error.HTTPError as e:
        return Answer(int(e.code), e.read(), e.headers.get("content-type", ""))


async def http(
    base: str, method: str, path: str, body: Any = None, *, token: str | None = None, timeout_s: float = 30.0
) -> Answer:
    return await asyncio.to_thread(_send, base + path, method, body, token, timeout_s)
