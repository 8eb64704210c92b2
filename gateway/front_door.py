"""The ASGI layer in front of the routes: virtual-hosted-style addressing and CORS.

Virtual-hosted style. With ``BP_VIRTUAL_HOST_DOMAIN=s3.example.net`` a request for
``Host: photos.s3.example.net`` and path ``/cat.jpg`` is the path-style request
``/photos/cat.jpg``. The path is rewritten *before* routing, so a key called ``admin/x`` or
``health`` in a virtual-hosted request reaches the S3 API, never the fixed routes. The
client signed the path it sent, so the original raw path is kept in the scope
(``SIGNED_PATH_KEY``) for SigV4 verification (``gateway.s3.dispatch.request_view``).
A Host that is the base domain itself, or any other name (an IP address, localhost), is
path-style as before.

CORS. Browsers may call the gateway from the gateway's own UI origins (``BP_UI_ORIGINS``,
comma-separated; empty: none). A preflight (``OPTIONS`` with
``Access-Control-Request-Method``) from an allowed origin is answered here, before
authentication, since browsers send it without credentials; one from any other origin gets
a 403 ``AccessForbidden`` S3 error. Responses to allowed origins carry
``Access-Control-Allow-Origin`` and expose the headers S3 clients read (ETag, version id,
request id, checksums). Credentials still come from SigV4 on the real request: CORS only
lets the browser read responses, it authorizes nothing.

Keys. An S3 key is any UTF-8 up to 1,024 bytes, control characters included (a newline,
a carriage return, a bell). Route patterns are regular expressions whose ``.*`` stops at a
newline, so a key holding one would miss every route and answer 404 before any handler ran.
The path used for *routing* therefore has its newlines written ``%0A`` (``routable``); the
raw path, which the S3 parser reads the key from and SigV4 verifies, is left as sent.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["FrontDoor", "SIGNED_PATH_KEY", "routable", "virtual_host_bucket"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SIGNED_PATH_KEY = "bp.signed_raw_path"
_LABEL = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ALLOWED_METHODS = "GET, PUT, POST, DELETE, HEAD"
_EXPOSED = (
    "ETag, x-amz-version-id, x-amz-delete-marker, x-amz-request-id, Content-Range,"
    " Content-Length, Last-Modified, x-amz-checksum-crc32, x-amz-checksum-crc32c,"
    " x-amz-checksum-sha1, x-amz-checksum-sha256, x-amz-meta-bp-wrapped-key,"
    " x-amz-meta-bp-key-id, x-amz-meta-bp-key-version, x-amz-meta-bp-wrap-alg,"
    " x-amz-meta-bp-content-id, x-bp-redundancy-class"
)
_MAX_AGE = "600"


def virtual_host_bucket(host: str, domain: str) -> str | None:
    """The bucket a ``Host`` header names under ``domain`` (port ignored), else None."""
    if not domain:
        return None
    name = host.rsplit(":", 1)[0].lower().rstrip(".") if not host.startswith("[") else ""
    suffix = "." + domain.lower().strip(".")
    if not name.endswith(suffix):
        return None
    bucket = name[: -len(suffix)]
    return bucket if _LABEL.match(bucket) else None


def routable(path: str) -> str:
    """The decoded request path as the router matches it: newlines as ``%0A``."""
    return path.replace("\n", "%0A")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class FrontDoor:
    """ASGI middleware; ``domain`` and ``origins`` come from the settings."""

    def __init__(self, app: ASGIApp, *, settings: Callable[[], tuple[str, str]]) -> None:
        """``settings()`` gives (virtual host domain, comma-separated UI origins); it is read
        per request because the Serve replica learns its settings after the app is built."""
        self.app = app
        self._settings = settings

    @property
    def domain(self) -> str:
        return self._settings()[0]

    @property
    def origins(self) -> frozenset[str]:
        raw = self._settings()[1]
        return frozenset(o.strip().rstrip("/") for o in raw.split(",") if o.strip())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bucket = virtual_host_bucket(_header(scope, b"host") or "", self.domain)
        if bucket is not None:
            scope = dict(scope)
            raw = scope.get("raw_path") or scope["path"].encode()
            scope[SIGNED_PATH_KEY] = bytes(raw).decode("latin-1")
            scope["raw_path"] = b"/" + bucket.encode() + bytes(raw)
            scope["path"] = "/" + bucket + scope["path"]
        if "\n" in scope["path"]:
            scope = dict(scope)
            scope["path"] = routable(scope["path"])
        origin = _header(scope, b"origin")
        if scope["method"] == "OPTIONS" and origin is not None:
            await self._preflight(scope, origin, send)
            return
        if origin is None or origin.rstrip("/") not in self.origins:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
                headers.append((b"access-control-expose-headers", _EXPOSED.encode()))
                headers.append((b"vary", b"Origin"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, origin: str, send: Send) -> None:
        method = (_header(scope, b"access-control-request-method") or "").upper()
        request_id = secrets.token_hex(8).upper()
        if origin.rstrip("/") in self.origins and method in _ALLOWED_METHODS.split(", "):
            requested = _header(scope, b"access-control-request-headers") or ""
            headers = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", _ALLOWED_METHODS.encode()),
                (b"access-control-allow-headers", requested.encode("latin-1")),
                (b"access-control-expose-headers", _EXPOSED.encode()),
                (b"access-control-max-age", _MAX_AGE.encode()),
                (b"vary", b"Origin"),
                (b"content-length", b"0"),
                (b"x-amz-request-id", request_id.encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessForbidden</Code>'
            "<Message>CORSResponse: This CORS request is not allowed: only the gateway's own UI"
            " origins (BP_UI_ORIGINS) may call it from a browser, with GET, PUT, POST, DELETE"
            f" or HEAD.</Message><Method>{method if method.isalpha() else 'OPTIONS'}</Method>"
            "<ResourceType>OBJECT"
            f"</ResourceType><RequestId>{request_id}</RequestId></Error>"
        ).encode()
        headers = [
            (b"content-type", b"application/xml"),
            (b"content-length", str(len(body)).encode()),
            (b"x-amz-request-id", request_id.encode()),
        ]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})
