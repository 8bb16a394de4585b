"""Registering a gRPC service so that bytes which do not decode are the caller's mistake.

The generated `add_XServicer_to_server` functions decode inside gRPC: a request that does not
parse (invalid UTF-8 in a string, a truncated field) is answered UNKNOWN with a Python class
name. `add_service` registers the same methods with lenient decoders (`batch.lenient`) and
answers such a request INVALID_ARGUMENT with ErrorInfo MALFORMED_REQUEST before the method
runs — for unary methods at once, for streamed requests when the bad message arrives. One
mechanism for every service (Inventory, Admin, History).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

import grpc

from engine.api.batch import Undecodable, lenient

Behavior = Callable[..., Any]
Context = grpc.aio.ServicerContext[Any, Any]
# gRPC's handler constructor for each (client streams, server streams) shape.
_HANDLER = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_service(messages: ModuleType, service: str, servicer: object, server: grpc.aio.Server) -> str:
    """Register `servicer`'s methods of `service` (described in the `messages` _pb2 module);
    returns the service's full name (for health and reflection)."""
    descriptor = messages.DESCRIPTOR.services_by_name[service]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in descriptor.methods:
        decode = lenient(getattr(messages, method.input_type.name))
        encode = getattr(messages, method.output_type.name).SerializeToString
        behavior = getattr(servicer, method.name)
        if method.client_streaming:
            guarded = _checking_stream(behavior)
            make = (
                grpc.stream_stream_rpc_method_handler
                if method.server_streaming
                else grpc.stream_unary_rpc_method_handler
            )
        else:
            guarded = _checking_unary(behavior)
            make = (
                grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
            )
        handlers[method.name] = make(guarded, request_deserializer=decode, response_serializer=encode)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(descriptor.full_name, handlers),))
    server.add_registered_method_handlers(descriptor.full_name, handlers)  # as the generated code does
    return str(descriptor.full_name)


def _checking_unary(behavior: Behavior) -> Behavior:
    if inspect.isasyncgenfunction(behavior):  # a server-streaming method written as a generator

        async def stream_out(request: Any, context: Context) -> AsyncIterator[Any]:
            if isinstance(request, Undecodable):
                await context.abort_with_status(request.status())
            async for reply in behavior(request, context):
                yield reply

        return stream_out

    async def unary(request: Any, context: Context) -> Any:
        if isinstance(request, Undecodable):
            await context.abort_with_status(request.status())
        return await behavior(request, context)

    return unary


def _checking_stream(behavior: Behavior) -> Behavior:
    async def checked(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, Undecodable):
                await context.abort_with_status(request.status())
            yield request

    if inspect.isasyncgenfunction(behavior):

        async def stream_out(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async for reply in behavior(checked(requests, context), context):
                yield reply

        return stream_out

    async def stream_in(requests: AsyncIterator[Any], context: Context) -> Any:
        return await behavior(checked(requests, context), context)

    return stream_in
