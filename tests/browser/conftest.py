"""Browser tests: Playwright driving the system Chromium against `live_server`.

Skipped when /usr/bin/chromium (or Playwright) is missing, unless REQUIRE_BROWSER=1
(CI sets it), in which case they fail instead.
"""

import os
from pathlib import Path

import pytest
from django.db import connections

# Playwright's sync API runs an event loop in this thread; Django refuses ORM calls
# from a thread with a running loop unless told otherwise.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 900}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and REQUIRE_BROWSER=1 says the browser tests must run")
    pytest.skip(reason)


@pytest.fixture
def browser_page():
    """A fresh 1400×900 page in headless Chromium."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(15_000)
            yield page
        finally:
            # While Playwright's loop runs, Django keeps this thread's connections in
            # a separate (context-local) slot; close them here or PostgreSQL refuses
            # to drop the test database at the end of the session.
            connections.close_all()
            browser.close()


@pytest.fixture
def screenshot(browser_page):
    """Save a full-page screenshot of the current page as docs/screenshots/<name>.png."""

    def _screenshot(name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        browser_page.screenshot(path=str(path), full_page=True)
        return path

    return _screenshot


@pytest.fixture
def live_connections(live_server):
    """The Sage Pro sandbox seeded, and connections to both sandboxes on the live
    server (the browser's portal talks to them over real sockets)."""
    from django.conf import settings

    from integrations.models import Connection
    from integrations.sandbox.sagepro import seed

    seed.seed()
    sagepro = Connection.objects.create(
        kind=Connection.Kind.SAGEPRO,
        name="Sage Pro company 01",
        slug="sagepro-01",
        base_url=f"{live_server.url}/sandbox/sagepro/api/v1",
        password=settings.SANDBOX_SAGEPRO_API_KEY,
        company_id="01",
    )
    paytrace = Connection.objects.create(
        kind=Connection.Kind.PAYTRACE,
        name="PayTrace production",
        slug="paytrace-prod",
        base_url=f"{live_server.url}/sandbox/paytrace",
        username=settings.SANDBOX_PAYTRACE_USERNAME,
        password=settings.SANDBOX_PAYTRACE_PASSWORD,
        integrator_id="TEST0001",
        time_zone=settings.SANDBOX_PAYTRACE_TIME_ZONE,
        sagepro=sagepro,
    )
    paytrace.webhook_secrets.create(
        label="current", secret=settings.DEMO_WEBHOOK_SECRET
    )
    return sagepro, paytrace
