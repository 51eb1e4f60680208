"""The server interceptor: caller authentication and error mapping for every VideoService RPC.

- Callers authenticate with `authorization: Bearer <key>` when keys are configured; the caller's name is
  available to handlers through `current_caller`. Health and reflection need no credentials.
- Domain errors become their gRPC status with details (api/status.py). Any other exception becomes INTERNAL
  with a generic message: grpc.aio would otherwise send UNKNOWN with the exception's text to the caller.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from google.rpc import code_pb2

from videogen_server import errors
from videogen_server.api.rewrap import rewrap
from videogen_server.api.status import internal_status, simple_status, to_status

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]

current_caller: contextvars.ContextVar[str] = contextvars.ContextVar("current_caller", default="")

# Methods under these prefixes are left alone: they must work without credentials.
_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class Authenticator:
    """Maps a bearer key to the caller's name, comparing in constant time. No keys: everyone is ""."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._keys = [(name, key.encode()) for name, key in keys.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def caller(self, metadata: Any) -> str | None:
        if not self._keys:
            return ""
        presented = b""
        for item in metadata or ():
            key, value = item[0], item[1]
            if key == "authorization":
                text = value.decode() if isinstance(value, bytes) else str(value)
                scheme, _, token = text.partition(" ")
                if scheme.lower() == "bearer":
                    presented = token.strip().encode()
                break
        found: str | None = None
        for name, key in self._keys:
            # Compare against every key, without stopping early, so timing reveals nothing.
            if hmac.compare_digest(presented, key) and found is None:
                found = name
        return found


async def _abort_for(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
    if isinstance(exc, errors.VideogenError):
        await context.abort_with_status(to_status(exc))
    log.error("unexpected error in %s", type(exc).__name__, exc_info=exc)
    await context.abort_with_status(internal_status())


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_OPEN_PREFIXES):
            return handler
        caller = self._auth.caller(handler_call_details.invocation_metadata)
        return rewrap(
            handler,
            unary=lambda behavior: self._wrap_unary(behavior, caller),
            stream=lambda behavior: self._wrap_stream(behavior, caller),
        )

    def _wrap_unary(self, behavior: Any, caller: str | None) -> Any:
        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if caller is None:
                await _unauthenticated(context)
            token = current_caller.set(caller or "")
            try:
                return await behavior(request, context)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                await _abort_for(context, exc)
            finally:
                current_caller.reset(token)

        return unary

    def _wrap_stream(self, behavior: Any, caller: str | None) -> Any:
        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            if caller is None:
                await _unauthenticated(context)
            current_caller.set(caller or "")
            try:
                async for response in behavior(request, context):
                    yield response
            except (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                await _abort_for(context, exc)

        return stream


async def _unauthenticated(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.abort_with_status(
        simple_status(
            code_pb2.UNAUTHENTICATED,
            "MISSING_OR_INVALID_CREDENTIALS",
            "send a valid key as 'authorization: Bearer <key>' metadata",
        )
    )
