"""The two ways to send a request, behind one small protocol.

``http`` posts the body as it is and keeps the raw JSON answer; ``sdk`` goes through the
official ``mistralai`` SDK. Both return :class:`Success` or a
:class:`~batchrunner.clients.classify.Failure` classified the same way, and neither raises for an
ordinary failed request.

May import: ``config``, ``errors``, ``vocabulary``.
"""

from __future__ import annotations

from batchrunner.clients.base import Client
from batchrunner.config import ClientKind

__all__ = ["Client", "make_client"]


def make_client(
    kind: ClientKind, server_url: str, api_key: str | None, timeout: float, concurrency: int
) -> Client:
    """The client ``kind`` names, sized for ``concurrency`` connections."""
    if kind == "sdk":
        from batchrunner.clients.sdk import SdkClient

        return SdkClient(server_url, api_key, timeout, concurrency)
    from batchrunner.clients.http import HttpClient

    return HttpClient(server_url, api_key, timeout, concurrency)
