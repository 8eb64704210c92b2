"""DeleteObject: remove the key (or one version of it) through the data path
(``actors.deletes.remove_key``, which says what each versioning state means) and name what
happened (``x-amz-version-id``, ``x-amz-delete-marker``). Deleting what does not exist
succeeds (204), as in S3; a malformed ``versionId`` is InvalidArgument.
"""

from __future__ import annotations

from fastapi import Response

from actors.deletes import remove_key
from gateway.auth import Authorized
from gateway.context import GatewayContext
from gateway.s3 import errors as s3e
from gateway.s3.call import S3Call
from gateway.s3.operations import DeleteObject
from gateway.s3.versions import is_version_id
from schema.records import DeleteOutcome

__all__ = ["delete_object", "outcome_headers"]


def outcome_headers(outcome: DeleteOutcome) -> dict[str, str]:
    headers: dict[str, str] = {}
    if outcome.version_id is not None:
        headers["x-amz-version-id"] = outcome.version_id
    if outcome.delete_marker:
        headers["x-amz-delete-marker"] = "true"
    return headers


async def delete_object(ctx: GatewayContext, auth: Authorized, call: S3Call) -> Response:
    op = auth.op
    assert isinstance(op, DeleteObject) and auth.bucket is not None
    if op.version_id is not None and not is_version_id(op.version_id):
        raise s3e.InvalidArgument("Invalid version id specified")
    outcome = await remove_key(
        ctx,
        auth.caller(call.request_id),
        auth.principal.tenant_id,
        auth.bucket,
        op.key,
        op.version_id,
    )
    return Response(status_code=204, headers=outcome_headers(outcome))
