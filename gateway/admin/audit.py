"""The admin view of the audit log: verify every hash chain.

Read-only: it recomputes every chain (``schema.audit.AuditLog.verify``) against the chain
heads and the newest signed checkpoint (``jobs``-independent: the checkpoints stored in the
database, checked with the deployment key), and reports each chain's first break as data; it
never repairs or rewrites the log. The external checkpoint copies and the archives are
checked by ``bulletproof audit verify``.
"""

from __future__ import annotations

from typing import Any

from gateway.admin.route import AdminCall, operation

__all__ = ["verify_audit"]


@operation(body=False)
async def verify_audit(call: AdminCall) -> dict[str, Any]:
    report = await call.ctx.audit_trail().verify()
    return report.as_dict()
