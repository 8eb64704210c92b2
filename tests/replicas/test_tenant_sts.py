"""OIDC for tenants (issue 14): ``AssumeRoleWithWebIdentity`` on the gateway, driven by boto3's
own STS client, on the replicas tier's federation (two gateway replicas, the test issuer trusted
with the rules of ``conftest.STS_RULES``).

- a token of the issuer whose claims match a rule gives temporary credentials with which a
  plain boto3 S3 client (session token included) creates, PUTs and GETs in that tenant only;
- a token for another audience or from another issuer, or unsigned, is ``InvalidIdentityToken``;
  claims matching no rule, or a rule naming a tenant that does not exist, ``AccessDenied``;
- a duration above the rule's maximum is ``ValidationError`` (as AWS does, never clamped);
- credentials without their session token, or with another, are refused (``InvalidToken``);
  expired ones ``ExpiredToken``; revoked ones (one session, or every session of a subject via
  ``bulletproof session revoke``) at once on both replicas.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.replicas.conftest import SPREAD, STS_AUDIENCE
from tests.support.cluster import Federation
from tests.support.oidc_issuer import OidcIssuer

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::000000000000:role/bulletproof"
def sts(fed: Federation) -> Any:
    return boto3.client(
        "sts",
        endpoint_url=fed.endpoint,
        region_name=fed.settings.region,
        aws_access_key_id="unused",
        aws_secret_access_key="unused",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def assume(fed: Federation, token: str, **extra: Any) -> dict[str, Any]:
    answer = sts(fed).assume_role_with_web_identity(
        RoleArn=ROLE, RoleSessionName="ci-run", WebIdentityToken=token, **extra
    )
    return dict(answer)


def refused(fed: Federation, token: str, **extra: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as caught:
        assume(fed, token, **extra)
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def s3_with(fed: Federation, creds: dict[str, Any], token: str | None = "given") -> Any:
    session_token = creds["SessionToken"] if token == "given" else token
    return boto3.client(
        "s3",
        endpoint_url=fed.endpoint,
        region_name=fed.settings.region,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=session_token,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            signature_version="s3v4",
        ),
    )


def outcomes(client: Any) -> set[str]:
    seen = set()
    for _ in range(SPREAD):
        try:
            client.list_buckets()
            seen.add("ok")
        except ClientError as exc:
            seen.add(exc.response["Error"]["Code"])
    return seen


def ensure_tenant(fed: Federation, name: str) -> None:
    if fed.admin("GET", f"/admin/tenants/{name}").status_code == 200:
        return
    made = fed.admin("POST", "/admin/tenants", {"name": name, "allow_plaintext": True})
    assert made.status_code == 200, made.text


def acme_token(issuer: OidcIssuer, sub: str = "alice") -> str:
    return issuer.token(sub, aud=STS_AUDIENCE, groups=["staff", "acme-writers"])


def test_boto3_gets_credentials_scoped_to_one_tenant(fed: Federation, issuer: OidcIssuer) -> None:
    ensure_tenant(fed, "sts-acme")
    _, other_key, other_secret = fed.create_tenant(allow_plaintext=True)
    other = fed.s3(other_key, other_secret)
    other.create_bucket(Bucket="sts-not-yours")
    other.put_object(Bucket="sts-not-yours", Key="secret", Body=b"other tenant's")

    before = datetime.now(UTC)
    answer = assume(fed, acme_token(issuer), DurationSeconds=3600)
    creds = answer["Credentials"]
    assert answer["SubjectFromWebIdentityToken"] == "alice"
    assert answer["AssumedRoleUser"]["Arn"].endswith("/bulletproof/ci-run")
    lifetime = (creds["Expiration"] - before).total_seconds()
    assert 3540 <= lifetime <= 3660, creds["Expiration"]

    s3 = s3_with(fed, creds)
    s3.create_bucket(Bucket="sts-acme-data")
    s3.put_object(Bucket="sts-acme-data", Key="hello.txt", Body=b"from a web identity")
    body = s3.get_object(Bucket="sts-acme-data", Key="hello.txt")["Body"].read()
    assert body == b"from a web identity"
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["sts-acme-data"]
    # A presigned URL carries the session token in its query (X-Amz-Security-Token).
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "sts-acme-data", "Key": "hello.txt"}, ExpiresIn=300
    )
    assert "X-Amz-Security-Token=" in url
    assert httpx.get(url, timeout=30).content == b"from a web identity"
    forged = httpx.get(url.replace("X-Amz-Security-Token=", "X-Amz-Security-Token=x"))
    assert forged.status_code == 400 and b"<Code>InvalidToken</Code>" in forged.content
    with pytest.raises(ClientError) as foreign:
        s3.get_object(Bucket="sts-not-yours", Key="secret")
    assert foreign.value.response["Error"]["Code"] == "NoSuchBucket"
    owner = fed.sql(
        "SELECT t.name FROM buckets b JOIN tenants t ON t.id = b.tenant_id WHERE b.name = $1",
        "sts-acme-data",
    )
    assert owner == [{"name": "sts-acme"}]
    audit = fed.sql(
        "SELECT actor FROM audit_log WHERE action = 'AssumeRoleWithWebIdentity' AND resource = $1",
        f"session/{creds['AccessKeyId']}",
    )
    assert audit == [{"actor": "oidc:test-sts:alice"}]
    stored = fed.sql(
        "SELECT sealed_secret, session_token_sha256 FROM access_keys WHERE access_key_id = $1",
        creds["AccessKeyId"],
    )[0]
    assert creds["SecretAccessKey"].encode() not in bytes(stored["sealed_secret"])
    assert creds["SessionToken"].encode() not in bytes(stored["session_token_sha256"])

    # The session token is part of the credentials: without it, or with another, refused.
    assert outcomes(s3_with(fed, creds, token=None)) == {"InvalidToken"}
    assert outcomes(s3_with(fed, creds, token="BPS1" + "x" * 64)) == {"InvalidToken"}
    assert outcomes(s3) == {"ok"}


def test_tokens_of_other_audiences_issuers_or_unsigned_are_invalid(
    fed: Federation, issuer: OidcIssuer
) -> None:
    ensure_tenant(fed, "sts-acme")
    groups = ["acme-writers"]
    for token in (
        issuer.token(aud="bulletproof-admin", groups=groups),  # the admin audience
        issuer.token(aud=STS_AUDIENCE, groups=groups, iss="http://127.0.0.1:1/other"),
        issuer.token(aud=STS_AUDIENCE, groups=groups, exp=int(time.time()) - 600),
        issuer.alg_none(aud=STS_AUDIENCE, groups=groups),
        issuer.hs256_with_public_key(aud=STS_AUDIENCE, groups=groups),
        "not-a-jwt",
    ):
        assert refused(fed, token) == (400, "InvalidIdentityToken"), token


def test_claims_matching_no_rule_are_denied(fed: Federation, issuer: OidcIssuer) -> None:
    assert refused(fed, issuer.token("mallory", aud=STS_AUDIENCE, groups=["staff"])) == (
        403,
        "AccessDenied",
    )
    # A rule whose tenant does not exist grants nothing either.
    assert refused(fed, issuer.token("ghost", aud=STS_AUDIENCE)) == (403, "AccessDenied")


def test_durations_beyond_the_rule_are_refused_not_clamped(
    fed: Federation, issuer: OidcIssuer
) -> None:
    ensure_tenant(fed, "sts-short")
    assert refused(fed, acme_token(issuer), DurationSeconds=7200) == (400, "ValidationError")
    short = issuer.token("short-lived", aud=STS_AUDIENCE)
    assert refused(fed, short, DurationSeconds=1800) == (400, "ValidationError")
    # boto3 refuses < 900 itself; the gateway too, for clients that do not (a raw form POST).
    raw = httpx.post(
        fed.endpoint + "/",
        data={
            "Action": "AssumeRoleWithWebIdentity",
            "Version": "2011-06-15",
            "RoleArn": ROLE,
            "RoleSessionName": "raw",
            "WebIdentityToken": short,
            "DurationSeconds": "899",
        },
        timeout=30,
    )
    assert raw.status_code == 400 and b"<Code>ValidationError</Code>" in raw.content
    before = datetime.now(UTC)
    creds = assume(fed, short)["Credentials"]  # no DurationSeconds: the rule's maximum
    assert 840 <= (creds["Expiration"] - before).total_seconds() <= 960
    assert outcomes(s3_with(fed, creds)) == {"ok"}


def test_expired_credentials_are_refused(fed: Federation, issuer: OidcIssuer) -> None:
    ensure_tenant(fed, "sts-acme")
    creds = assume(fed, acme_token(issuer), DurationSeconds=900)["Credentials"]
    # Fifteen minutes later (the row's expiry moved, never used before: nothing is cached).
    fed.sql(
        "UPDATE access_keys SET expires_at = now() - interval '1 second' WHERE access_key_id = $1",
        creds["AccessKeyId"],
    )
    assert outcomes(s3_with(fed, creds)) == {"ExpiredToken"}


def _cli(fed: Federation, *args: str) -> subprocess.CompletedProcess[str]:
    settings = fed.settings
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args],
        env={
            **os.environ,
            "BP_ADMIN_TOKEN": fed.admin_token,
            "BP_HTTP_HOST": settings.http_host,
            "BP_HTTP_PORT": str(settings.http_port),
        },
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_revoked_sessions_are_refused_at_once_on_every_replica(
    fed: Federation, issuer: OidcIssuer
) -> None:
    ensure_tenant(fed, "sts-acme")
    one = assume(fed, acme_token(issuer, "carol"))["Credentials"]
    client = s3_with(fed, one)
    assert outcomes(client) == {"ok"}  # cached on both replicas now
    revoked = fed.admin("POST", f"/admin/sessions/{one['AccessKeyId']}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert outcomes(client) == {"InvalidAccessKeyId"}
    again = fed.admin("POST", f"/admin/sessions/{one['AccessKeyId']}/revoke")
    assert again.status_code == 404

    # Every session of a subject, by the operator CLI.
    first = s3_with(fed, assume(fed, acme_token(issuer, "dave"))["Credentials"])
    second = s3_with(fed, assume(fed, acme_token(issuer, "dave"))["Credentials"])
    bystander = s3_with(fed, assume(fed, acme_token(issuer, "erin"))["Credentials"])
    for client in (first, second, bystander):
        assert outcomes(client) == {"ok"}
    listed = fed.admin("GET", "/admin/sessions?subject=dave").json()
    assert len(listed) == 2 and {s["tenant"] for s in listed} == {"sts-acme"}
    done = _cli(fed, "session", "revoke", "--subject", "dave")
    assert done.returncode == 0 and "revoked 2 session(s)" in done.stdout, done.stderr
    assert outcomes(first) == {"InvalidAccessKeyId"}
    assert outcomes(second) == {"InvalidAccessKeyId"}
    assert outcomes(bystander) == {"ok"}
    assert fed.admin("GET", "/admin/sessions?subject=dave").json() == []
