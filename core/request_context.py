"""The request id that follows one request through every process that works on it.

The gateway takes the id Ray Serve's proxy gave the HTTP request (so the proxy's access log,
the replica's log and ``x-amz-request-id`` name the same id), sets it here for the request's
task, and hands it on explicitly where work crosses a process: as a keyword to backend actor
calls, and in the payload of the jobs it enqueues, which agents set again while they run
them. Every log record made while an id is set carries it as ``request_id``
(``install_log_record_request_id``), which Ray's JSON log format writes out as a field.
Pure standard library: no framework, no I/O.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from collections.abc import Iterator
from typing import Any

__all__ = [
    "bind_request_id",
    "current_request_id",
    "install_log_record_request_id",
    "request_scope",
    "usable_request_id",
]

_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "bulletproof_request_id", default=None
)
#: What an id taken from outside (a client's X-Request-ID reaches Serve's context) may be.
_USABLE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_installed = False


def current_request_id() -> str | None:
    return _REQUEST_ID.get()


def usable_request_id(candidate: str | None) -> str | None:
    """``candidate`` if it is a safe id to echo in headers and logs, else None."""
    return candidate if candidate and _USABLE.match(candidate) else None


def bind_request_id(request_id: str) -> None:
    """Set the id for the rest of this asyncio task (a server's task per request: it ends
    with the request, so nothing leaks into the next one; a streamed body keeps it)."""
    _REQUEST_ID.set(request_id)


@contextlib.contextmanager
def request_scope(request_id: str | None) -> Iterator[None]:
    """Work inside carries ``request_id`` (nothing changes when it is None)."""
    if request_id is None:
        yield
        return
    token = _REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)


def install_log_record_request_id() -> None:
    """Every log record made while a request id is set gets a ``request_id`` attribute (once
    per process; wraps the current record factory, so other wrappers keep working)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        request_id = _REQUEST_ID.get()
        if request_id is not None:
            record.request_id = request_id
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
