"""The ``/admin`` API: backends added at run time, tenants and their keys, audit verification,
and the policy engine's settings (policy documents, bucket and tenant placement, backend
location, placement explanations).

Authenticated with a bearer token (the bootstrap admin token; stored hashed). Input is JSON,
validated field by field (``fields.py``); errors use the same S3 XML error document as the S3
API. Every route goes through ``respond`` (``route.py``): authenticate, parse, run, render;
each operation appends its audit entry with ``AdminCall.audit``.

Every change of where data may live is one transaction with its audit entry and the
``placement_check`` jobs for the objects it affects (``schema/policies.py``).

Each operation module declares the role every operation needs in its ``ROLES`` mapping
(``viewer`` for reads, ``operator`` for backend changes); ``ROLES`` here merges them.

Modules, by noun: ``backends`` (add, list, show, ping, relocate), ``backend_changes``
(update, drain, remove), ``backend_views`` (how a backend is shown), ``tenants`` (create,
placement), ``buckets`` (placement), ``policy`` (apply, show, history, explain), ``audit`` (verify).
"""

from __future__ import annotations

from gateway.admin import backend_changes, backends
from gateway.admin.audit import verify_audit
from gateway.admin.backend_changes import drain_backend, remove_backend, update_backend
from gateway.admin.backends import (
    add_storage,
    list_backends,
    ping_backends,
    relocate_backend,
    show_backend,
)
from gateway.admin.buckets import bucket_placement, set_bucket_placement
from gateway.admin.policy import apply_policy, explain_placement, policy_history, show_policy
from gateway.admin.route import AdminCall, AdminOperation, respond
from gateway.admin.tenants import create_tenant, set_tenant_placement, tenant_placement

#: The role each backend operation needs, by operation name: "viewer" (read-only) or
#: "operator" (backends, drain). For the router-level role dependency.
ROLES: dict[str, str] = {**backends.ROLES, **backend_changes.ROLES}

__all__ = [
    "ROLES",
    "AdminCall",
    "AdminOperation",
    "add_storage",
    "apply_policy",
    "bucket_placement",
    "create_tenant",
    "drain_backend",
    "explain_placement",
    "list_backends",
    "ping_backends",
    "policy_history",
    "relocate_backend",
    "remove_backend",
    "respond",
    "set_bucket_placement",
    "set_tenant_placement",
    "show_backend",
    "show_policy",
    "tenant_placement",
    "update_backend",
    "verify_audit",
]
