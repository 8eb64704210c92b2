"""Placeholder while issue 3 is built: every operation here answers 501."""

from __future__ import annotations

from fastapi import Response

from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.call import S3Call

__all__ = [
    "abort_multipart_upload",
    "complete_multipart_upload",
    "create_multipart_upload",
    "list_multipart_uploads",
    "list_parts",
    "upload_part",
    "upload_part_copy",
]


async def create_multipart_upload(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    raise s3e.NotImplemented("create_multipart_upload is not built yet")


async def upload_part(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    raise s3e.NotImplemented("upload_part is not built yet")


async def upload_part_copy(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    raise s3e.NotImplemented("upload_part_copy is not built yet")


async def complete_multipart_upload(
    ctx: GatewayContext, auth: Authorized, call: S3Call
) -> Response:
    raise s3e.NotImplemented("complete_multipart_upload is not built yet")


async def abort_multipart_upload(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    raise s3e.NotImplemented("abort_multipart_upload is not built yet")


async def list_parts(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    raise s3e.NotImplemented("list_parts is not built yet")


async def list_multipart_uploads(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    raise s3e.NotImplemented("list_multipart_uploads is not built yet")
