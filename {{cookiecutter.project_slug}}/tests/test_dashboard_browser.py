"""The dashboard in a real browser: Chromium, driven by Playwright, against the service
running as in production. No console error and no request leaving the service; a job
moves to succeeded without a reload; a failed job shows its error and Retry runs it
again; with API_KEYS set nothing of a job shows before the key is given. A screenshot
of the overview is saved in test-results/."""

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Frame,
    Page,
    Playwright,
    expect,
    sync_playwright,
)
from pydantic import SecretStr

from {{ cookiecutter.project_slug }}.db import create_engine, create_sessionmaker
from {{ cookiecutter.project_slug }}.models import Job
from {{ cookiecutter.project_slug }}.settings import Settings
from tests.processes import PROJECT_ROOT, start_service
from tests.test_emails import MESSAGE

SCREENSHOT = PROJECT_ROOT / "test-results" / "dashboard.png"
# Headless, and nothing of Chromium's own traffic (updates, sync, safe browsing): the
# only requests are the page's.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Long enough for a job to run and the page's next refresh to show it.
SEEN_WITHIN_MS = 20_000
# Refreshes a few times a second, so that each change shows without waiting seconds.
REFRESH_SECONDS = 0.25
EMAILS = 12


def chromium(playwright: Playwright) -> str:
    """The system's Chromium, or else the one `playwright install chromium` downloaded."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path(playwright.chromium.executable_path).exists():
        found = playwright.chromium.executable_path
    if found is not None:
        return found
    if os.environ.get("CI"):
        pytest.fail("no Chromium: CI must install it (apt install chromium, or playwright install)")
    pytest.skip("no Chromium (Debian: apt install chromium; or: playwright install chromium)")


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        executable = chromium(playwright)
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@dataclass
class Watched:
    """A page with what it logged as errors and every URL it asked for."""

    page: Page
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    navigations: int = 0

    def assert_clean(self, url: str) -> None:
        assert self.errors == []
        strangers = [asked for asked in self.requests if not asked.startswith(f"{url}/")]
        assert strangers == []


def watch(browser: Browser) -> Watched:
    page = browser.new_page(viewport={"width": 1200, "height": 860})
    watched = Watched(page)

    def navigated(frame: Frame) -> None:
        if frame == page.main_frame:
            watched.navigations += 1

    def logged(line: ConsoleMessage) -> None:
        if line.type == "error":
            watched.errors.append(line.text)

    page.on("console", logged)
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    page.on("request", lambda request: watched.requests.append(request.url))
    page.on("framenavigated", navigated)
    return watched


def insert(settings: Settings, job: Job) -> uuid.UUID:
    """A job written straight into the table, for the service's poller to find."""

    async def write() -> uuid.UUID:
        engine = create_engine(settings.database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                session.add(job)
                await session.commit()
                return job.id
        finally:
            await engine.dispose()

    # In a thread of its own: Playwright runs an event loop in this one.
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, write()).result()


def test_jobs_move_on_the_page_and_a_failed_one_is_retried(
    settings: Settings, tmp_path: Path, browser: Browser
) -> None:
    settings = settings.model_copy(update={"dashboard_refresh_seconds": REFRESH_SECONDS})
    with start_service(settings, tmp_path) as [web, *_]:
        watched = watch(browser)
        page = watched.page
        page.goto(f"{web.url}/dashboard/jobs")
        refresh_ms = page.locator("body").get_attribute("data-refresh-ms")
        assert refresh_ms == str(round(REFRESH_SECONDS * 1000))
        job_id = httpx.post(f"{web.url}/api/v1/emails", json=MESSAGE).json()["job_id"]
        row = page.locator(f'tr:has(a[href="/dashboard/jobs/{job_id}"])')
        expect(row.locator(".status")).to_have_text("succeeded", timeout=SEEN_WITHIN_MS)
        assert watched.navigations == 1, "the page was reloaded"

        failing = Job(name="fail_first_run", arguments={"key": uuid.uuid4().hex}, max_attempts=1)
        page.goto(f"{web.url}/dashboard/jobs/{insert(settings, failing)}")
        expect(page.locator("#job .status")).to_have_text("failed", timeout=SEEN_WITHIN_MS)
        expect(page.locator("#job .error")).to_have_text("RuntimeError: the first run fails")
        expect(page.locator("#job .traceback")).to_contain_text("Traceback (most recent call")
        page.get_by_role("button", name="Retry").click()
        expect(page.locator("#job .status")).to_have_text("succeeded", timeout=SEEN_WITHIN_MS)
        expect(page.locator("#job .result")).to_have_text('"second run"')

        # A few more, one failing for good, for the overview and its screenshot.
        for _ in range(EMAILS):
            httpx.post(f"{web.url}/api/v1/emails", json=MESSAGE).raise_for_status()
        broken = Job(name="always_fail", arguments={"message": "disk full"}, max_attempts=1)
        insert(settings, broken)
        page.goto(f"{web.url}/dashboard")
        succeeded = page.locator(".tile.status-succeeded strong")
        expect(succeeded).to_have_text(str(2 + EMAILS), timeout=SEEN_WITHIN_MS)
        expect(page.locator(".tile.status-failed strong")).to_have_text("1")
        expect(page.locator("#overview")).to_contain_text("RuntimeError: disk full")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=SCREENSHOT, full_page=True)
        watched.assert_clean(web.url)


def test_with_api_keys_nothing_of_a_job_shows_before_the_key(
    settings: Settings, tmp_path: Path, browser: Browser
) -> None:
    key = "dashboard-key-5e1b"
    settings = settings.model_copy(update={"api_keys": [SecretStr(key)]})
    with start_service(settings, tmp_path) as [web, *_]:
        answer = httpx.post(f"{web.url}/api/v1/emails", json=MESSAGE, headers={"X-API-Key": key})
        job_id = answer.json()["job_id"]
        watched = watch(browser)
        page = watched.page
        page.goto(f"{web.url}/dashboard/jobs/{job_id}")
        expect(page).to_have_url(f"{web.url}/dashboard/login")
        assert job_id not in page.content()
        assert "send_email" not in page.content()

        page.get_by_label("API key").fill("not-the-key")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("That key is not one of API_KEYS.")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{web.url}/dashboard")
        [cookie] = page.context.cookies()
        assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")

        page.goto(f"{web.url}/dashboard/jobs/{job_id}")
        expect(page.locator("#job h1")).to_contain_text("send_email")
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(f"{web.url}/dashboard/login")
        # The one error the console shows: the refused key's answer.
        refused = "Failed to load resource: the server responded with a status of 401"
        assert [error.removesuffix(" (Unauthorized)") for error in watched.errors] == [refused]
        watched.errors.clear()
        watched.assert_clean(web.url)
