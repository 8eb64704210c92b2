"""Placeholder while issue 3 is built: every operation here answers 501."""

from __future__ import annotations

from fastapi import Response

from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.call import S3Call

__all__ = ["get_bucket_versioning", "list_object_versions", "put_bucket_versioning"]


async def put_bucket_versioning(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    raise s3e.NotImplemented("put_bucket_versioning is not built yet")


async def get_bucket_versioning(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    raise s3e.NotImplemented("get_bucket_versioning is not built yet")


async def list_object_versions(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    raise s3e.NotImplemented("list_object_versions is not built yet")
