"""Playwright driving Debian's Chromium against pytest-django's live server.

On a failed test the page fixture saves a screenshot to test-artifacts/<test name>.png.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import CHROMIUM

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


@pytest.fixture
def artifacts() -> Path:
    """The directory CI keeps after the run."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    # While Playwright's sync API is open it keeps an event loop running in this thread, and
    # Django refuses ORM calls from such a thread. That is also why the browser lives for one
    # test only: the rest of the suite must not run under the loop.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
        # Under a running loop this thread's ORM calls get connections of their own (asgiref keeps
        # them per context). Close them while the loop still runs, or PostgreSQL refuses to drop
        # the test database at the end of the session.
        connections.close_all()


@pytest.fixture
def page(browser: Browser, live_server, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    yield page
    call = request.node.stash.get(PHASE_REPORTS, {}).get("call")
    if call is not None and call.failed:
        page.screenshot(path=artifacts / f"{request.node.name}.png", full_page=True)
    context.close()


@pytest.fixture
def root(db, django_user_model):
    """root: a superuser, password pw-root."""
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw-root")


def log_in(page: Page, username: str = "root") -> None:
    page.goto("/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"pw-{username}")
    page.get_by_role("button", name="Log in").click()
