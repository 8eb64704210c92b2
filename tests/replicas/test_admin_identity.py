"""Administrators and tenants at run time, end to end (issue 13), on the replicas tier's
federation (``conftest.py``: two gateway replicas and an OIDC issuer on 127.0.0.1, discovery +
JWKS served by a thread from keys generated here):

- bearer JWTs per role, and every kind of bad token, through the real gateway: 401 for a token
  that is not valid, 403 for a valid one without the role (a viewer cannot add storage);
  a key rotated at the issuer is picked up; the audit entry names the subject and role;
- the bootstrap token rotated with `bulletproof admin token rotate` is refused at once;
- tenants and access keys: several keys, disable / enable / rotate / delete, tenant disable
  and delete (refused while it has buckets); a disabled key is refused at once by S3 requests
  spread over both replicas after both had it cached;
- an anonymous multi-gigabyte POST is answered 401 without its body being read, an
  authenticated one 413, declared or streamed.

Requests go through Serve's proxy, which spreads them over the replicas; each check repeats a
request enough times that both replicas answer it (``SPREAD``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from core.sealing import hash_token
from tests.support.cluster import Federation
from tests.support.oidc_issuer import OidcIssuer

pytestmark = pytest.mark.integration

#: Requests per check: with two replicas picked at random, 12 requests all land on one
#: replica with probability 2 * 2**-12 (Serve's router picks the less loaded of two).
SPREAD = 12


def bearer(fed: Federation, method: str, path: str, token: str, payload: Any = None) -> Any:
    return httpx.request(
        method,
        f"{fed.endpoint}{path}",
        json=payload,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def statuses(fed: Federation, method: str, path: str, token: str, payload: Any = None) -> set[int]:
    return {bearer(fed, method, path, token, payload).status_code for _ in range(SPREAD)}


STORAGE = {
    "name": "never",
    "type": "local",
    "path": "/tmp/never",
    "region": "r",
    "country": "DE",
    "jurisdiction": "EU",
}


def test_jwt_roles(fed: Federation, issuer: OidcIssuer) -> None:
    viewer = issuer.token("vic", groups=["bp-viewers"])
    operator = issuer.token("olga", groups=["bp-operators"])
    admin = issuer.token("ada", groups=["bp-admins"])
    nobody = issuer.token("nora", groups=["staff"])
    assert statuses(fed, "GET", "/admin/backends", viewer) == {200}
    assert statuses(fed, "GET", "/admin/policy", viewer) == {200}
    denied = bearer(fed, "POST", "/admin/add-storage", viewer, STORAGE)
    assert denied.status_code == 403 and b"needs the operator role" in denied.content
    assert bearer(fed, "POST", "/admin/tenants", viewer, {"name": "v"}).status_code == 403
    assert bearer(fed, "POST", "/admin/backends/ping", operator).status_code == 200
    assert bearer(fed, "POST", "/admin/tenants", operator, {"name": "o"}).status_code == 403
    policy = {"document": "version: 1"}
    assert bearer(fed, "PUT", "/admin/policy", operator, policy).status_code == 403
    created = bearer(fed, "POST", "/admin/tenants", admin, {"name": "jwt-made"})
    assert created.status_code == 200, created.text
    assert statuses(fed, "GET", "/admin/backends", nobody) == {403}
    audit = fed.sql(
        "SELECT actor, role FROM audit_log WHERE action = 'CreateTenant'"
        " AND resource = 'tenant/jwt-made'"
    )
    assert audit == [{"actor": "oidc:test:ada", "role": "admin"}]


@pytest.mark.parametrize(
    "forge",
    [
        lambda i: i.token(groups=["bp-admins"], exp=int(time.time()) - 120),
        lambda i: i.token(groups=["bp-admins"], aud="another-service"),
        lambda i: i.token(groups=["bp-admins"], iss="http://127.0.0.1:1/other"),
        lambda i: i.alg_none(groups=["bp-admins"]),
        lambda i: i.hs256_with_public_key(groups=["bp-admins"]),
        lambda i: i.token(groups=["bp-admins"], kid="no-such-kid"),
    ],
    ids=["expired", "audience", "issuer", "alg-none", "hs256-public-key", "unknown-kid"],
)
def test_bad_jwts_are_401(fed: Federation, issuer: OidcIssuer, forge: Any) -> None:
    response = bearer(fed, "GET", "/admin/backends", forge(issuer))
    assert response.status_code == 401, response.text
    assert b"<Code>InvalidToken</Code>" in response.content


def test_key_rotated_at_the_issuer(fed: Federation, issuer: OidcIssuer) -> None:
    assert statuses(fed, "GET", "/admin/backends", issuer.token(groups=["bp-viewers"])) == {200}
    issuer.rotate()
    time.sleep(1.5)  # past the issuer's jwks_refetch_min_s (1 s): an unknown kid refetches
    fetched = issuer.jwks_fetches
    rotated = issuer.token(groups=["bp-viewers"])
    assert statuses(fed, "GET", "/admin/backends", rotated) == {200}
    assert fetched < issuer.jwks_fetches <= fetched + 2  # once per replica


def _cli(fed: Federation, *args: str) -> subprocess.CompletedProcess[str]:
    settings = fed.settings
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args],
        env={
            **os.environ,
            "BP_STATE_DIR": settings.state_dir,
            "BP_HTTP_HOST": settings.http_host,
            "BP_HTTP_PORT": str(settings.http_port),
        },
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_rotated_bootstrap_token_is_refused_at_once(fed: Federation) -> None:
    old = fed.admin_token
    assert statuses(fed, "GET", "/admin/backends", old) == {200}
    done = _cli(fed, "admin", "token", "rotate")
    assert done.returncode == 0, done.stderr
    new = Path(fed.settings.admin_token_path).read_text().strip()
    assert new and new != old and new not in done.stdout
    fed.admin_token = new
    assert statuses(fed, "GET", "/admin/backends", old) == {401}
    assert statuses(fed, "GET", "/admin/backends", new) == {200}
    rows = fed.sql("SELECT token_hash, revoked_at IS NULL AS active FROM admin_tokens")
    assert {r["token_hash"]: r["active"] for r in rows} == {  # hashes only, never tokens
        hash_token(old): False,
        hash_token(new): True,
    }


def _s3_statuses(client: Any) -> set[str]:
    """The outcome of SPREAD ListBuckets calls: "ok" or the S3 error code."""
    seen = set()
    for _ in range(SPREAD):
        try:
            client.list_buckets()
            seen.add("ok")
        except ClientError as exc:
            seen.add(exc.response["Error"]["Code"])
    return seen


def test_tenant_and_key_lifecycle(fed: Federation) -> None:
    name, key1, secret1 = fed.create_tenant(allow_plaintext=True)
    extra = fed.admin("POST", f"/admin/tenants/{name}/keys")
    assert extra.status_code == 200, extra.text
    key2, secret2 = extra.json()["access_key_id"], extra.json()["secret_access_key"]
    listed = fed.admin("GET", f"/admin/tenants/{name}/keys").json()
    assert {k["access_key_id"] for k in listed} == {key1, key2}
    assert "secret" not in str(listed)
    one, two = fed.s3(key1, secret1), fed.s3(key2, secret2)
    assert _s3_statuses(two) == {"ok"}  # cached on both replicas now

    # A disabled key is refused at once, on every replica; the tenant's other key is not.
    assert fed.admin("POST", f"/admin/tenants/{name}/keys/{key2}/disable").status_code == 200
    assert _s3_statuses(two) == {"InvalidAccessKeyId"}
    assert _s3_statuses(one) == {"ok"}
    assert fed.admin("POST", f"/admin/tenants/{name}/keys/{key2}/enable").status_code == 200
    assert _s3_statuses(two) == {"ok"}

    # A rotated secret: the old one no longer signs, the new one does.
    rotated = fed.admin("POST", f"/admin/tenants/{name}/keys/{key1}/rotate").json()
    assert rotated["access_key_id"] == key1 and rotated["secret_access_key"] != secret1
    assert _s3_statuses(one) == {"SignatureDoesNotMatch"}
    one = fed.s3(key1, rotated["secret_access_key"])
    assert _s3_statuses(one) == {"ok"}

    # Deleted: gone from the list and refused.
    assert fed.admin("DELETE", f"/admin/tenants/{name}/keys/{key2}").status_code == 200
    assert _s3_statuses(two) == {"InvalidAccessKeyId"}
    assert fed.admin("DELETE", f"/admin/tenants/{name}/keys/{key2}").status_code == 404

    # The tenant disabled: all its keys refused at once; enabled again: accepted.
    assert fed.admin("POST", f"/admin/tenants/{name}/disable").status_code == 200
    shown = fed.admin("GET", f"/admin/tenants/{name}").json()
    assert shown["state"] == "disabled" and len(shown["access_keys"]) == 1
    assert _s3_statuses(one) == {"InvalidAccessKeyId"}
    assert fed.admin("POST", f"/admin/tenants/{name}/enable").status_code == 200
    assert _s3_statuses(one) == {"ok"}

    # Deleting is refused while the tenant has a bucket, then allowed.
    one.create_bucket(Bucket="keep")
    refused = fed.admin("DELETE", f"/admin/tenants/{name}")
    assert refused.status_code == 409 and b"bucket" in refused.content
    one.delete_bucket(Bucket="keep")
    deleted = fed.admin("DELETE", f"/admin/tenants/{name}")
    assert deleted.status_code == 200, deleted.text
    assert _s3_statuses(one) == {"InvalidAccessKeyId"}
    assert name not in {t["tenant"] for t in fed.admin("GET", "/admin/tenants").json()}
    actions = {
        r["action"]
        for r in fed.sql("SELECT action FROM audit_log WHERE resource LIKE $1", f"tenant/{name}%")
    }
    assert {
        "CreateAccessKey",
        "DisableAccessKey",
        "RotateAccessKey",
        "DeleteAccessKey",
        "DisableTenant",
        "DeleteTenant",
    } <= actions


def test_tenant_and_key_cli(fed: Federation) -> None:
    env_token = {"BP_ADMIN_TOKEN": fed.admin_token}

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "cluster.cli", *args],
            env={**os.environ, "BP_HTTP_PORT": str(fed.settings.http_port), **env_token},
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    first_key, _ = cli("tenant", "create", "cli-tenants").split()
    second_key, _ = cli("key", "create", "cli-tenants").split()
    assert {first_key, second_key} <= set(cli("key", "list", "cli-tenants").split())
    assert "disabled" in cli("key", "disable", "cli-tenants", second_key)
    assert "cli-tenants" in cli("tenant", "list")
    assert "disabled" in cli("tenant", "show", "cli-tenants")
    assert "deleted" in cli("tenant", "delete", "cli-tenants")


# -- bodies: the token before a byte is read, then a cap while reading -------------------------
def _raw_post(fed: Federation, headers: list[str], first: bytes, chunked: bool = False) -> bytes:
    """Send a POST's headers and the first bytes of a body that would go on for gigabytes,
    then read the answer without sending more. Returns the status line."""
    host, port = fed.settings.http_host, fed.settings.http_port
    with socket.create_connection((host, port), timeout=60) as sock:
        head = "\r\n".join(["POST /admin/add-storage HTTP/1.1", f"Host: {host}", *headers])
        sock.sendall(head.encode() + b"\r\n\r\n")
        if chunked:
            for _ in range(16):
                sock.sendall(b"%x\r\n" % len(first) + first + b"\r\n")
        else:
            sock.sendall(first)
        answer = b""
        while b"\r\n" not in answer:
            got = sock.recv(4096)
            if not got:
                break
            answer += got
    return answer.split(b"\r\n", 1)[0]


def test_anonymous_huge_post_is_refused_unread(fed: Federation) -> None:
    four_gib = str(4 * 1024**3)
    status = _raw_post(fed, [f"Content-Length: {four_gib}"], b"x" * 65536)
    assert status.startswith(b"HTTP/1.1 401"), status


def test_authenticated_huge_posts_are_refused_at_the_cap(fed: Federation) -> None:
    auth = f"Authorization: Bearer {fed.admin_token}"
    declared = _raw_post(fed, [auth, f"Content-Length: {4 * 1024**3}"], b"x" * 65536)
    assert declared.startswith(b"HTTP/1.1 413"), declared
    streamed = _raw_post(fed, [auth, "Transfer-Encoding: chunked"], b"x" * 65536, chunked=True)
    assert streamed.startswith(b"HTTP/1.1 413"), streamed
