"""The import API and CLI against the real federation: a tenant creates a source from sealed
credentials (plaintext refused), tests the connection (bad credentials, unreachable source and
a wrong passphrase are clear errors), creates an import into one of its buckets, starts it
with the passphrase (wrong: 403, audited, nothing submitted; right: held by the keyholder and
submitted to Ray's Job Submission API as ``bp-import-<run>-<attempt>`` with nothing secret in
what Ray keeps), watches its status, cancels and resumes it; another tenant sees none of it;
the operator does the same through ``bulletproof import``; and afterwards neither the source
secret key nor the passphrase is anywhere in PostgreSQL or Redis.

Until the job driver (``jobs/importer.py``) is on main a submitted job may fail at its
entrypoint; these tests check what the API owns: the submission, its id and entrypoint, and
where the passphrase is.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import ray
import redis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from actors.import_keyholder import keyholder
from core.credential_seal import seal
from tests.support.cluster import Federation
from tests.support.processes import MotoServer, free_port
from tests.support.source_moto import iam_source

pytestmark = pytest.mark.integration

PASSPHRASE = "import passphrase " + secrets.token_hex(8)
BUCKET = "legacy"
KEYS = ["a.txt", "dir/b.bin", "dir/c d.txt"]


class Api:
    """The tenant's import API, every request signed with SigV4 as an S3 client signs."""

    def __init__(self, cluster: Federation, access_key: str, secret: str) -> None:
        self.cluster = cluster
        self.credentials = Credentials(access_key, secret)

    def call(
        self, method: str, path: str, body: Any = None, *, unsigned: bool = False
    ) -> httpx.Response:
        data = b"" if body is None else json.dumps(body).encode()
        url = f"{self.cluster.endpoint}{path}"
        request = AWSRequest(method=method, url=url, data=data)
        if unsigned:
            request.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        else:
            import hashlib

            request.headers["x-amz-content-sha256"] = hashlib.sha256(data).hexdigest()
        SigV4Auth(self.credentials, "s3", self.cluster.settings.region).add_auth(request)
        return httpx.request(
            method, url, content=data, headers=dict(request.headers.items()), timeout=60
        )

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        response = self.call(method, path, body)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def source_moto() -> Iterator[tuple[MotoServer, dict[str, str]]]:
    """A moto source that checks credentials, with ``legacy`` holding three objects."""
    with iam_source(BUCKET, {name: name.encode() * 10 for name in KEYS}) as source:
        yield source


def _tenant(cluster: Federation, *, publish: bool = True) -> tuple[str, Api, str]:
    """A tenant (with a published key unless told not), its API and a destination bucket."""
    name, key, secret = cluster.create_tenant()
    if publish:
        cluster.sql(
            "INSERT INTO tenant_public_keys (tenant_id, key_id, key_version, wrap_alg,"
            " public_key_pem) SELECT id, 'k1', 1, 'RSA-OAEP-256', 'PEM' FROM tenants"
            " WHERE name = $1",
            name,
        )
    bucket = f"dest-{secrets.token_hex(4)}"
    cluster.s3(key, secret).create_bucket(Bucket=bucket)
    return name, Api(cluster, key, secret), bucket


@pytest.fixture(scope="module")
def tenant_a(cluster: Federation) -> tuple[str, Api, str]:
    return _tenant(cluster)


@pytest.fixture(scope="module")
def sealed(source_moto: tuple[MotoServer, dict[str, str]]) -> str:
    _, keys = source_moto
    return seal({"access_key": keys["access_key"], "secret_key": keys["secret_key"]}, PASSPHRASE)


def _source(api: Api, endpoint: str, sealed: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": f"src-{secrets.token_hex(3)}",
        "endpoint": endpoint,
        "bucket": BUCKET,
        "sealed": sealed,
        **extra,
    }
    return dict(api.ok("POST", "/import/sources", body))


def _jobs() -> Any:
    from actors.import_jobs import ImportJobs

    return ImportJobs()


def _audit(cluster: Federation, action: str, resource: str) -> list[dict[str, Any]]:
    return cluster.sql(
        "SELECT actor, action, resource, result FROM audit_log WHERE action = $1 AND resource = $2",
        action,
        resource,
    )


def test_sources_take_sealed_credentials_only(
    cluster: Federation, tenant_a: tuple[str, Api, str], source_moto: Any, sealed: str
) -> None:
    _, api, _ = tenant_a
    server, keys = source_moto
    base = {"name": "plain", "endpoint": server.endpoint, "bucket": BUCKET}
    for body in (
        {**base, "access_key": keys["access_key"], "secret_key": keys["secret_key"]},
        {**base, "sealed": sealed, "secret_key": keys["secret_key"]},
    ):
        response = api.call("POST", "/import/sources", body)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "InvalidSealedCredentials"
        assert "plaintext credentials are refused" in response.json()["message"]
        assert keys["secret_key"] not in response.text
    bad = api.call("POST", "/import/sources", {**base, "sealed": '{"v": 1}'})
    assert bad.status_code == 400 and bad.json()["error"] == "InvalidSealedCredentials"
    assert "missing" in bad.json()["message"]
    for body, word in (
        ({**base, "sealed": sealed, "endpoint": "ftp://x"}, "endpoint"),
        ({"endpoint": server.endpoint, "bucket": BUCKET, "sealed": sealed}, "name"),
    ):
        response = api.call("POST", "/import/sources", body)
        assert response.status_code == 400 and word in response.json()["message"], response.text
    empty = api.call("POST", "/import/sources", None)  # no body: the fields are missing
    assert empty.status_code == 400 and empty.json()["error"] == "InvalidSealedCredentials"
    unsigned = api.call("POST", "/import/sources", {**base, "sealed": sealed}, unsigned=True)
    assert unsigned.status_code == 400 and "signed body" in unsigned.json()["message"]

    created = _source(api, server.endpoint, sealed, prefix="dir/")
    assert created["sealed"] is True and "ct" not in json.dumps(created)
    assert api.ok("GET", f"/import/sources/{created['id']}")["prefix"] == "dir/"
    assert created["id"] in [s["id"] for s in api.ok("GET", "/import/sources")]
    again = api.call("POST", "/import/sources", {**base, "name": created["name"], "sealed": sealed})
    assert again.status_code == 409 and again.json()["error"] == "Conflict"
    assert api.call("GET", "/import/nothing-here").status_code == 404
    assert api.call("DELETE", f"/import/sources/{created['id']}").status_code == 405


def test_test_connection_reports_each_failure_clearly(
    cluster: Federation, tenant_a: tuple[str, Api, str], source_moto: Any, sealed: str
) -> None:
    _, api, _ = tenant_a
    server, keys = source_moto
    good = _source(api, server.endpoint, sealed)
    result = api.ok("POST", f"/import/sources/{good['id']}/test", {"passphrase": PASSPHRASE})
    assert result["ok"] is True and [s["key"] for s in result["sample"]] == sorted(KEYS)

    wrong = api.call("POST", f"/import/sources/{good['id']}/test", {"passphrase": "not it!!"})
    assert wrong.status_code == 403 and wrong.json()["error"] == "WrongPassphrase"
    assert _audit(cluster, "ImportWrongPassphrase", f"import-source/{good['id']}")

    refused = _source(
        api,
        server.endpoint,
        seal({"access_key": keys["access_key"], "secret_key": "wrong-secret"}, PASSPHRASE),
    )
    response = api.call("POST", f"/import/sources/{refused['id']}/test", {"passphrase": PASSPHRASE})
    assert response.status_code == 403 and response.json()["error"] == "SourceAccessDenied"
    assert "SignatureDoesNotMatch" in response.json()["message"]
    assert "wrong-secret" not in response.text

    away = _source(api, f"http://127.0.0.1:{free_port()}", sealed)
    response = api.call("POST", f"/import/sources/{away['id']}/test", {"passphrase": PASSPHRASE})
    assert response.status_code == 502 and response.json()["error"] == "SourceUnreachable"
    assert "unreachable" in response.json()["message"]

    missing = _source(api, server.endpoint, sealed, bucket="no-such-bucket")
    response = api.call("POST", f"/import/sources/{missing['id']}/test", {"passphrase": PASSPHRASE})
    assert response.status_code == 404 and response.json()["error"] == "SourceBucketMissing"


def test_creating_an_import_checks_destination_and_recipients(
    cluster: Federation, tenant_a: tuple[str, Api, str], source_moto: Any, sealed: str
) -> None:
    _, api, bucket = tenant_a
    server, _ = source_moto
    source = _source(api, server.endpoint, sealed)
    response = api.call("POST", "/import/runs", {"source": source["id"], "destination": "nope"})
    assert response.status_code == 400 and "does not exist" in response.json()["message"]
    response = api.call(
        "POST",
        "/import/runs",
        {"source": source["id"], "destination": bucket, "recipients": ["unknown"]},
    )
    assert response.status_code == 400 and "not published" in response.json()["message"]
    response = api.call(
        "POST", "/import/runs", {"source": source["id"], "destination": bucket, "class": "Bogus"}
    )
    assert response.status_code == 400 and "redundancy class" in response.json()["message"]
    run = api.ok(
        "POST",
        "/import/runs",
        {"source": source["name"], "destination": f"{bucket}/imported/", "region_lock": ["eu"]},
    )
    assert run["destination"] == {"bucket": bucket, "prefix": "imported/"}
    assert run["recipients"] == [{"key_id": "k1", "key_version": 1}]
    assert run["run_state"] == "pending" and run["submission_id"] is None

    _, keyless, keyless_bucket = _tenant(cluster, publish=False)
    own = _source(keyless, server.endpoint, sealed)
    response = keyless.call(
        "POST", "/import/runs", {"source": own["id"], "destination": keyless_bucket}
    )
    assert response.status_code == 400, response.text
    assert "published no public key" in response.json()["message"]


def test_start_status_cancel_resume(
    cluster: Federation, tenant_a: tuple[str, Api, str], source_moto: Any, sealed: str
) -> None:
    _, api, bucket = tenant_a
    server, keys = source_moto
    source = _source(api, server.endpoint, sealed)
    run = api.ok("POST", "/import/runs", {"source": source["id"], "destination": bucket})
    rid = run["id"]

    # A wrong passphrase: a clear 403, audited, nothing held, nothing submitted.
    wrong = api.call("POST", f"/import/runs/{rid}/start", {"passphrase": "wrong passphrase"})
    assert wrong.status_code == 403 and wrong.json()["error"] == "WrongPassphrase"
    assert "passphrase" in wrong.json()["message"]
    assert _audit(cluster, "ImportWrongPassphrase", f"import/{rid}")[0]["result"] == "denied"
    assert api.ok("GET", f"/import/runs/{rid}")["submission_id"] is None
    assert ray.get(keyholder().get.remote(rid)) is None
    assert f"bp-import-{rid}-1" not in [j.submission_id for j in _jobs().list()]
    missing = api.call("POST", f"/import/runs/{rid}/start", {})
    assert missing.status_code == 400 and "passphrase" in missing.json()["message"]

    started = api.ok("POST", f"/import/runs/{rid}/start", {"passphrase": PASSPHRASE})
    assert started["submission_id"] == f"bp-import-{rid}-1"
    assert ray.get(keyholder().get.remote(rid)) == PASSPHRASE
    assert _audit(cluster, "ImportStart", f"import/{rid}")
    job = next(j for j in _jobs().list() if j.submission_id == f"bp-import-{rid}-1")
    assert job.entrypoint == f"python -m jobs.importer --run-id {rid}"
    shown = json.dumps([job.entrypoint, job.runtime_env, job.metadata])
    assert PASSPHRASE not in shown and keys["secret_key"] not in shown
    # Resubmitting the same id is a success, not a second job.
    assert _jobs().submit(rid, 1, tenant_id=0) == f"bp-import-{rid}-1"
    # Starting again: the same submission while the run is still pending, else a conflict.
    pending = api.ok("GET", f"/import/runs/{rid}")["run_state"] == "pending"
    again = api.call("POST", f"/import/runs/{rid}/start", {"passphrase": PASSPHRASE})
    if pending and again.status_code == 200:
        assert again.json()["submission_id"] == f"bp-import-{rid}-1"
    else:
        assert again.status_code == 409 and "resume" in again.json()["message"], again.text

    status = api.ok("GET", f"/import/runs/{rid}")
    for field in ("id", "state", "objects_total", "objects_done", "bytes_total", "bytes_done"):
        assert field in status
    assert status["state"] in ("GREEN", "YELLOW", "RED") and isinstance(status["errors"], int)
    assert {"objects_per_s", "bytes_per_s", "eta_s", "reason"} <= set(status)
    assert api.ok("GET", f"/import/runs/{rid}/errors")["errors"] == []

    cluster.wait_for(
        lambda: (_jobs().find(f"bp-import-{rid}-1") or job).status != "PENDING",
        timeout_s=60,
        what="the job to leave PENDING",
    )
    logs = _jobs().logs(f"bp-import-{rid}-1")
    assert PASSPHRASE not in logs and keys["secret_key"] not in logs

    cancelled = api.ok("POST", f"/import/runs/{rid}/cancel", {})
    assert cancelled["run_state"] == "cancelled"
    assert _audit(cluster, "ImportCancel", f"import/{rid}")
    cluster.wait_for(
        lambda: _jobs().get(f"bp-import-{rid}-1").finished, timeout_s=60, what="job stopped"
    )
    assert api.call("POST", f"/import/runs/{rid}/mark-source", {}).status_code == 409
    assert api.call("POST", f"/import/runs/{rid}/verify", {}).status_code == 409

    resumed = api.ok("POST", f"/import/runs/{rid}/resume", {})  # the keyholder still holds it
    assert resumed["submission_id"] == f"bp-import-{rid}-2"
    assert _audit(cluster, "ImportResume", f"import/{rid}")
    assert f"bp-import-{rid}-2" in [j.submission_id for j in _jobs().list()]

    # Stop attempt 2 at once (a fast driver could otherwise finish the import first), so the
    # run is resumable again; then the keyholder loses the passphrase (a restart, or the TTL):
    # resume needs it again.
    assert api.ok("POST", f"/import/runs/{rid}/cancel", {})["run_state"] == "cancelled"
    cluster.wait_for(
        lambda: _jobs().get(f"bp-import-{rid}-2").finished, timeout_s=90, what="job 2 ends"
    )
    ray.get(keyholder().drop.remote(rid))
    needed = api.call("POST", f"/import/runs/{rid}/resume", {})
    assert needed.status_code == 400 and needed.json()["error"] == "PassphraseRequired"
    bad = api.call("POST", f"/import/runs/{rid}/resume", {"passphrase": "still wrong"})
    assert bad.status_code == 403
    third = api.ok("POST", f"/import/runs/{rid}/resume", {"passphrase": PASSPHRASE})
    assert third["submission_id"] == f"bp-import-{rid}-3"
    assert ray.get(keyholder().get.remote(rid)) == PASSPHRASE


def test_a_tenant_never_sees_another_tenants_imports(
    cluster: Federation, tenant_a: tuple[str, Api, str], source_moto: Any, sealed: str
) -> None:
    _, api, bucket = tenant_a
    server, _ = source_moto
    source = _source(api, server.endpoint, sealed)
    run = api.ok("POST", "/import/runs", {"source": source["id"], "destination": bucket})
    _, other, other_bucket = _tenant(cluster)
    for method, path, body in (
        ("GET", f"/import/sources/{source['id']}", None),
        ("POST", f"/import/sources/{source['id']}/test", {"passphrase": PASSPHRASE}),
        ("GET", f"/import/runs/{run['id']}", None),
        ("GET", f"/import/runs/{run['id']}/errors", None),
        ("POST", f"/import/runs/{run['id']}/start", {"passphrase": PASSPHRASE}),
        ("POST", f"/import/runs/{run['id']}/cancel", {}),
        ("POST", f"/import/runs/{run['id']}/resume", {"passphrase": PASSPHRASE}),
        ("POST", f"/import/runs/{run['id']}/mark-source", {}),
        ("GET", f"/import/runs/{run['id']}/deletion-manifest", None),
    ):
        response = other.call(method, path, body)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"] == "NotFound"
    response = other.call(
        "POST", "/import/runs", {"source": source["id"], "destination": other_bucket}
    )
    assert response.status_code == 404
    assert other.ok("GET", "/import/sources") == []
    assert other.ok("GET", "/import/runs")["imports"] == []
    assert api.ok("GET", f"/import/runs/{run['id']}")["run_state"] == "pending"
    unsigned = httpx.get(f"{cluster.endpoint}/import/runs", timeout=30)
    assert unsigned.status_code in (400, 403) and "error" in unsigned.json()


def test_admin_lists_every_tenants_imports(
    cluster: Federation, tenant_a: tuple[str, Api, str], source_moto: Any, sealed: str
) -> None:
    name, api, bucket = tenant_a
    server, _ = source_moto
    source = _source(api, server.endpoint, sealed)
    run = api.ok("POST", "/import/runs", {"source": source["id"], "destination": bucket})
    listed = cluster.admin("GET", "/admin/imports").json()["imports"]
    mine = next(r for r in listed if r["id"] == run["id"])
    assert mine["tenant"] == name and mine["state"] == "YELLOW"
    only = cluster.admin("GET", f"/admin/imports?tenant={name}").json()["imports"]
    assert {r["tenant"] for r in only} == {name}
    status = cluster.admin("GET", f"/admin/imports/{run['id']}")
    assert status.status_code == 200 and status.json()["tenant"] == name
    assert cluster.admin("GET", "/admin/imports/999999").status_code == 404
    assert httpx.get(f"{cluster.endpoint}/admin/imports", timeout=30).status_code == 401
    shown = cluster.admin("GET", f"/admin/import-sources/{source['id']}")
    assert shown.status_code == 200 and shown.json()["name"] == source["name"]


def _cli(cluster: Federation, *args: str, env: dict[str, str] | None = None) -> Any:
    settings = cluster.settings
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", "import", *args],
        env={
            **os.environ,
            "BP_HTTP_HOST": settings.http_host,
            "BP_HTTP_PORT": str(settings.http_port),
            "BP_ADMIN_TOKEN": cluster.admin_token,
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_operator_cli_start_status_cancel_resume(
    cluster: Federation, tenant_a: tuple[str, Api, str], source_moto: Any, tmp_path: Any
) -> None:
    name, _, bucket = tenant_a
    server, keys = source_moto
    secrets_env = {
        "BP_SOURCE_ACCESS_KEY": keys["access_key"],
        "BP_SOURCE_SECRET_KEY": keys["secret_key"],
        "BP_IMPORT_PASSPHRASE": PASSPHRASE,
    }
    sealed_file = tmp_path / "sealed.json"
    done = _cli(cluster, "seal-credentials", "--out", str(sealed_file), env=secrets_env)
    assert done.returncode == 0, done.stderr
    assert keys["secret_key"] not in sealed_file.read_text()
    assert oct(sealed_file.stat().st_mode & 0o777) == "0o600"

    common = ["--tenant", name, "--source", f"s3://{BUCKET}/dir/"]
    common += ["--source-endpoint", server.endpoint, "--to", f"{bucket}/cli/"]
    wrong = _cli(
        cluster, "start", *common, "--credentials", str(sealed_file),
        env={"BP_IMPORT_PASSPHRASE": "not the passphrase"},
    )  # fmt: skip
    assert wrong.returncode != 0 and "WrongPassphrase" in wrong.stderr
    started = _cli(cluster, "start", *common, "--region-lock", "eu", env=secrets_env)
    assert started.returncode == 0, started.stderr
    rid = int(started.stdout.strip().splitlines()[-1])
    assert f"bp-import-{rid}-1" in started.stdout
    assert PASSPHRASE not in started.stdout + started.stderr

    status = _cli(cluster, "status", str(rid), "--json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["id"] == rid and doc["state"] in ("GREEN", "YELLOW", "RED")
    assert {"objects_total", "objects_done", "bytes_total", "bytes_done", "errors"} <= set(doc)
    assert doc["region_lock"] == ["eu"] and doc["destination"]["prefix"] == "cli/"
    shown = _cli(cluster, "status", str(rid))
    assert shown.returncode == 0 and "objects" in shown.stdout and "reason:" in shown.stdout
    listed = _cli(cluster, "list", "--tenant", name)
    assert listed.returncode == 0 and str(rid) in listed.stdout

    if doc["run_state"] != "done":
        cancelled = _cli(cluster, "cancel", str(rid))
        assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout, cancelled.stderr
        watched = _cli(cluster, "status", str(rid), "--watch")
        assert watched.returncode == 0 and "YELLOW" in watched.stdout
        resumed = _cli(cluster, "resume", str(rid))
        assert resumed.returncode == 0, resumed.stderr
        assert f"bp-import-{rid}-2" in resumed.stdout
    mark = _cli(cluster, "mark-source", str(rid))
    assert (mark.returncode == 0) == (doc["state"] == "GREEN")
    if mark.returncode:
        assert "only a GREEN import" in mark.stderr
    assert _cli(cluster, "status", "999999").returncode != 0


def test_no_secret_in_postgres_or_redis(
    cluster: Federation, tenant_a: tuple[str, Api, str], source_moto: Any, sealed: str
) -> None:
    """After every flow above: the source secret key and the passphrase are nowhere in the
    metadata store or the cache (the sealed blob is stored; it is not the secret)."""
    _, keys = source_moto
    needles = [keys["secret_key"], PASSPHRASE, "wrong-secret"]
    tables = [
        r["table_name"]
        for r in cluster.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    ]
    assert "import_runs" in tables and "audit_log" in tables
    for table in tables:
        rows = cluster.sql(f'SELECT t::text AS row FROM "{table}" t')
        text = "\n".join(r["row"] for r in rows)
        for needle in needles:
            assert needle not in text, f"a secret is in table {table}"
    client = redis.Redis.from_url(cluster.redis.url)
    for key in client.scan_iter(count=1000):
        blob = key + (client.dump(key) or b"")
        for needle in needles:
            assert needle.encode() not in blob, f"a secret is in redis key {key!r}"
