"""The server interceptor that authenticates every VideoService call and maps its errors to statuses.

- The caller is authenticated (api/auth.py) before the handler runs; health and reflection are left alone.
- Domain errors, `errors.Unauthenticated` included, become their gRPC status with details (api/status.py).
  NotImplementedError (a method of a newer proto) becomes UNIMPLEMENTED. Any other exception becomes INTERNAL
  with a generic message: grpc.aio would otherwise send UNKNOWN with the exception's text to the caller.

Both jobs live in one interceptor on purpose: one wrapper per call (and per streamed message) instead of two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from videogen_server import errors
from videogen_server.api.auth import Authenticator, current_caller, enter_caller, is_open
from videogen_server.api.rewrap import rewrap
from videogen_server.api.status import internal_status, to_status, unimplemented_status

if TYPE_CHECKING:
    from videogen_server.api.rewrap import Handler

log = logging.getLogger(__name__)


async def _abort_for(
    context: grpc.aio.ServicerContext[Any, Any], exc: BaseException, on_store_unavailable: Callable[[], None]
) -> None:
    if isinstance(exc, errors.StoreUnavailable):
        on_store_unavailable()  # health looks at the store now, not at its next check
    if isinstance(exc, errors.VideogenError):
        await context.abort_with_status(to_status(exc))
    if isinstance(exc, NotImplementedError):
        await context.abort_with_status(unimplemented_status())
    log.error("unexpected error in %s", type(exc).__name__, exc_info=exc)
    await context.abort_with_status(internal_status())


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self, authenticator: Authenticator, *, on_store_unavailable: Callable[[], None] = lambda: None
    ) -> None:
        self._auth = authenticator
        self._on_store_unavailable = on_store_unavailable

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or is_open(handler_call_details.method):
            return handler
        caller = self._auth.caller(handler_call_details.invocation_metadata)
        return rewrap(
            handler,
            unary=lambda behavior: self._wrap_unary(behavior, caller),
            stream=lambda behavior: self._wrap_stream(behavior, caller),
        )

    def _wrap_unary(self, behavior: Any, caller: str | None) -> Any:
        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                token = enter_caller(caller)
                try:
                    return await behavior(request, context)
                finally:
                    current_caller.reset(token)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                await _abort_for(context, exc, self._on_store_unavailable)

        return unary

    def _wrap_stream(self, behavior: Any, caller: str | None) -> Any:
        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            try:
                # Not reset: a generator may be closed from another context, where a reset fails; the
                # call's task, and its context, end with the stream.
                enter_caller(caller)
                async for response in behavior(request, context):
                    yield response
            except (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                await _abort_for(context, exc, self._on_store_unavailable)

        return stream
