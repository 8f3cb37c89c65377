"""``python -m batchrunner.mock [options]``: the mock server in the foreground.

The same command as ``batchrunner mock-server`` (see :mod:`batchrunner.mock.cli`).
"""

from batchrunner.mock.cli import mock_server

if __name__ == "__main__":
    mock_server.main(prog_name="python -m batchrunner.mock")
