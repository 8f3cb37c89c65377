"""A real HTTP server that speaks the Mistral API, with injectable faults.

Use :func:`start_server` inside a running event loop, :func:`serve_forever` to
block, or ``python -m batchrunner.mock`` (the same command as ``batchrunner
mock-server``, :mod:`batchrunner.mock.cli`) as a subprocess: its first stdout line
is ``mock server listening on http://HOST:PORT``.

Scripted faults: put ``[[mock:429,500,timeout,reset,garbage,slow,quota,html]]`` in a
request's text; attempt k of that same request gets the k-th fault, later
attempts succeed. See :mod:`batchrunner.mock.faults`.

It also speaks the Files and Batch APIs (:mod:`batchrunner.mock.files`,
:mod:`batchrunner.mock.batch`): a job answers each line as the online endpoint
would (markers included) and can be told to end FAILED or TIMEOUT_EXCEEDED
half-way or to be slow to cancel, see :mod:`batchrunner.mock.jobfaults`.

May import: ``errors`` only; the server stands apart from the runner it tests.
"""

from batchrunner.mock.app import MockServer, start_server
from batchrunner.mock.catalog import MODEL_IDS
from batchrunner.mock.config import MockConfig, parse_error_rates
from batchrunner.mock.jobfaults import JobFaults, parse_job_faults
from batchrunner.mock.serve import serve_forever
from batchrunner.mock.stats import Stats

__all__ = [
    "MODEL_IDS",
    "JobFaults",
    "MockConfig",
    "MockServer",
    "Stats",
    "parse_error_rates",
    "parse_job_faults",
    "serve_forever",
    "start_server",
]
