"""The console in a real browser (Debian's Chromium, headless, driven by Playwright) against a
whole federation and a moto source of 200 objects, one over 50 MiB: sign in, add a source
(sealed in the page with WebCrypto), test the connection, choose the policy with a live
explain that says what ``bulletproof policy explain`` says, start (a wrong passphrase first:
nothing starts), watch the dashboard turn GREEN, mark the source and download the deletion
manifest. Also: a blob the page sealed opens in Python and one the CLI's code sealed opens in
the page; the source secret and the passphrase are in no table, Redis value, log or browser
storage; a second tenant sees nothing of the first's (API and page); the pages are served
with a strict CSP and the S3 catch-all does not swallow ``/ui``. Screenshots of every page go
to ``tests/browser/artifacts/`` (git-ignored)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
import redis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from client.recipient import key_id, wrap_alg_for
from core.credential_seal import open_sealed, seal
from tests.browser.conftest import MiB, Tab, in_thread
from tests.support.cluster import Federation
from tests.support.processes import free_port
from tests.support.source_moto import iam_source

pytestmark = pytest.mark.integration

PASSPHRASE = "console passphrase " + secrets.token_hex(6)
BUCKET = "legacy"
BIG_KEY = "big/over-50MiB.bin"
GREEN_TIMEOUT_MS = 420_000


@pytest.fixture(scope="module")
def source() -> Iterator[tuple[Any, dict[str, str], dict[str, bytes]]]:
    objects = {f"data/{i:03d}.txt": f"object {i} ".encode() * (i % 7 + 1) for i in range(199)}
    objects[BIG_KEY] = os.urandom(51 * MiB)
    with iam_source(BUCKET, objects) as (server, keys):
        yield server, keys, objects


class Tenant:
    """A tenant with a published X25519 key and a destination bucket."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.name, self.access_key, self.secret = fed.create_tenant()
        tenant_id = in_thread(fed.sql, "SELECT id FROM tenants WHERE name = $1", self.name)[0]
        public = x25519.X25519PrivateKey.generate().public_key()
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        in_thread(
            fed.sql,
            "INSERT INTO tenant_public_keys (tenant_id, key_id, key_version, wrap_alg,"
            " public_key_pem) VALUES ($1, $2, 1, $3, $4)",
            tenant_id["id"],
            key_id(public),
            wrap_alg_for(public),
            pem,
        )
        self.bucket = f"dest-{secrets.token_hex(3)}"
        fed.s3(self.access_key, self.secret).create_bucket(Bucket=self.bucket)

    def api(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """A SigV4-signed call with the body's hash signed, as the page makes it."""
        data = b"" if body is None else json.dumps(body).encode()
        url = f"{self.fed.endpoint}{path}"
        request = AWSRequest(method=method, url=url, data=data)
        request.headers["x-amz-content-sha256"] = hashlib.sha256(data).hexdigest()
        SigV4Auth(
            Credentials(self.access_key, self.secret), "s3", self.fed.settings.region
        ).add_auth(request)
        return httpx.request(
            method, url, content=data, headers=dict(request.headers.items()), timeout=60
        )


@pytest.fixture(scope="module")
def alice(fed: Federation) -> Tenant:
    return Tenant(fed)


@pytest.fixture(scope="module")
def bob(fed: Federation) -> Tenant:
    return Tenant(fed)


def _stable(lines: list[str]) -> tuple[list[str], list[str]]:
    """Explain lines with what moves between two calls taken out: the live RTT figures, and
    the order of the targets (ranked by those RTTs)."""
    plain = [re.sub(r"rtt [\d.]+ ms", "rtt _ ms", line) for line in lines]
    targets = sorted(re.sub(r"^target \d+: ", "", x) for x in plain if x.startswith("target "))
    return [x for x in plain if not x.startswith("target ")], targets


def wait_on_run(tab: Tab, tenant: Tenant, run_id: int, locator: Any, timeout_ms: int) -> None:
    """Wait for ``locator``; on time-out fail with the run's status and its job's log tail."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        locator.wait_for(timeout=timeout_ms)
    except PlaywrightTimeout:
        tab.shot("failed-dashboard")
        status = tenant.api("GET", f"/import/runs/{run_id}").json()
        logs = ""
        if status.get("submission_id"):
            from actors.import_jobs import ImportJobs

            logs = ImportJobs().logs(status["submission_id"])[-3000:]
        raise AssertionError(f"dashboard stuck; run: {status}; job log tail:\n{logs}") from None


def sign_in(tab: Tab, tenant: Tenant, route: str = "/overview") -> None:
    page = tab.page
    page.goto(f"/ui/#{route}")
    page.get_by_label("Access key ID").fill(tenant.access_key)
    page.get_by_label("Secret access key").fill(tenant.secret)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"tenant {tenant.name}").wait_for()


def test_pages_are_served_with_a_strict_policy(fed: Federation) -> None:
    page = httpx.get(f"{fed.endpoint}/ui/", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text and " style=" not in page.text  # nothing inline
    assert httpx.get(f"{fed.endpoint}/ui", timeout=30).headers["location"] == "/ui/"
    script = httpx.get(f"{fed.endpoint}/ui/js/app.js", timeout=30)
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert httpx.get(f"{fed.endpoint}/ui/config.json", timeout=30).json() == {
        "region": fed.settings.region
    }
    for missing in (
        "/ui/nothing.js",
        "/ui/%2e%2e/pyproject.toml",
        "/ui/js/%2e%2e/%2e%2e/assets.py",
    ):
        assert httpx.get(f"{fed.endpoint}{missing}", timeout=30).status_code == 404, missing
    unsigned = httpx.get(f"{fed.endpoint}/ui/api/whoami", timeout=30)
    assert unsigned.status_code in (400, 403) and "error" in unsigned.json()


def test_wrong_keys_do_not_sign_in(tab: Tab, alice: Tenant) -> None:
    page = tab.page
    page.goto("/ui/")
    page.get_by_label("Access key ID").fill(alice.access_key)
    page.get_by_label("Secret access key").fill("not-the-secret")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Sign-in failed").wait_for()
    tab.shot("00-signin-failed")
    assert page.locator("#nav").is_hidden()


def test_whole_flow_to_green(
    tab: Tab, fed: Federation, alice: Tenant, source: Any, tmp_path: Path
) -> None:
    server, keys, objects = source
    page = tab.page
    page.goto("/ui/")
    page.get_by_role("heading", name="Sign in").wait_for()
    tab.shot("01-signin")
    sign_in(tab, alice)
    page.get_by_role("heading", name="Your replicas").wait_for()
    tab.shot("02-overview-empty")

    # -- add a source: sealed in the page, only the blob is sent
    page.goto("/ui/#/sources")
    page.get_by_text("No source yet").wait_for()
    add = page.locator("form[aria-labelledby=add-title]")
    add.get_by_label("Name").fill("legacy-src")
    add.get_by_label("Endpoint URL").fill(server.endpoint)
    add.get_by_label("Bucket").fill(BUCKET)
    add.get_by_label("Access key").fill(keys["access_key"])
    add.get_by_label("Secret key").fill(keys["secret_key"])
    add.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
    add.get_by_label("Passphrase again").fill(PASSPHRASE + "x")
    add.get_by_role("button", name="Seal and add source").click()
    page.get_by_text("The two passphrases differ").wait_for()
    add.get_by_label("Passphrase again").fill(PASSPHRASE)
    with page.expect_request(
        lambda r: r.url.endswith("/import/sources") and r.method == "POST"
    ) as sent:
        add.get_by_role("button", name="Seal and add source").click()
    body = sent.value.post_data or ""
    assert keys["secret_key"] not in body and PASSPHRASE not in body
    assert keys["access_key"] not in body
    blob = json.loads(body)["sealed"]
    doc = json.loads(blob)
    assert doc["kdf"] == "PBKDF2-SHA256" and doc["iter"] >= 600_000 and doc["v"] == 1
    # The blob the browser sealed opens in Python with the passphrase.
    assert open_sealed(blob, PASSPHRASE) == {
        "access_key": keys["access_key"],
        "secret_key": keys["secret_key"],
    }
    page.get_by_text("Source legacy-src added").wait_for()
    for name in ("Secret key", "Passphrase", "Passphrase again"):  # emptied at once
        assert add.get_by_label(name, exact=True).input_value() == ""

    test = page.locator("form[aria-label='Test connection to legacy-src']")
    test.get_by_label("Passphrase").fill("not the passphrase")
    test.get_by_role("button", name="Test connection").click()
    page.get_by_text("Wrong passphrase: the sealed credentials did not open").wait_for()
    test.get_by_label("Passphrase").fill(PASSPHRASE)
    test.get_by_role("button", name="Test connection").click()
    page.get_by_text("Connection OK").wait_for()
    tab.shot("03-source-added-and-tested")

    # -- policy: backends, live explain, the same lines as `bulletproof policy explain`
    page.goto("/ui/#/new-import")
    page.get_by_role("heading", name="Backends you may use", exact=False).wait_for()
    form = page.locator("form[aria-labelledby=policy-title]")
    form.get_by_label("Destination bucket").select_option(alice.bucket)
    form.get_by_label("Destination prefix").fill("imported/")
    page.locator("#explain", has_text="key imported/example-object").wait_for()
    page.get_by_text("Placeable: objects go to").wait_for()
    explained = page.locator("#explain").inner_text()
    admin = fed.admin(
        "POST",
        "/admin/policy/explain",
        {"tenant": alice.name, "bucket": alice.bucket, "key": "imported/example-object"},
    ).json()
    assert _stable(explained.splitlines()) == _stable(admin["lines"])
    for backend in ("b0", "b1", "b2"):
        assert page.get_by_role("cell", name=backend, exact=True).count() == 1
    # A region lock no backend satisfies: the explain says so before anything is created.
    form.get_by_label("Region lock").fill("mars")
    page.get_by_text("Not placeable").wait_for()
    tab.shot("04-policy-not-placeable")
    form.get_by_label("Region lock").fill("")
    page.get_by_text("Placeable: objects go to").wait_for()
    tab.shot("05-policy")
    form.get_by_role("button", name="Create import").click()
    page.wait_for_url("**/ui/#/start/*")
    run_id = int(page.url.rsplit("/", 1)[1])

    # -- start: a wrong passphrase starts nothing
    page.get_by_label("Passphrase").fill("wrong passphrase!")
    page.get_by_role("button", name="Start import").click()
    page.get_by_text("Wrong passphrase: the sealed credentials did not open").wait_for()
    tab.shot("06-start-wrong-passphrase")
    status = alice.api("GET", f"/import/runs/{run_id}").json()
    assert status["submission_id"] is None and status["run_state"] == "pending"
    page.get_by_label("Passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Start import").click()
    page.wait_for_url(f"**/ui/#/imports/{run_id}")

    # -- dashboard until GREEN
    page.get_by_text("objects done / listed").wait_for()
    wait_on_run(tab, alice, run_id, page.locator(".stat .v", has_text="/ 200").first, 180_000)
    tab.shot("07-dashboard-running")
    wait_on_run(tab, alice, run_id, page.locator("#main .badge.GREEN").first, GREEN_TIMEOUT_MS)
    page.get_by_text("200 / 200").wait_for()
    page.get_by_text("No errors.").wait_for()
    chart = page.locator("canvas.chart").get_attribute("aria-label") or ""
    assert "peak" in chart, chart
    tput = alice.api("GET", f"/ui/api/runs/{run_id}/throughput").json()
    assert sum(s["objects"] for s in tput["samples"]) == 200
    assert sum(s["bytes"] for s in tput["samples"]) == sum(len(b) for b in objects.values())
    tab.shot("08-dashboard-green")

    # -- mark the source and download the deletion manifest
    page.get_by_role("button", name="Mark source for deletion").click()
    page.get_by_text("200 keys in the manifest").wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download deletion manifest").click()
    saved = tmp_path / "manifest.json"
    download.value.save_as(saved)
    manifest = json.loads(saved.read_text())
    assert manifest["import"] == run_id
    assert {o["key"] for o in manifest["objects"]} == set(objects)
    tab.shot("09-source-marked")

    page.goto("/ui/#/imports")
    page.get_by_role("link", name=f"Import {run_id}").wait_for()
    tab.shot("10-imports")
    page.goto("/ui/#/overview")
    page.get_by_role("cell", name="b0", exact=True).wait_for()
    tab.shot("11-overview")
    overview = alice.api("GET", "/ui/api/overview").json()
    assert overview["replicas"]["ok"] > 0 and overview["replicas"]["corrupt"] == 0
    assert sum(b["tenant_bytes"] for b in overview["backends"]) > 51 * MiB
    assert all("endpoint" not in b for b in overview["backends"])


def test_cli_sealed_blob_opens_in_the_page(tab: Tab, alice: Tenant) -> None:
    sign_in(tab, alice)
    blob = seal({"access_key": "AKIDCLI", "secret_key": "cli-secret-value"}, PASSPHRASE)
    opened = tab.page.evaluate(
        "async ([blob, pass]) => (await import('/ui/js/seal.js')).openSealed(blob, pass)",
        [blob, PASSPHRASE],
    )
    assert opened == {"access_key": "AKIDCLI", "secret_key": "cli-secret-value"}
    wrong = tab.page.evaluate(
        "async ([blob]) => { try { await (await import('/ui/js/seal.js')).openSealed(blob,"
        " 'wrong passphrase'); return 'opened'; } catch (e) { return e.message; } }",
        [blob],
    )
    assert "wrong passphrase" in wrong


def test_test_connection_reports_bad_keys_and_unreachable_source(
    tab: Tab, bob: Tenant, source: Any
) -> None:
    server, keys, _ = source
    sign_in(tab, bob, "/sources")
    tab.expected_status.add("502")  # SourceUnreachable is a 502 the page explains
    page = tab.page
    for name, endpoint, secret, expected in (
        ("bad-keys", server.endpoint, "wrong-secret", "The source refused these credentials"),
        ("away", f"http://127.0.0.1:{free_port()}", keys["secret_key"], "cannot be reached"),
    ):
        add = page.locator("form[aria-labelledby=add-title]")
        add.get_by_label("Name").fill(name)
        add.get_by_label("Endpoint URL").fill(endpoint)
        add.get_by_label("Bucket").fill(BUCKET)
        add.get_by_label("Access key").fill(keys["access_key"])
        add.get_by_label("Secret key").fill(secret)
        add.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
        add.get_by_label("Passphrase again").fill(PASSPHRASE)
        add.get_by_role("button", name="Seal and add source").click()
        outcome = add.locator(".alert.ok, .alert.error")
        outcome.wait_for(timeout=60_000)
        assert f"Source {name} added" in outcome.inner_text(), outcome.inner_text()
        test = page.locator(f"form[aria-label='Test connection to {name}']")
        test.get_by_label("Passphrase").fill(PASSPHRASE)
        test.get_by_role("button", name="Test connection").click()
        page.get_by_text(expected).wait_for(timeout=60_000)
        tab.shot(f"12-test-connection-{name}")


def test_a_tenant_sees_nothing_of_another(tab: Tab, alice: Tenant, bob: Tenant) -> None:
    runs = alice.api("GET", "/import/runs").json()["imports"]
    assert runs, "the whole-flow test runs first and leaves an import"
    run_id = runs[0]["id"]
    source_id = alice.api("GET", "/import/sources").json()[0]["id"]
    for path in (
        f"/import/runs/{run_id}",
        f"/import/runs/{run_id}/errors",
        f"/import/sources/{source_id}",
        f"/ui/api/runs/{run_id}/throughput",
    ):
        response = bob.api("GET", path)
        assert response.status_code == 404, (path, response.text)
    assert run_id not in [r["id"] for r in bob.api("GET", "/import/runs").json()["imports"]]
    assert source_id not in [s["id"] for s in bob.api("GET", "/import/sources").json()]
    bob_view = bob.api("GET", "/ui/api/whoami").json()
    assert alice.bucket not in [b["name"] for b in bob_view["buckets"]]
    assert bob.api("GET", "/ui/api/overview").json()["replicas"]["ok"] == 0

    sign_in(tab, bob, "/imports")
    page = tab.page
    page.get_by_text("No import yet.").wait_for()
    page.goto(f"/ui/#/imports/{run_id}")
    page.get_by_text(f"Could not load import {run_id}").wait_for()
    tab.shot("13-other-tenant")
    assert page.locator(".badge").count() == 0


def test_no_secret_anywhere(fed: Federation, chromium: Any, alice: Tenant, source: Any) -> None:
    """After the flows above: the source secret and the passphrase are in no table, no Redis
    value, no gateway or job log, and a signed-in tab stores nothing at all."""
    _, keys, _ = source
    needles = [keys["secret_key"], PASSPHRASE, "wrong-secret"]
    tables = [
        r["table_name"]
        for r in in_thread(
            fed.sql,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        )
    ]
    assert "import_sources" in tables
    for table in tables:
        rows = in_thread(fed.sql, f'SELECT t::text AS row FROM "{table}" t')
        text = "\n".join(r["row"] for r in rows)
        for needle in needles:
            assert needle not in text, f"a secret is in table {table}"
    client = redis.Redis.from_url(fed.redis.url)
    for key in client.scan_iter(count=1000):
        blob = key + (client.dump(key) or b"")
        for needle in needles:
            assert needle.encode() not in blob, f"a secret is in redis key {key!r}"
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    state_logs = list(Path(fed.settings.state_dir).rglob("*.log"))
    scanned = 0
    for path in [*logs.rglob("*"), *state_logs]:
        if path.is_file():
            data = path.read_bytes()
            scanned += 1
            for needle in needles:
                assert needle.encode() not in data, f"a secret is in log {path}"
    assert scanned > 0

    tab = Tab(chromium, fed.endpoint)
    try:
        sign_in(tab, alice, "/sources")
        tab.page.get_by_role("heading", name="Your sources").wait_for()
        stored = tab.page.evaluate(
            "async () => ({local: JSON.stringify(localStorage), session:"
            " JSON.stringify(sessionStorage), cookies: document.cookie, idb: (await"
            " indexedDB.databases()).length, url: location.href})"
        )
        assert stored == {
            "local": "{}",
            "session": "{}",
            "cookies": "",
            "idb": 0,
            "url": f"{fed.endpoint}/ui/#/sources",
        }
        assert tab.context.cookies() == []
        assert tab.problems == []
    finally:
        tab.close()
