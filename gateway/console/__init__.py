"""The browser console under ``/ui/``: static ES modules that sign every call with SigV4 in
the browser (``assets.py`` serves them with a strict CSP) and the console's own read-only JSON
routes ``/ui/api/...`` (``api.py`` routes, ``service.py`` answers). The import flow itself uses
the import API (``gateway/imports/``). docs/console.md describes the pages and the security
model."""

from __future__ import annotations

from gateway.console.api import ConsoleApi
from gateway.console.assets import StaticAssets
from gateway.console.service import ConsoleService

__all__ = ["ConsoleApi", "ConsoleService", "StaticAssets"]
