"""Runway adapter: the VideoProvider on Runway (provider.py), composed of the model catalog (data), the
mapping of a GenerateSpec to Runway's body, the /v1 client, the output downloads, the wire format, retries
and the circuit breaker. No gRPC here."""

from videogen_server.providers.runway.api import RunwayClient
from videogen_server.providers.runway.downloads import OutputDownloads, OutputStream
from videogen_server.providers.runway.provider import RunwayProvider
from videogen_server.providers.runway.retry import RetryPolicy
from videogen_server.providers.runway.wire import CreatedTask

__all__ = ["CreatedTask", "OutputDownloads", "OutputStream", "RetryPolicy", "RunwayClient", "RunwayProvider"]
