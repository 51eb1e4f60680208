"""What both interceptors share: the `Handler` type and a copy of a grpc method handler with its behaviour
wrapped.

It also makes undecodable requests ordinary calls. grpc.aio deserializes a unary request before any
interceptor's wrapper runs, and an exception there becomes `UNKNOWN: Unexpected <class 'DecodeError'>…`
with a traceback in the log, uncounted by the metrics. So the deserializer never raises: it returns the
`UNDECODABLE` marker, and the behaviour each wrapper is given refuses the marker with INVALID_ARGUMENT.
That refusal runs inside the wrappers (telemetry counts and logs it) and before authentication, as a
decode failure would in any gRPC server.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import grpc

from videogen_server.api.status import malformed_request_status

if TYPE_CHECKING:
    # A grpc method handler of any message types (the interceptors see every method). Only for type
    # checking: grpc's classes are not subscriptable at run time.
    Handler = grpc.RpcMethodHandler[Any, Any]

Wrap = Callable[[Any], Any]
Context = grpc.aio.ServicerContext[Any, Any]


class _Undecodable:
    """Stands for a request message whose bytes did not decode."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<undecodable request>"


UNDECODABLE = _Undecodable()


class _SafeDeserializer:
    """A request deserializer that returns UNDECODABLE instead of raising."""

    __slots__ = ("_deserialize",)

    def __init__(self, deserialize: Callable[[bytes], Any]) -> None:
        self._deserialize = deserialize

    def __call__(self, data: bytes) -> Any:
        try:
            return self._deserialize(data)
        except Exception:  # DecodeError (bad UTF-8 in a string, nesting too deep, …) or any parser failure
            return UNDECODABLE


def _safe(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None or isinstance(deserialize, _SafeDeserializer):
        return deserialize
    return _SafeDeserializer(deserialize)


async def _refuse(context: Context) -> NoReturn:
    await context.abort_with_status(malformed_request_status())
    raise AssertionError("abort_with_status returned")  # it always raises AbortError


def _refusing_undecodable(behavior: Any, request_streaming: bool) -> Any:
    """`behavior`, refusing an undecodable request (or request message) with INVALID_ARGUMENT. Keeps the
    behaviour's kind (coroutine or async generator): the wrappers look at it."""
    if request_streaming:

        async def checked(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            async for request in requests:
                if request is UNDECODABLE:
                    await _refuse(context)
                yield request

        if inspect.isasyncgenfunction(behavior):

            async def stream_in_out(requests: Any, context: Context) -> AsyncIterator[Any]:
                async for response in behavior(checked(requests, context), context):
                    yield response

            return stream_in_out

        async def stream_in(requests: Any, context: Context) -> Any:
            return await behavior(checked(requests, context), context)

        return stream_in

    if inspect.isasyncgenfunction(behavior):

        async def stream_out(request: Any, context: Context) -> AsyncIterator[Any]:
            if request is UNDECODABLE:
                await _refuse(context)
            async for response in behavior(request, context):
                yield response

        return stream_out

    async def unary(request: Any, context: Context) -> Any:
        if request is UNDECODABLE:
            await _refuse(context)
        return await behavior(request, context)

    return unary


def rewrap(handler: Handler, *, unary: Wrap, stream: Wrap) -> Handler:
    """`handler` with its behaviour passed through `unary` (single response) or `stream` (streamed
    responses), keeping its response serializer; its request deserializer never raises (see above)."""
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler, unary),
        ("unary_stream", grpc.unary_stream_rpc_method_handler, stream),
        ("stream_unary", grpc.stream_unary_rpc_method_handler, unary),
        ("stream_stream", grpc.stream_stream_rpc_method_handler, stream),
    )
    for attribute, make, wrap in kinds:
        behavior = getattr(handler, attribute)
        if behavior is not None:
            wrapped: Handler = make(
                wrap(_refusing_undecodable(behavior, handler.request_streaming)),
                request_deserializer=_safe(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
            return wrapped
    return handler
