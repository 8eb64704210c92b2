"""Every authenticated S3 request leaves an audit entry: reads and listings too, not only
changes (``dispatch.handle_s3`` calls this once per request, after the handler).

- A change that succeeded was audited by its handler in the transaction that made it
  (``CHANGE_AUDITED``); nothing is added then.
- Anything else - GET, HEAD, LIST, multipart parts and listings, ACL and key reads, and every
  refusal or failure after authentication - is one entry: tenant, actor (access key), action
  (the operation's name), resource (``bucket/key``), request id, result (``ok <status>`` or
  ``<S3 error code> <status>``) and bytes (the body sent; for a part upload, the declared
  part length).
- Entries are appended by the replica's ``GroupAppender`` (``schema/audit.py``): the entries
  of requests that arrive while an append runs are committed together, in one transaction,
  each on its tenant's own chain (a GET never waits for another tenant's head). The request
  is answered only once its entry is committed, so a crash loses no answered request's entry;
  alone, an entry costs the one transaction it always did. A streamed GET is
  logged when its body ends (or is cut short), with the bytes actually sent, from a task so
  the stream never waits for it.

If the entry cannot be written (metadata unavailable) the request is answered anyway and the
failure is logged: the log records accesses, it does not gate them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from fastapi import Response
from fastapi.responses import StreamingResponse

from gateway.context import GatewayContext
from gateway.s3 import operations as ops
from schema.audit import Caller

__all__ = ["CHANGE_AUDITED", "audited", "record", "resource_of"]

log = logging.getLogger(__name__)

#: Operations whose success the handler audits in its own transaction (with the change).
CHANGE_AUDITED: frozenset[type] = frozenset(
    {
        ops.PutObject,
        ops.CopyObject,
        ops.DeleteObject,
        ops.DeleteObjects,
        ops.CreateBucket,
        ops.DeleteBucket,
        ops.RewrapObject,
        ops.RewrapObjects,
        ops.ShareObject,
        ops.PublishKey,
        ops.CreateMultipartUpload,
        ops.CompleteMultipartUpload,
        ops.AbortMultipartUpload,
        ops.PutBucketVersioning,
    }
)

_tasks: set[asyncio.Task[None]] = set()


def resource_of(op: ops.Operation) -> str:
    """``bucket/key``, ``bucket``, or ``/`` (ListBuckets)."""
    bucket = getattr(op, "bucket", None)
    key = getattr(op, "key", None)
    if bucket and key:
        return f"{bucket}/{key}"
    return str(bucket) if bucket else "/"


async def record(
    ctx: GatewayContext, caller: Caller, action: str, resource: str, result: str, size: int | None
) -> None:
    """Append one access entry (group-committed with concurrent ones, committed before this
    returns); a failure is logged, not raised."""
    try:
        await ctx.access_audit.append(caller.entry(action, resource, result, size=size))
    except Exception:
        log.exception("access entry %s %s (request %s) not recorded", action, resource, caller)


def _declared_length(headers: Any) -> int | None:
    for name in ("x-amz-decoded-content-length", "content-length"):
        value = headers.get(name)
        if value is not None and value.isdigit() and len(value) < 20:
            return int(value)
    return None


async def audited(
    ctx: GatewayContext,
    caller: Caller,
    op: ops.Operation,
    response: Response,
    request_headers: Any,
) -> Response:
    """``response`` after its access entry is recorded (or arranged, for a stream)."""
    action, resource = type(op).__name__, resource_of(op)
    status = response.status_code
    if type(op) in CHANGE_AUDITED and status < 300:
        return response
    if isinstance(response, StreamingResponse):
        body = response.body_iterator
        response.body_iterator = _counted(ctx, caller, action, resource, status, body)
        return response
    size: int | None = len(response.body) if response.body else 0
    if isinstance(op, ops.UploadPart | ops.UploadPartCopy):
        size = _declared_length(request_headers) if isinstance(op, ops.UploadPart) else None
    await record(ctx, caller, action, resource, f"ok {status}", size)
    return response


async def _counted(
    ctx: GatewayContext,
    caller: Caller,
    action: str,
    resource: str,
    status: int,
    body: AsyncIterable[Any],
) -> AsyncIterator[Any]:
    sent = 0
    outcome = f"ok {status}"
    try:
        async for chunk in body:
            sent += len(chunk)
            yield chunk
    except BaseException:
        outcome = f"cut short {status}"
        raise
    finally:
        # Not awaited here: a generator being closed (client gone) must not wait on the log.
        task = asyncio.get_running_loop().create_task(
            record(ctx, caller, action, resource, outcome, sent)
        )
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
