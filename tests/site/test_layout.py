"""Every page as a reader on a phone, a tablet and a laptop gets it, in headless Chromium.

Each page is loaded once per screen: a 390 x 844 phone (touch, 3 device pixels per CSS
pixel), an 820 x 1180 tablet and a 1366 x 900 laptop. On each the tests check that
nothing pans the page sideways and that the navigation opens (the phone taps the menu
button ☰, the tablet clicks the in-page contents button, the laptop shows the chapter
list without a click); on the phone, that no TeX source is left as text and that the
figures are drawn large enough for their text to be read.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import PurePosixPath

import pytest
from built_site import (
    ROOT,
    SITE,
    browsed_pages,
    notebook_sources,
    parse_page,
    resolve,
    site_built,
    toc_pages,
)
from in_browser import LAYOUT_JS, watch

SCREENS = {
    "phone": dict(viewport={"width": 390, "height": 844}, device_scale_factor=3,
                  is_mobile=True, has_touch=True),
    "tablet": dict(viewport={"width": 820, "height": 1180}, device_scale_factor=2,
                   is_mobile=True, has_touch=True),
    "laptop": dict(viewport={"width": 1366, "height": 900}, device_scale_factor=1),
}
# The book's figure style (optimlab.plotting): the smallest text of a figure is 9 pt at
# 96 dpi, i.e. 12 CSS px when the figure is shown at its natural size. Shown smaller, its
# text shrinks in proportion; 8 CSS px is the smallest text still read without zooming.
SMALLEST_FIGURE_TEXT_PX = 12
LEGIBLE_TEXT_PX = 8
BUNDLE = "_downloads/optimizers-from-first-principles.zip"


def _pages():
    if not site_built():
        return [pytest.param(None, id="unbuilt")]
    return [pytest.param(page, id=page) for page in browsed_pages()]


PAGES = _pages()
NOTEBOOK_PAGES = [pytest.param(source.removesuffix(".ipynb") + ".html", id=source)
                  for source in notebook_sources()] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no chapter is a notebook yet"))]


def _list(items, limit=12):
    shown = "\n  ".join(items[:limit])
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"\n  {shown}{more}"


# Which of the table of contents' pages the page shows as visible links, and where.
VISIBLE_LINKS_JS = r"""
(scope) => {
  return [...document.querySelectorAll(scope)].flatMap(box => [...box.querySelectorAll('a[href]')])
    .filter(a => {
      const r = a.getBoundingClientRect();
      const style = getComputedStyle(a);
      return r.width > 0 && r.height > 0 && style.visibility !== 'hidden' &&
             r.right > 0 && r.left < window.innerWidth && r.bottom > 0 && r.top < window.innerHeight + 4000;
    })
    .map(a => new URL(a.getAttribute('href'), location.href).pathname);
}
"""


def _site_paths(base_url, paths):
    prefix = "/" + base_url.split("/", 3)[3]
    return {path.removeprefix(prefix) for path in paths}


@pytest.fixture(scope="module")
def on_screen(browser, base_url):
    """on_screen(page, screen) -> what that page does on that screen (cached per module)."""
    cache = {}

    def load(page_path, screen):
        key = (page_path, screen)
        if key in cache:
            return cache[key]
        context = browser.new_context(**SCREENS[screen], service_workers="block")
        context.set_default_timeout(20_000)
        tab = context.new_page()
        visit = watch(tab, base_url)
        tab.goto(base_url + page_path, wait_until="load")
        result = {"report": tab.evaluate(LAYOUT_JS), "visit": visit}
        result["sidebar_before"] = _site_paths(
            base_url, tab.evaluate(VISIBLE_LINKS_JS, "#pst-primary-sidebar, #pst-primary-sidebar-modal"))
        if screen in ("phone", "tablet"):
            result["menu"] = _open(tab, ".primary-toggle", screen)
            result["sidebar_after"] = _site_paths(
                base_url, tab.evaluate(VISIBLE_LINKS_JS, "#pst-primary-sidebar, #pst-primary-sidebar-modal"))
            tab.keyboard.press("Escape")
            tab.wait_for_timeout(300)
            # The page's own contents (its sections): only on pages that have some.
            result["page_toc"] = tab.evaluate(
                "document.querySelectorAll('#pst-secondary-sidebar .bd-toc-nav a[href]').length")
            result["contents"] = _open(tab, ".secondary-toggle", screen)
            result["toc_after"] = len(tab.evaluate(
                VISIBLE_LINKS_JS, "#pst-secondary-sidebar, #pst-secondary-sidebar-modal"))
        if screen == "laptop":
            result["toggles"] = _code_toggles(tab)
        context.close()
        cache[key] = result
        return result

    return load


def _open(tab, selector, screen):
    """Tap (phone, tablet) the visible button `selector`; its description, or why not."""
    buttons = tab.locator(f"{selector}:visible")
    if buttons.count() == 0:
        return f"no visible {selector} button"
    button = buttons.first
    button.tap() if screen in ("phone", "tablet") else button.click()
    tab.wait_for_timeout(600)
    return "tapped"


def _code_toggles(tab):
    """Open every folded code cell (hide-input) and report which did not show its code."""
    failures = []
    folded = tab.locator("details.hide.above-input")
    for i in range(folded.count()):
        box = folded.nth(i)
        box.locator("summary").first.click()
        tab.wait_for_timeout(50)
        shown = box.evaluate(
            "d => d.open && [...d.querySelectorAll('pre')].some(p => p.getClientRects().length)")
        if not shown:
            failures.append(f"folded code cell {i + 1} does not open")
    return {"count": folded.count(), "failures": failures}


# ------------------------------------------------------------------ one class per screen
# The browser tests of each screen form one test class, so that pytest-xdist
# (`--dist loadscope`, see the Makefile) can run the screens on different workers; the
# tests that need no browser stay module-level functions, one more unit of work.


class _NoPanning:
    """Mixed into the screens on which nothing may pan sideways."""

    screen: str

    def test_nothing_pans_sideways(self, on_screen, page):
        """The document is no wider than the screen: wide formulas, tables and code scroll
        inside their own box (book/_ext/static/site.css)."""
        report = on_screen(page, self.screen)["report"]
        assert report["scrollWidth"] <= report["innerWidth"], (
            f"{page} is {report['scrollWidth']} px wide on a {report['innerWidth']} px "
            f"{self.screen}; too wide:{_list(report['tooWide'])}")


@pytest.mark.parametrize("page", PAGES)
class TestPhone(_NoPanning):
    """390 x 844, touch: no panning, the menu, TeX, figures, a clean load."""

    screen = "phone"

    def test_menu_opens_the_chapter_list_on_a_phone(self, on_screen, page):
        """Tapping ☰ at 390 px shows the link to every page of the table of contents."""
        result = on_screen(page, self.screen)
        assert result["menu"] == "tapped", f"{page}: {result['menu']}"
        wanted = set(toc_pages())
        missing = sorted(wanted - result["sidebar_after"])
        assert not missing, f"{page}: after tapping ☰ these chapters are not shown:{_list(missing)}"
        assert not (wanted <= result["sidebar_before"]), (
            f"{page}: the chapter list covers the page before ☰ is tapped")

    def test_no_tex_source_outside_code(self, on_screen, page):
        """Math is typeset everywhere (captions, bibliography, docstrings), never shown as
        `$...$`, `\\(...\\)` or `\\frac`-style source outside code blocks."""
        raw = on_screen(page, self.screen)["report"]["rawTex"]
        assert not raw, f"{page} shows TeX source as text:{_list(raw)}"

    def test_figures_are_legible_on_a_phone(self, on_screen, page):
        """Every figure's text is at least 8 CSS px tall on a 390 px phone.

        The measure: a figure's *natural CSS width* is the width at which it is meant to be
        shown — the width the notebook output declares (optimlab.plotting's 2x "retina" PNGs
        carry it in their output metadata; the page gives it to the <img>), or, without one,
        its width in image pixels. The book's style puts the smallest text of a figure at
        12 CSS px at that natural width (9 pt at 96 dpi). The browser draws the figure
        `scale = rendered width / natural CSS width` times its natural size, and its text at
        the same scale, so the smallest text is `12 * scale` CSS px: legible when
        `scale >= 8 / 12`. A figure drawn 15 inches wide and squeezed into a phone's 360 px
        column has scale 0.25 (3 px text); a 5.2 in book figure has scale about 0.7.
        """
        figures = on_screen(page, self.screen)["report"]["figures"]
        limit = LEGIBLE_TEXT_PX / SMALLEST_FIGURE_TEXT_PX
        small = [
            f"{PurePosixPath(f['src']).name}: drawn at {f['scale']:.0%} of its natural "
            f"{f['naturalCss']:.0f} CSS px ({'declared' if f['declared'] else 'image pixels'}), "
            f"smallest text about {SMALLEST_FIGURE_TEXT_PX * f['scale']:.1f} px"
            for f in figures if f["scale"] < limit
        ]
        assert not small, f"{page}: figures too small to read at 390 px:{_list(small)}"

    def test_pages_load_cleanly_on_a_phone(self, on_screen, page):
        visit = on_screen(page, self.screen)["visit"]
        problems = visit.third_party + visit.failed + visit.console_errors + visit.page_errors
        assert not problems, f"{page} on a phone:{_list(problems)}"


@pytest.mark.parametrize("page", PAGES)
class TestTablet:
    """820 x 1180, touch: the menu and the page's contents button."""

    screen = "tablet"

    def test_contents_button_works_on_a_tablet(self, on_screen, page):
        """At 820 px the page's contents are behind a button: clicking it shows them; ☰ too."""
        result = on_screen(page, self.screen)
        missing = sorted(set(toc_pages()) - result["sidebar_after"])
        assert result["menu"] == "tapped" and not missing, (
            f"{page}: ☰ ({result['menu']}) does not show:{_list(missing)}")
        if result["page_toc"] == 0:
            return
        assert result["contents"] == "tapped", f"{page}: {result['contents']}"
        assert result["toc_after"] > 0, f"{page}: the contents button shows no section links"


@pytest.mark.parametrize("page", PAGES)
class TestLaptop(_NoPanning):
    """1366 x 900: no panning, the chapter list without a click, folded code."""

    screen = "laptop"

    def test_chapter_list_is_shown_on_a_laptop(self, on_screen, page):
        missing = sorted(set(toc_pages()) - on_screen(page, self.screen)["sidebar_before"])
        assert not missing, f"{page}: at 1366 px the sidebar does not show:{_list(missing)}"

    def test_folded_code_opens(self, on_screen, page):
        """Code cells folded away (hide-input) open on a click and show their code."""
        toggles = on_screen(page, self.screen)["toggles"]
        assert not toggles["failures"], f"{page}:{_list(toggles['failures'])}"


# ---------------------------------------------------------------- read from the files


def test_landing_page_links_every_chapter():
    """The landing page's own text (not only the sidebar) links every chapter."""
    root = toc_pages()[0]
    html = (SITE / root).read_text(encoding="utf8")
    article = html.split('<article class="bd-article"', 1)[-1].split("</article>", 1)[0]
    linked = {t.path for href in re.findall(r'<a [^>]*href="([^"]+)"', article)
              if (t := resolve(root, href)) and not t.external}
    missing = [page for page in toc_pages()[1:] if page not in linked]
    assert not missing, f"{root} does not link in its text:{_list(missing)}"


def test_bibliography_links_back_to_citations():
    pages = [page for page in browsed_pages() if "citation-backlinks" in parse_page(page).classes]
    assert pages, "no bibliography entry links back to where it is cited"
    for page in pages:
        html = (SITE / page).read_text(encoding="utf8")
        entries = html.count('role="doc-biblioentry"')
        backlinked = html.count('class="citation-backlinks"')
        assert backlinked >= entries // 2, (
            f"{page}: only {backlinked} of {entries} entries link back to a citation")


# ------------------------------------------------------------------ running the code


def test_bundle_holds_the_notebooks_and_optimlab():
    """The zip the site offers runs offline once installed: every chapter, optimlab, the lock."""
    bundle = SITE / BUNDLE
    assert bundle.is_file(), f"{BUNDLE} is missing: the site_assets extension builds it"
    with zipfile.ZipFile(bundle) as archive:
        names = {name.split("/", 1)[1]: name for name in archive.namelist()}
        for required in ("RUN.md", "requirements.lock", "requirements.txt", "pyproject.toml",
                         "README.md", "optimlab/__init__.py"):
            assert required in names, f"{BUNDLE} lacks {required}"
        for source in notebook_sources():
            assert source in names, f"{BUNDLE} lacks {source}"
            assert archive.read(names[source]) == (ROOT / source).read_bytes(), (
                f"{BUNDLE}: {source} differs from the repository's: rebuild the site")
        packaged = {n for n in names if n.startswith("optimlab/") and n.endswith(".py")}
        on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "optimlab").rglob("*.py")}
        assert packaged == on_disk, f"{BUNDLE}: optimlab differs:{_list(sorted(packaged ^ on_disk))}"


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_every_chapter_offers_the_bundle(page):
    links = [resolve(page, link.url) for link in parse_page(page).links if link.tag == "a"]
    assert any(t and not t.external and t.path == BUNDLE for t in links), (
        f"{page} has no download link to {BUNDLE}")
