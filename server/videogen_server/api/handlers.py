"""One helper both interceptors share: a copy of a grpc method handler with its behaviour wrapped."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]

Wrap = Callable[[Any], Any]


def rewrap(handler: Handler, *, unary: Wrap, stream: Wrap) -> Handler:
    """`handler` with its behaviour passed through `unary` (single response) or `stream` (streamed
    responses), keeping its (de)serializers."""
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
                wrap(behavior),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            return wrapped
    return handler
