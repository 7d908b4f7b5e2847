"""Real Chromium (Debian's package) driven by playwright, against the history server served for real by uvicorn.

Playwright's own browser download is never used: `.ci/install-system-packages` installs Debian's chromium.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn

CHROMIUM_PATHS = (Path("/usr/lib/chromium/chromium"), Path("/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Routes Ray's UI is known to survive a 404 from (reference/README.md, section 3b).
TOLERATED_404 = re.compile(r"/api/serve/applications/|/api/v0/platform_events|/api/data/datasets/")
NOT_A_PAGE_ERROR = re.compile(r"Failed to load resource: the server responded with a status of 404")


def chromium_path() -> Path:
    for path in CHROMIUM_PATHS:
        if path.is_file():
            return path
    pytest.fail(
        "Chromium is not installed (looked for " + ", ".join(map(str, CHROMIUM_PATHS)) + "): run "
        ".ci/install-system-packages as root, which installs Debian's chromium for the browser tests"
    )


@contextmanager
def served(app) -> Iterator[str]:
    """Serve the ASGI app with uvicorn on 127.0.0.1:<free port> in a thread; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        poll(lambda: server.started or not thread.is_alive(), 20, "uvicorn to start")
        if not server.started:
            pytest.fail("uvicorn exited before it started serving; see the captured log")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def poll(check: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Problems:
    """What went wrong in the page: console errors, uncaught exceptions, failed or refused requests."""

    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return self.console + self.requests


@contextmanager
def browser() -> Iterator[object]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]' (the browser tests drive Chromium with it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def page_watch(b) -> Iterator[tuple[object, Problems]]:
    """A fresh page (own context: no cache or storage shared between tests) that records every problem."""
    context = b.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    problems = Problems()

    def on_console(msg) -> None:
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        if NOT_A_PAGE_ERROR.search(msg.text) and TOLERATED_404.search(url):
            return
        problems.console.append(f"{msg.text} ({url})")

    def on_response(resp) -> None:
        if resp.status >= 400 and not (resp.status == 404 and TOLERATED_404.search(resp.url)):
            problems.requests.append(f"{resp.request.method} {resp.url} -> {resp.status}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.console.append(f"uncaught: {exc}"))
    page.on("requestfailed", lambda req: problems.requests.append(f"{req.method} {req.url} failed: {req.failure}"))
    page.on("response", on_response)
    try:
        yield page, problems
    finally:
        context.close()


def wait_for_text(page, texts: list[str], timeout: float = 20) -> None:
    """Wait (in the browser, no sleeping here) until the page's visible text holds every one of texts."""
    try:
        page.wait_for_function(
            "texts => texts.every(t => document.body.innerText.includes(t))", arg=texts, timeout=timeout * 1000
        )
    except Exception as e:  # playwright's TimeoutError: say what is missing and what the page shows instead
        body = page.inner_text("body")
        missing = [t for t in texts if t not in body]
        raise AssertionError(
            f"{missing} not shown on {page.url} after {timeout:.0f}s ({type(e).__name__}); "
            f"the page shows:\n{body[:3000]}"
        ) from None
