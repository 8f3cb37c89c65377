"""The two ways to send a request, behind one small protocol.

``http`` posts the body as it is; ``sdk`` goes through the official ``mistralai`` SDK. Both
return a :class:`~batchrunner.vocabulary.Success` (the answer's raw JSON, kept as sent) or a
:class:`~batchrunner.vocabulary.Failure`, decided by the same functions of
:mod:`~batchrunner.clients.classify` from the same bytes, with the key taken out of both;
neither raises for an ordinary failed request. Both go through the proxy the environment names.

May import: ``config``, ``errors``, ``runfiles``, ``vocabulary``.
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
