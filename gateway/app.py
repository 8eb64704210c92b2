"""The Ray Serve deployment: a FastAPI ingress serving the S3 API, ``/objects``, ``/import``
(the import API, ``gateway/imports/``), the browser console ``/ui/`` (``gateway/console/``),
``/admin`` and ``/health``.

Each replica builds its ``GatewayContext`` (pool, cache, registry) once, on first use, and
keeps it. S3 routes are a catch-all below the fixed prefixes; the fixed names are reserved
bucket names (``gateway/s3/operations.py``) so nothing is ambiguous.
"""

# No "from __future__ import annotations" here: FastAPI must see real types on the routes
# that Serve re-wraps (string annotations resolve in the wrong module and become query params).

import asyncio
import logging
import secrets
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from ray import serve

from actors.allocator import allocator_runtime_env
from actors.node_roles import GATEWAY, role_resources
from core.request_context import install_log_record_request_id
from core.settings import Settings, load_settings
from gateway import admin
from gateway.console import ConsoleApi, StaticAssets
from gateway.context import GatewayContext
from gateway.front_door import FrontDoor
from gateway.imports import ImportApi
from gateway.objects_api import handle_objects_api
from gateway.s3.dispatch import error_response, handle_s3
from gateway.s3.errors import to_s3_error

__all__ = [
    "ADMIN_ROUTES",
    "GatewayDeployment",
    "app_builder",
    "build_gateway_app",
    "fastapi_app",
]

log = logging.getLogger(__name__)

fastapi_app = FastAPI(title="Bulletproof gateway", docs_url=None, redoc_url=None, openapi_url=None)

# Virtual-hosted addressing and CORS (gateway/front_door.py) read the replica's settings,
# which arrive in GatewayDeployment.__init__, after this module built the app.
_front_settings: dict[str, str] = {"domain": "", "origins": ""}
fastapi_app.add_middleware(
    FrontDoor, settings=lambda: (_front_settings["domain"], _front_settings["origins"])
)

_METHODS = ["GET", "PUT", "POST", "DELETE", "HEAD"]

#: The import API of this replica (each Serve replica is its own process with its own module).
_IMPORTS = ImportApi()

_V, _O, _A = admin.Role.VIEWER, admin.Role.OPERATOR, admin.Role.ADMIN
_Route = admin.AdminRoute

#: Every /admin route: method, path, the least role it needs, and its operation
#: (docs/admin.md lists them). One row per route; a row cannot omit the role.
ADMIN_ROUTES: admin.AdminRouter = admin.AdminRouter(
    [
        # the federation at a glance (gateway/admin/status.py)
        _Route("GET", "/admin/status", _V, admin.federation_status),
        # backends (gateway/admin/backends.py)
        _Route("POST", "/admin/add-storage", _O, admin.add_storage),
        _Route("GET", "/admin/backends", _V, admin.list_backends),
        _Route("POST", "/admin/backends/ping", _O, admin.ping_backends),
        _Route("PUT", "/admin/backends/{name}/location", _O, admin.relocate_backend),
        _Route("GET", "/admin/backends/{name}", _V, admin.show_backend),
        _Route("PATCH", "/admin/backends/{name}", _O, admin.update_backend),
        _Route("DELETE", "/admin/backends/{name}", _O, admin.remove_backend),
        _Route("POST", "/admin/backends/{name}/drain", _O, admin.drain_backend),
        # tenants and their access keys (tenants.py, keys.py)
        _Route("GET", "/admin/tenants", _V, admin.list_tenants),
        _Route("POST", "/admin/tenants", _A, admin.create_tenant),
        _Route("GET", "/admin/tenants/{tenant}", _V, admin.show_tenant),
        _Route("DELETE", "/admin/tenants/{tenant}", _A, admin.delete_tenant),
        _Route("POST", "/admin/tenants/{tenant}/disable", _A, admin.disable_tenant),
        _Route("POST", "/admin/tenants/{tenant}/enable", _A, admin.enable_tenant),
        _Route("GET", "/admin/tenants/{tenant}/keys", _V, admin.list_keys),
        _Route("POST", "/admin/tenants/{tenant}/keys", _A, admin.create_key),
        _Route("DELETE", "/admin/tenants/{tenant}/keys/{key}", _A, admin.delete_key),
        _Route("POST", "/admin/tenants/{tenant}/keys/{key}/disable", _A, admin.disable_key),
        _Route("POST", "/admin/tenants/{tenant}/keys/{key}/enable", _A, admin.enable_key),
        _Route("POST", "/admin/tenants/{tenant}/keys/{key}/rotate", _A, admin.rotate_key),
        # temporary credentials from the STS endpoint (sessions.py, gateway/sts.py)
        _Route("GET", "/admin/sessions", _V, admin.list_sessions),
        _Route("POST", "/admin/sessions/revoke", _A, admin.revoke_subject_sessions),
        _Route("POST", "/admin/sessions/{key}/revoke", _A, admin.revoke_session),
        # the bootstrap token (tokens.py) and the audit log (audit.py)
        _Route("POST", "/admin/token/rotate", _A, admin.rotate_admin_token),
        _Route("GET", "/admin/audit/verify", _V, admin.verify_audit),
        _Route("GET", "/admin/audit/entries", _V, admin.list_audit_entries),
        # the policy engine (policy.py, tenants.py, buckets.py; docs/policy.md)
        _Route("PUT", "/admin/policy", _A, admin.apply_policy),
        _Route("GET", "/admin/policy", _V, admin.show_policy),
        _Route("GET", "/admin/policy/history", _V, admin.policy_history),
        _Route("POST", "/admin/policy/explain", _V, admin.explain_placement),
        _Route("GET", "/admin/tenants/{tenant}/placement", _V, admin.tenant_placement),
        _Route("GET", "/admin/tenants/{tenant}/compliance", _V, admin.compliance_report),
        _Route("PUT", "/admin/tenants/{tenant}/placement", _A, admin.set_tenant_placement),
        _Route("GET", "/admin/tenants/{tenant}/limits", _V, admin.tenant_limits),
        _Route("PUT", "/admin/tenants/{tenant}/limits", _A, admin.set_tenant_limits),
        _Route(
            "GET", "/admin/tenants/{tenant}/buckets/{bucket}/placement", _V, admin.bucket_placement
        ),
        _Route(
            "PUT",
            "/admin/tenants/{tenant}/buckets/{bucket}/placement",
            _A,
            admin.set_bucket_placement,
        ),
        # imports (gateway/imports/routes.py picks the operation from the rest of the path)
        _Route("GET", "/admin/imports", _V, _IMPORTS.admin_operation),
        _Route("GET", "/admin/imports/{rest:path}", _V, _IMPORTS.admin_operation),
        _Route("POST", "/admin/imports/{rest:path}", _A, _IMPORTS.admin_operation),
        _Route("GET", "/admin/import-sources/{rest:path}", _V, _IMPORTS.admin_operation),
        _Route("POST", "/admin/import-sources/{rest:path}", _A, _IMPORTS.admin_operation),
        _Route("GET", "/admin/tenants/{tenant}/import/{rest:path}", _V, _IMPORTS.admin_operation),
        _Route("POST", "/admin/tenants/{tenant}/import/{rest:path}", _A, _IMPORTS.admin_operation),
        # this table as an OpenAPI document (gateway/admin/openapi.py)
        _Route(
            "GET",
            admin.OPENAPI_PATH,
            _V,
            admin.openapi_operation(lambda: ADMIN_ROUTES, _IMPORTS.admin_paths()),
        ),
    ]
)


@serve.deployment(name="gateway")
@serve.ingress(fastapi_app)
class GatewayDeployment:
    def __init__(self, settings: dict[str, Any]) -> None:
        install_log_record_request_id()
        self._settings = Settings(**settings)
        _front_settings["domain"] = self._settings.virtual_host_domain
        _front_settings["origins"] = self._settings.ui_origins
        self._ctx: GatewayContext | None = None
        self._lock = asyncio.Lock()
        self._console = ConsoleApi()
        self._assets = StaticAssets(self._settings.region)

    async def ctx(self) -> GatewayContext:
        if self._ctx is None:
            async with self._lock:
                if self._ctx is None:
                    self._ctx = await GatewayContext.start(self._settings)
        return self._ctx

    async def check_health(self) -> None:
        """Serve's replica health check: a replica that cannot start its context is unhealthy."""
        await self.ctx()

    @fastapi_app.get("/health")
    async def health(self) -> Response:
        try:
            ctx = await self.ctx()
            await ctx.store.db.ping()
            backends = ctx.registry.all()
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "error": type(exc).__name__}, status_code=503
            )
        return JSONResponse(
            {
                "status": "ok",
                "backends": len(backends),
                "healthy_backends": sum(1 for b in backends if b.healthy),
            }
        )

    # -- /admin (gateway/admin/): every path is a row of ADMIN_ROUTES (below), with the least
    # role it needs; admin.respond authenticates, routes and authorizes before it reads a byte
    # of the body. No other route may serve /admin (tests/unit/test_admin_router.py).
    @fastapi_app.api_route("/admin/{path:path}", methods=[*_METHODS, "PATCH"])
    async def admin_api(self, request: Request, path: str) -> Response:
        return await admin.respond(request, self.ctx, ADMIN_ROUTES)

    # -- imports (gateway/imports/, docs/import.md): the tenant's JSON API under SigV4; the
    # admin's is in ADMIN_ROUTES, over the same service.
    @fastapi_app.api_route("/import/{path:path}", methods=_METHODS)
    async def imports(self, request: Request, path: str) -> Response:
        return await _IMPORTS.tenant(request, self.ctx)

    # -- the console (gateway/console/, docs/console.md): its JSON routes under SigV4, then its
    # static files. Registered before the S3 catch-all ("ui" is a reserved bucket name).
    @fastapi_app.api_route("/ui/api/{path:path}", methods=_METHODS)
    async def console_api(self, request: Request, path: str) -> Response:
        return await self._console.handle(request, self.ctx)

    @fastapi_app.get("/ui")
    async def console_root(self) -> Response:
        return self._assets.redirect()

    @fastapi_app.get("/ui/{path:path}")
    async def console_file(self, path: str) -> Response:
        return self._assets.respond(path)

    # -- the deployment's public signing keys (core/deployment_key.py): unauthenticated, so
    # anyone can check a placement proof; docs/placement-proof.md. ".well-known" can never be a
    # bucket name, so it does not shadow the S3 catch-all.
    @fastapi_app.get("/.well-known/bulletproof/deployment-key")
    async def deployment_key(self) -> Response:
        try:
            ctx = await self.ctx()
        except Exception as exc:
            log.error("gateway context unavailable", exc_info=exc)
            return JSONResponse({"error": "unavailable"}, status_code=503)
        return JSONResponse(ctx.deployment_key.published())

    @fastapi_app.api_route("/objects/{path:path}", methods=_METHODS)
    async def objects(self, request: Request, path: str) -> Response:
        return await handle_objects_api(await self.ctx(), request)

    @fastapi_app.api_route("/{path:path}", methods=[*_METHODS, "OPTIONS"])
    async def s3(self, request: Request, path: str) -> Response:
        try:
            ctx = await self.ctx()
        except Exception as exc:
            log.error("gateway context unavailable", exc_info=exc)
            return error_response(to_s3_error(exc), secrets.token_hex(8).upper())
        return await handle_s3(ctx, request)


def build_gateway_app(settings: Settings) -> Any:
    """The Serve application, with replica count (or autoscaling range) and concurrency set
    deliberately."""
    scaling: dict[str, Any] = {"num_replicas": settings.gateway_replicas}
    if settings.gateway_max_replicas > settings.gateway_replicas:
        scaling = {
            "autoscaling_config": {
                "min_replicas": settings.gateway_replicas,
                "max_replicas": settings.gateway_max_replicas,
                "target_ongoing_requests": settings.gateway_target_ongoing_requests,
            }
        }
    return GatewayDeployment.options(  # type: ignore[attr-defined]
        **scaling,
        max_ongoing_requests=settings.max_ongoing_requests,
        # On gateway nodes when the cluster declares the role (actors/node_roles.py).
        ray_actor_options={
            "num_cpus": 0,
            "resources": role_resources(GATEWAY),
            # Consumed request bodies and part buffers go back to the kernel after a burst.
            "runtime_env": allocator_runtime_env(),
        },
        health_check_period_s=10,
        health_check_timeout_s=30,
        # JSON lines with the request id (Serve's, also our x-amz-request-id) on every line
        # logged while a request is handled; BP_LOG_FORMAT=text for Serve's text format.
        logging_config={"encoding": "JSON" if settings.log_format == "json" else "TEXT"},
    ).bind(settings.to_dict())


def app_builder(args: dict[str, Any]) -> Any:
    """The application builder for ``serve run`` / ``serve deploy`` (deploy/serve.yaml's
    ``import_path: gateway.app:app_builder``): ``args`` are plain setting names and values
    (``database_url``, ``gateway_replicas``...), overlaid by the node's ``BP_*`` environment
    as everywhere else (``core.settings``). Run ``bulletproof prepare`` first: it migrates the
    database and starts the agents and scheduler that a Serve config does not describe."""
    return build_gateway_app(load_settings(file_values=args))
