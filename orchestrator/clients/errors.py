"""What a client raises when its server cannot answer, whatever library it speaks through."""
from __future__ import annotations


class BackendUnavailable(ConnectionError):
    """The server is down or unreachable (connection refused, gRPC UNAVAILABLE)."""


class BackendTimeout(TimeoutError):
    """The server did not answer in time (gRPC DEADLINE_EXCEEDED, socket timeout)."""
