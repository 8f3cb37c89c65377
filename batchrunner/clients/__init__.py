"""The two ways to send a request, behind one small protocol.

``http`` posts the body as it is and keeps the raw JSON answer; ``sdk`` goes through the
official ``mistralai`` SDK. Both return :class:`Success` or a
:class:`~batchrunner.clients.classify.Failure` classified the same way, and neither raises for an
ordinary failed request.
"""

from __future__ import annotations

from batchrunner.clients.base import Client, make_client

__all__ = ["Client", "make_client"]
