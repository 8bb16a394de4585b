"""The common part of the clients of one lotwise.v1 service over a channel they do not own
(engine.api.history_client, engine.api.transfers_client): the caller's timeout and
metadata (its bearer token) on every call, and refusals raised as the typed exceptions of
engine.domain.errors (or RemoteError), as LotwiseClient raises them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from engine.api.errors import from_rpc_error

_Resp = TypeVar("_Resp")

DEFAULT_TIMEOUT_S = 10.0


class ServiceClient:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self._channel = channel
        self._timeout_s = timeout_s
        self._metadata = tuple(metadata)

    async def _call(self, method: Callable[..., Awaitable[_Resp]], request: Any) -> _Resp:
        """One call within the timeout; a refusal raised typed."""
        try:
            return await method(request, timeout=self._timeout_s, metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from err
