"""The ``/admin`` API: backends added at run time, tenants and their keys, the bootstrap token,
audit verification, and the policy engine's settings (policy documents, bucket and tenant
placement, backend location, placement explanations).

Authenticated with a bearer token: an OAuth2 JWT of a configured OIDC issuer, or the bootstrap
admin token (stored hashed) (``identity.py``). Every route is a row of one table
(``router.AdminRouter``, built in ``gateway/app.py``) naming the least role it needs:
``viewer`` (read-only), ``operator`` (backends, workers), ``admin`` (everything). Input is
JSON, validated field by field (``fields.py``); errors use the same S3 XML error document as
the S3 API. Every request goes through ``respond`` (``route.py``): authenticate, route,
authorize, read the capped body, run, render; each operation appends its audit entry, naming
the caller and its role, with ``AdminCall.audit``.

Every change of where data may live is one transaction with its audit entry and the
``placement_check`` jobs for the objects it affects (``schema/policies.py``).

Modules, by noun: ``backends`` (add, list, show, ping, relocate), ``backend_changes``
(update, drain, remove), ``backend_views`` (how a backend is shown), ``tenants`` (create, list,
show, disable, delete, placement), ``limits`` (a tenant's request limits), ``keys`` (access
keys), ``tokens`` (bootstrap token rotation), ``buckets`` (placement), ``policy`` (apply,
show, history, explain), ``audit`` (verify), ``sessions`` (STS temporary credentials: list,
revoke), ``compliance`` (a tenant's holdings per jurisdiction, objects not fully placed),
``status`` (the federation at a glance), ``openapi`` (the table as an OpenAPI document,
``GET /admin/openapi.json``).
"""

from __future__ import annotations

from core.admin_roles import Role
from gateway.admin.audit import list_audit_entries, verify_audit
from gateway.admin.backend_changes import drain_backend, remove_backend, update_backend
from gateway.admin.backends import (
    add_storage,
    list_backends,
    ping_backends,
    relocate_backend,
    show_backend,
)
from gateway.admin.buckets import bucket_placement, set_bucket_placement
from gateway.admin.compliance import compliance_report
from gateway.admin.identity import AdminPrincipal, InvalidToken, authenticate_admin
from gateway.admin.keys import (
    create_key,
    delete_key,
    disable_key,
    enable_key,
    list_keys,
    rotate_key,
)
from gateway.admin.limits import set_tenant_limits, tenant_limits
from gateway.admin.openapi import OPENAPI_PATH, openapi_document, openapi_operation
from gateway.admin.policy import apply_policy, explain_placement, policy_history, show_policy
from gateway.admin.route import AdminCall, AdminOperation, operation, respond
from gateway.admin.router import AdminRoute, AdminRouter
from gateway.admin.sessions import list_sessions, revoke_session, revoke_subject_sessions
from gateway.admin.status import federation_status
from gateway.admin.tenants import (
    create_tenant,
    delete_tenant,
    disable_tenant,
    enable_tenant,
    list_tenants,
    set_tenant_placement,
    show_tenant,
    tenant_placement,
)
from gateway.admin.tokens import rotate_admin_token

__all__ = [
    "AdminCall",
    "AdminOperation",
    "AdminPrincipal",
    "AdminRoute",
    "AdminRouter",
    "InvalidToken",
    "OPENAPI_PATH",
    "Role",
    "add_storage",
    "apply_policy",
    "authenticate_admin",
    "bucket_placement",
    "compliance_report",
    "create_key",
    "create_tenant",
    "delete_key",
    "delete_tenant",
    "disable_key",
    "disable_tenant",
    "enable_key",
    "enable_tenant",
    "drain_backend",
    "explain_placement",
    "federation_status",
    "list_backends",
    "list_keys",
    "list_sessions",
    "list_tenants",
    "openapi_document",
    "openapi_operation",
    "operation",
    "ping_backends",
    "policy_history",
    "relocate_backend",
    "remove_backend",
    "respond",
    "rotate_admin_token",
    "revoke_session",
    "revoke_subject_sessions",
    "rotate_key",
    "set_bucket_placement",
    "set_tenant_limits",
    "set_tenant_placement",
    "show_backend",
    "show_policy",
    "show_tenant",
    "tenant_limits",
    "tenant_placement",
    "update_backend",
    "list_audit_entries",
    "verify_audit",
]
