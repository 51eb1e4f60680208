"""Runway adapter: httpx client, wire format, retries. No gRPC here."""

from videogen_server.providers.runway.client import OutputStream, RunwayClient
from videogen_server.providers.runway.retry import RetryPolicy
from videogen_server.providers.runway.wire import CreatedTask

__all__ = ["CreatedTask", "OutputStream", "RetryPolicy", "RunwayClient"]
