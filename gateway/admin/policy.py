"""Admin operations on the policy engine: apply a policy document, show one version or the
history, and explain where a PUT would be placed (and whether stored pieces comply).

Applying is one transaction: the new version, the ``placement_check`` marks for objects of the
classes it redefines, and the audit entry; it is refused (400, nothing stored) when the
document is invalid or drops a class still in use. An identical document is reported unchanged
and stores nothing. The replica that applied a version uses it at once (``use_policy``).
"""

from __future__ import annotations

from typing import Any

from core.errors import Conflict, InvalidInput
from core.policy import builtin_policy, diff_policies, dump_policy
from gateway.admin.buckets import bucket_of
from gateway.admin.fields import optional_text, text
from gateway.admin.route import AdminCall, operation
from gateway.context import GatewayContext
from gateway.placement_explain import explain_put
from gateway.s3 import errors as s3e
from schema.policies import StoredPolicy

__all__ = ["apply_policy", "explain_placement", "policy_history", "show_policy"]


def _policy_json(stored: StoredPolicy | None, ctx: GatewayContext) -> dict[str, Any]:
    if stored is None:
        document = builtin_policy()
        info: dict[str, Any] = {
            "version": 0,
            "document": dump_policy(document),
            "source": None,
            "sha256": None,
            "applied_by": "built-in",
            "applied_at": None,
            "comment": "the built-in policy; no document has been applied",
        }
    else:
        document = stored.parsed()
        info = {
            "version": stored.version,
            "document": stored.document,
            "source": stored.source,
            "sha256": stored.sha256.hex(),
            "applied_by": stored.applied_by,
            "applied_at": stored.applied_at.isoformat(),
            "comment": stored.comment,
        }
    info["default_class"] = document.default_class
    info["classes"] = {name: rc.describe() for name, rc in sorted(document.classes.items())}
    info["in_force_here"] = ctx.policy_version == info["version"]
    return info


@operation(body=True)
async def apply_policy(call: AdminCall) -> dict[str, Any]:
    """Validate and store a policy document as the next version (or report it unchanged).

    Refused (400, nothing stored) when the document is invalid, or when it drops a class that a
    bucket default, a tenant default or a stored object still uses. Objects of a class the
    document redefines are marked for the placement checker in the same transaction.
    """
    ctx, data = call.ctx, call.data
    source = data.get("document")
    if not isinstance(source, str) or not source.strip():
        raise s3e.InvalidArgument("field 'document' must be the policy's YAML text")
    comment = data.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 1024:
        raise s3e.InvalidArgument("field 'comment' must be a string of at most 1024 characters")
    try:
        async with ctx.store.db.transaction() as conn:
            old_version, old_document = await ctx.policies.in_force(conn)
            stored, document = await ctx.policies.apply(
                conn, source, applied_by=call.principal.actor, comment=comment
            )
            if old_version and dump_policy(old_document) == stored.document:
                raise _Unchanged(old_version)
            diff = diff_policies(old_document, document)
            uses = await ctx.policies.classes_in_use(conn, diff.removed)
            if uses:
                detail = "; ".join(f"{c} ({', '.join(u)})" for c, u in sorted(uses.items()))
                raise s3e.InvalidArgument(
                    f"classes: the document drops classes still in use: {detail}; "
                    f"keep them or move what uses them first"
                )
            marked = await ctx.policies.mark_classes(
                conn, diff.changed, f"policy version {stored.version} redefined the class"
            )
            await call.audit(
                conn,
                "ApplyPolicy",
                f"policy/{stored.version}",
                f"ok sha256={stored.sha256.hex()[:16]} added={','.join(diff.added)}"
                f" removed={','.join(diff.removed)} changed={','.join(diff.changed)}"
                f" marked={marked}",
            )
    except _Unchanged as same:
        return {"version": same.version, "unchanged": True, "marked_objects": 0}
    except InvalidInput as exc:
        raise s3e.InvalidArgument(str(exc)) from exc
    except Conflict as exc:
        raise s3e.InvalidRequest(str(exc)) from exc
    ctx.use_policy(stored.version, document)
    return {
        "version": stored.version,
        "unchanged": False,
        "sha256": stored.sha256.hex(),
        "default_class": document.default_class,
        "added": list(diff.added),
        "removed": list(diff.removed),
        "changed": list(diff.changed),
        "marked_objects": marked,
    }


class _Unchanged(Exception):
    """The applied document equals the one in force: roll back, report the current version."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


@operation(body=False)
async def show_policy(call: AdminCall) -> dict[str, Any]:
    """The policy in force (or version ``version``, a query parameter), canonical text and
    classes."""
    ctx, version = call.ctx, call.query.get("version")
    async with ctx.store.db.connection() as conn:
        if version is None:
            stored = await ctx.policies.current(conn)
        else:
            if not (version.isascii() and version.isdigit()) or int(version) > 2**31 - 1:
                raise s3e.InvalidArgument("query parameter 'version' must be a version number")
            stored = None if int(version) == 0 else await ctx.policies.get(conn, int(version))
    return _policy_json(stored, ctx)


@operation(body=False)
async def policy_history(call: AdminCall) -> list[dict[str, Any]]:
    async with call.ctx.store.db.connection() as conn:
        rows = await call.ctx.policies.history(conn)
    return [
        {
            "version": r.version,
            "sha256": r.sha256.hex(),
            "applied_by": r.applied_by,
            "applied_at": r.applied_at.isoformat(),
            "comment": r.comment,
        }
        for r in rows
    ]


@operation(body=True)
async def explain_placement(call: AdminCall) -> dict[str, Any]:
    """Which backends a PUT of ``key`` into ``bucket`` would use now, and why; or which rule
    makes it impossible (``gateway.placement_explain``, shared with the console)."""
    ctx, data = call.ctx, call.data
    bucket_name = text(data, "bucket")
    key = text(data, "key")
    tenant_name = optional_text(data, "tenant")
    requested = optional_text(data, "class")
    size = data.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise s3e.InvalidArgument("field 'size' must be a non-negative integer")
    async with ctx.store.db.connection() as conn:
        bucket = await bucket_of(ctx, conn, tenant_name, bucket_name)
    return await explain_put(ctx, bucket, key, requested_class=requested, size=size)
