"""A real OIDC issuer for tests: discovery document and JWKS served over HTTP on 127.0.0.1 by
a thread-run server, from RSA keys generated here, and tokens signed with them (PyJWT).

``rotate()`` makes a new signing key and publishes only it (the old kid disappears from the
JWKS, as at an issuer that rotated); ``jwks_fetches`` counts how often the JWKS was served.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

__all__ = ["OidcIssuer"]


class OidcIssuer:
    def __init__(self, audience: str = "bulletproof-admin") -> None:
        self.audience = audience
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        self._keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.rotate()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server contract
                if self.path == "/.well-known/openid-configuration":
                    issuer.discovery_fetches += 1
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    issuer.jwks_fetches += 1
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # -- keys ------------------------------------------------------------------------------------
    @property
    def kid(self) -> str:
        return self._keys[-1][0]

    def rotate(self) -> str:
        """A new signing key; only it is published from now on. Returns its kid."""
        kid = secrets.token_hex(4)
        self._keys = [(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))]
        return kid

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self._keys:
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def public_pem(self) -> bytes:
        return (
            self._keys[-1][1]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    # -- tokens ----------------------------------------------------------------------------------
    def claims(self, sub: str, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.url,
            "aud": self.audience,
            "sub": sub,
            "iat": now,
            "exp": now + 300,
            **extra,
        }

    def token(
        self,
        sub: str = "alice",
        *,
        kid: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
        **extra: Any,
    ) -> str:
        """An RS256 token signed with the current key (or ``key``), claims overridable."""
        return jwt.encode(
            self.claims(sub, **extra),
            key or self._keys[-1][1],
            algorithm="RS256",
            headers={"kid": kid or self.kid},
        )

    def alg_none(self, sub: str = "eve", **extra: Any) -> str:
        """A token with ``alg: none`` and no signature."""
        header = {"alg": "none", "kid": self.kid}
        return _signing_input(header, self.claims(sub, **extra)) + "."

    def hs256_with_public_key(self, sub: str = "eve", **extra: Any) -> str:
        """The key-confusion forgery: HS256 keyed with the issuer's published RSA public key."""
        header = {"alg": "HS256", "typ": "JWT", "kid": self.kid}
        signing_input = _signing_input(header, self.claims(sub, **extra))
        mac = hmac.new(self.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"

    def config(self, **overrides: Any) -> dict[str, Any]:
        """This issuer's entry in the gateway's identity file, with the role table the tests
        use: group ``bp-admins`` -> admin, ``bp-operators`` -> operator, ``bp-viewers`` ->
        viewer."""
        return {
            "name": "test",
            "issuer": self.url,
            "audience": self.audience,
            "algorithms": ["RS256"],
            "jwks_refetch_min_s": 1,
            "roles": [
                {"claim": "groups", "value": "bp-admins", "role": "admin"},
                {"claim": "groups", "value": "bp-operators", "role": "operator"},
                {"claim": "groups", "value": "bp-viewers", "role": "viewer"},
            ],
            **overrides,
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signing_input(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
