"""Placeholder while issue 3 is built: every operation here answers 501."""

from __future__ import annotations

from fastapi import Response

from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.call import S3Call

__all__ = ["delete_objects"]


async def delete_objects(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    raise s3e.NotImplemented("delete_objects is not built yet")
