"""The browser tier's fixtures: one federation, one import source and one Chromium for the
module; a fresh browser context (no storage shared between tests) per test, whose every
JavaScript console error or uncaught page error fails the test."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Federation, start_cluster
from tests.support.import_runs import IMPORT_OVERRIDES

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("BP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MiB = 1024 * 1024
_HTTP_STATUS = re.compile(r"^Failed to load resource: the server responded with a status of (\d+)")


def in_thread(fn: Any, *args: Any) -> Any:
    """Run ``fn`` in another thread: Playwright's sync API keeps an event loop running in this
    one, so code that calls ``asyncio.run`` (``Federation.sql``) must run elsewhere."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


@pytest.fixture(scope="session")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    # The import engine's federation: multipart data path above 48 MiB, agents and the
    # repairer on a short schedule so replicas still pending are finished within seconds.
    with start_cluster(
        tmp_path_factory.mktemp("bp-browser"), overrides=IMPORT_OVERRIDES
    ) as running:
        from cluster.bootstrap import start_self_healing

        start_self_healing(running.settings)
        # Import ids name Ray job submissions (bp-import-<run>-<attempt>). Other federations
        # on this shared machine start their ids at 1 too; a job agent reached by two of them
        # would take our bp-import-1-1 for theirs ("already submitted"). Start far apart.
        running.sql("SELECT setval('import_runs_id_seq', $1)", secrets.randbelow(10**9) + 10**6)
        yield running


@pytest.fixture(scope="session")
def chromium(fed: Federation) -> Iterator[Any]:
    # Depends on the federation so that it starts before and stops after Playwright, whose
    # running event loop would make the federation's asyncio.run calls fail.
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/install-chromium.sh (apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Tab:
    """One browser context and page, with every console error and page error recorded."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.context = browser.new_context(
            base_url=base_url, viewport={"width": 1366, "height": 900}, accept_downloads=True
        )
        self.page = self.context.new_page()
        self.problems: list[str] = []
        #: HTTP statuses a test provokes on purpose (the page shows them as errors).
        self.expected_status = {str(n) for n in range(400, 500)}
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))

    def _console(self, msg: Any) -> None:
        # Chromium reports every error answer to fetch() as a console error "Failed to load
        # resource"; the tests provoke some on purpose (wrong passphrase: 403, another
        # tenant's import: 404, an unreachable source: 502) and the page shows them. Any
        # other status (5xx unless a test expects it) and every other error count.
        if msg.type != "error":
            return
        found = _HTTP_STATUS.match(msg.text)
        if found is None or found.group(1) not in self.expected_status:
            self.problems.append(f"console.{msg.type}: {msg.text}")

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(chromium: Any, fed: Federation) -> Iterator[Tab]:
    opened = Tab(chromium, fed.endpoint)
    try:
        yield opened
    finally:
        opened.close()
    assert opened.problems == [], "JavaScript errors in the page:\n" + "\n".join(opened.problems)
