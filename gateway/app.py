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

from core.settings import Settings
from gateway import admin
from gateway.console import ConsoleApi, StaticAssets
from gateway.context import GatewayContext
from gateway.front_door import FrontDoor
from gateway.imports import ImportApi
from gateway.objects_api import handle_objects_api
from gateway.s3.dispatch import error_response, handle_s3
from gateway.s3.errors import to_s3_error

__all__ = ["GatewayDeployment", "build_gateway_app", "fastapi_app"]

log = logging.getLogger(__name__)

fastapi_app = FastAPI(title="Bulletproof gateway", docs_url=None, redoc_url=None, openapi_url=None)

# Virtual-hosted addressing and CORS (gateway/front_door.py) read the replica's settings,
# which arrive in GatewayDeployment.__init__, after this module built the app.
_front_settings: dict[str, str] = {"domain": "", "origins": ""}
fastapi_app.add_middleware(
    FrontDoor, settings=lambda: (_front_settings["domain"], _front_settings["origins"])
)

_METHODS = ["GET", "PUT", "POST", "DELETE", "HEAD"]


@serve.deployment(name="gateway")
@serve.ingress(fastapi_app)
class GatewayDeployment:
    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = Settings(**settings)
        _front_settings["domain"] = self._settings.virtual_host_domain
        _front_settings["origins"] = self._settings.ui_origins
        self._ctx: GatewayContext | None = None
        self._lock = asyncio.Lock()
        self._imports = ImportApi()
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

    # -- /admin (gateway/admin/): every route is admin.respond(request, self.ctx, operation),
    # which authenticates before it parses or runs anything; path parameters reach the
    # operation through the request.
    @fastapi_app.post("/admin/add-storage")
    async def add_storage(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, admin.add_storage)

    @fastapi_app.get("/admin/backends")
    async def backends(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, admin.list_backends)

    @fastapi_app.post("/admin/backends/ping")
    async def ping_backends(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, admin.ping_backends)

    @fastapi_app.post("/admin/tenants")
    async def tenants(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, admin.create_tenant)

    @fastapi_app.get("/admin/audit/verify")
    async def audit_verify(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, admin.verify_audit)

    # -- policy engine (gateway/admin/policy.py, tenants.py, buckets.py; docs/policy.md)
    @fastapi_app.put("/admin/policy")
    async def apply_policy(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, admin.apply_policy)

    @fastapi_app.get("/admin/policy")
    async def show_policy(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, admin.show_policy)

    @fastapi_app.get("/admin/policy/history")
    async def policy_history(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, admin.policy_history)

    @fastapi_app.post("/admin/policy/explain")
    async def explain_placement(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, admin.explain_placement)

    @fastapi_app.get("/admin/tenants/{tenant}/placement")
    async def tenant_placement(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, admin.tenant_placement)

    @fastapi_app.put("/admin/tenants/{tenant}/placement")
    async def set_tenant_placement(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, admin.set_tenant_placement)

    @fastapi_app.get("/admin/tenants/{tenant}/buckets/{bucket}/placement")
    async def bucket_placement(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, admin.bucket_placement)

    @fastapi_app.put("/admin/tenants/{tenant}/buckets/{bucket}/placement")
    async def set_bucket_placement(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, admin.set_bucket_placement)

    @fastapi_app.put("/admin/backends/{name}/location")
    async def relocate_backend(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, admin.relocate_backend)

    # -- imports (gateway/imports/, docs/import.md): the tenant's JSON API under SigV4, and
    # the admin's over the same service.
    @fastapi_app.api_route("/import/{path:path}", methods=_METHODS)
    async def imports(self, request: Request, path: str) -> Response:
        return await self._imports.tenant(request, self.ctx)

    @fastapi_app.api_route("/admin/imports", methods=["GET"])
    async def admin_imports(self, request: Request) -> Response:
        return await admin.respond(request, self.ctx, self._imports.admin_operation(request))

    @fastapi_app.api_route("/admin/imports/{rest:path}", methods=["GET", "POST"])
    async def admin_import(self, request: Request, rest: str) -> Response:
        return await admin.respond(request, self.ctx, self._imports.admin_operation(request))

    @fastapi_app.api_route("/admin/import-sources/{rest:path}", methods=["GET", "POST"])
    async def admin_import_source(self, request: Request, rest: str) -> Response:
        return await admin.respond(request, self.ctx, self._imports.admin_operation(request))

    @fastapi_app.api_route("/admin/tenants/{tenant}/import/{rest:path}", methods=["GET", "POST"])
    async def admin_tenant_import(self, request: Request, tenant: str, rest: str) -> Response:
        return await admin.respond(request, self.ctx, self._imports.admin_operation(request))

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
    """The Serve application, with replica count and concurrency set deliberately."""
    return GatewayDeployment.options(  # type: ignore[attr-defined]
        num_replicas=settings.gateway_replicas,
        max_ongoing_requests=settings.max_ongoing_requests,
        ray_actor_options={"num_cpus": 0},
        health_check_period_s=10,
        health_check_timeout_s=30,
    ).bind(settings.to_dict())
