"""Fixtures for the site tests: the built site served on 127.0.0.1, and headless Chromium.

The browser tests need Debian's ``chromium`` (or ``chromium-browser``) and the
``playwright`` package; Playwright drives the system browser, it downloads none. Without
them the browser tests are skipped with the reason, unless the environment sets
``OPTIMLAB_REQUIRE_BROWSER=1`` (CI does): then a missing browser or an unbuilt site fails.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading

import pytest
from built_site import SITE, browser_required, site_built
from in_browser import VISIT_JS, watch

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--mute-audio",
]
PAGE_TIMEOUT_MS = 20_000


def skip_or_fail(reason):
    if browser_required():
        pytest.fail(f"OPTIMLAB_REQUIRE_BROWSER is set, but {reason}", pytrace=False)
    pytest.skip(reason)


def find_chromium():
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


@pytest.fixture(scope="session")
def site():
    if not site_built():
        skip_or_fail("the site is not built (_build/html/index.html is missing): run `make book`")
    return SITE


@pytest.fixture(autouse=True)
def _needs_site(site):
    """Every test here reads the built site."""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".ipynb": "application/x-ipynb+json", ".woff": "font/woff",
                      ".js": "text/javascript"}

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a browser that drops a connection early is not a failure of the site


@pytest.fixture(scope="session")
def base_url(site):
    """The built site served by an in-process HTTP server on a free port of 127.0.0.1."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(site):
    chromium = find_chromium()
    if chromium is None:
        skip_or_fail("Chromium is not installed (Debian: apt-get install chromium), "
                     "so the browser tests of the site cannot run")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        skip_or_fail(f"the playwright package cannot be imported ({exc}), "
                     "so the browser tests of the site cannot run")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS,
                                             headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def new_page(browser):
    """new_page() -> a tab in a fresh browser profile: every page load is a first visit."""
    contexts = []

    def open_page():
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      service_workers="block")
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def visit(new_page, base_url):
    """visit(page) -> Visit; each page is loaded once per module and the result cached."""
    cache = {}

    def load(page_path):
        if page_path not in cache:
            page = new_page()
            result = watch(page, base_url)
            page.goto(base_url + page_path, wait_until="load")
            result.report = page.evaluate(VISIT_JS)
            page.context.close()
            cache[page_path] = result
        return cache[page_path]

    return load
