"""Placeholder while issue 3 is built: every operation here answers 501."""

from __future__ import annotations

from fastapi import Response

from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.call import S3Call

__all__ = ["get_acl", "put_acl"]


async def get_acl(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    raise s3e.NotImplemented("get_acl is not built yet")


async def put_acl(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    raise s3e.NotImplemented("put_acl is not built yet")
