"""Shared test fixtures and helpers: repository paths, WSGI apps served on a port the kernel picks."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@contextlib.contextmanager
def serving(app: Any, *, port: int = 0) -> Iterator[str]:
    """Serve a WSGI app on loopback in a thread; yields its URL. Port 0 (the default) lets the kernel pick a free
    one, so no test depends on a fixed port being free."""
    server = make_server(LOOPBACK, port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{LOOPBACK}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def unused_port() -> int:
    """A port nothing listens on, for a test that must first see a server missing and then start it there: the kernel
    picks it (port 0) and the socket is closed at once, so connecting to it is refused until the server starts."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])
