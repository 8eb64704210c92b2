"""The console's static files, served under ``/ui/`` with strict headers.

The files are the ones committed in ``gateway/console/static/`` (plain ES modules and CSS: no
bundler, no CDN), read once when this module is imported into a fixed table; a request names
a file of that table or gets a 404, so no path can reach outside it. ``/ui/config.json`` tells
the page the region its SigV4 signatures must name.

Every answer carries a Content-Security-Policy that allows scripts, styles and connections
from the gateway's own origin only (no inline script or style, no ``eval``, no framing, no
plugins), ``nosniff``, ``no-referrer`` and ``no-store`` for the page itself, so the secret the
page keeps in memory cannot be lifted by injected script or a framing page.
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path

from fastapi import Response
from fastapi.responses import RedirectResponse

__all__ = ["CSP", "SECURITY_HEADERS", "StaticAssets"]

_ROOT = Path(__file__).resolve().parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:;"
    " connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none';"
    " form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}


def _load(root: Path) -> dict[str, tuple[bytes, str]]:
    table: dict[str, tuple[bytes, str]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "text/plain"
            table[path.relative_to(root).as_posix()] = (path.read_bytes(), kind)
    return table


class StaticAssets:
    """The ``/ui/`` files of one gateway replica."""

    def __init__(self, region: str, root: Path = _ROOT) -> None:
        self._files = _load(root)
        self._files["config.json"] = (
            json.dumps({"region": region}).encode(),
            "application/json",
        )

    def respond(self, path: str) -> Response:
        """The file at ``path`` below ``/ui/`` (``""``: the page), or a 404."""
        if path == "":
            path = "index.html"
        found = self._files.get(path)
        if found is None:
            return Response(
                b"Not found\n", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS
            )
        body, kind = found
        cache = "no-store" if path in ("index.html", "config.json") else "no-cache"
        charset = "; charset=utf-8" if kind.startswith("text/") or kind.endswith("json") else ""
        return Response(
            body,
            media_type=kind + charset,
            headers={**SECURITY_HEADERS, "Cache-Control": cache},
        )

    @staticmethod
    def redirect() -> Response:
        """``/ui`` -> ``/ui/`` (relative module URLs need the trailing slash)."""
        return RedirectResponse("/ui/", status_code=308, headers=SECURITY_HEADERS)
