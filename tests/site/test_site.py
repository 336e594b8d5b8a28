"""The built site as a reader gets it: every page in headless Chromium, offline.

Run by `make test` after the build. Every page is discovered from `_build/html`, served on
127.0.0.1 and loaded once; the tests below then check what that load did. Any request to
another host is blocked and fails the page. The link, metadata and download checks read
the files and need no browser.
"""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from built_site import (
    ROOT,
    SITE,
    book_title,
    browsed_pages,
    html_pages,
    notebook_sources,
    parse_page,
    resolve,
    site_built,
    toc_notebooks,
)
from in_browser import watch


def params(items, empty_reason):
    """pytest parameters for `items`, or one parameter that says why there are none."""
    if not site_built():  # the `site` fixture skips, or fails under OPTIMLAB_REQUIRE_BROWSER
        return [pytest.param(None, id="unbuilt")]
    if not items:
        return [pytest.param(None, marks=pytest.mark.skip(reason=empty_reason), id="none")]
    return [pytest.param(item, id=item) for item in items]


BROWSED = params(browsed_pages(), "the built site has no pages")
ALL_PAGES = params(html_pages(), "the built site has no pages")
NOTEBOOKS = params(notebook_sources(), "no chapter is a notebook yet")


def _list(items, limit=12):
    shown = "\n  ".join(items[:limit])
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"\n  {shown}{more}"


# ---------------------------------------------------------------- the page in a browser


@pytest.mark.parametrize("page", BROWSED)
def test_no_request_leaves_the_site(visit, page):
    third_party = visit(page).third_party
    assert not third_party, f"{page} requests other hosts (blocked):{_list(third_party)}"


@pytest.mark.parametrize("page", BROWSED)
def test_every_local_request_succeeds(visit, page):
    failed = visit(page).failed
    assert not failed, f"{page} has failed requests:{_list(failed)}"


@pytest.mark.parametrize("page", BROWSED)
def test_no_console_errors(visit, page):
    result = visit(page)
    errors = result.page_errors + result.console_errors
    assert not errors, f"{page} logs errors in the browser console:{_list(errors)}"


@pytest.mark.parametrize("page", BROWSED)
def test_math_is_typeset(visit, page):
    report = visit(page).report
    if report["mathCount"] == 0:
        return
    assert report["mathjax"] not in (None, "timeout"), (
        f"{page} has {report['mathCount']} formulas but MathJax "
        f"{'never loaded' if report['mathjax'] is None else 'did not finish'}")
    assert report["mathjax"].startswith("3."), f"unexpected MathJax {report['mathjax']}"
    assert not report["untypeset"], f"{page}: formulas left as TeX:{_list(report['untypeset'])}"
    assert not report["mathErrors"], f"{page}: MathJax errors:{_list(report['mathErrors'])}"


@pytest.mark.parametrize("page", BROWSED)
def test_images_load_and_are_described(visit, page):
    problems = []
    for image in visit(page).report["images"]:
        src = image["src"]
        if image["naturalWidth"] == 0:
            problems.append(f"{src}: not loaded (natural width 0)")
        if image["content"]:
            alt = (image["alt"] or "").strip()
            if not alt or re.search(r"\.(png|jpe?g|gif|svg|webp)$", alt, re.I):
                problems.append(f"{src}: no alt text (alt={image['alt']!r})")
        if image["output"] and not image["caption"]:
            problems.append(f"{src}: a figure without a caption")
    assert not problems, f"{page}:{_list(problems)}"


def _is_light_backing(css_colour):
    """An opaque colour on which black axis labels keep a contrast ratio of at least 10."""
    match = re.fullmatch(r"rgba?\((\d+),\s*(\d+),\s*(\d+)(?:,\s*([\d.]+))?\)", css_colour)
    if not match or float(match.group(4) or 1) < 1:
        return False

    def linear(channel):
        c = int(channel) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(match.group(i)) for i in (1, 2, 3))
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return (luminance + 0.05) / 0.05 >= 10


@pytest.mark.parametrize("page", BROWSED)
def test_figures_read_in_the_dark_theme(visit, page):
    """Matplotlib figures are drawn for light paper: the dark theme must back them with it."""
    problems = [
        f"{image['src']}: background {image['darkBackground']} in the dark theme"
        for image in visit(page).report["images"]
        if image["content"] and not image["themed"]
        and not _is_light_backing(image["darkBackground"])
    ]
    assert not problems, f"{page}:{_list(problems)}"


@pytest.mark.parametrize("page", BROWSED)
def test_no_error_text(visit, page):
    errors = visit(page).report["errorText"]
    assert not errors, f"{page} shows errors:{_list(errors)}"


@pytest.mark.parametrize("page", BROWSED)
def test_solutions_are_hidden_until_toggled(visit, page):
    problems = [
        f"{box['id'] or box['classes']}: "
        + ("visible at load" if not box["hiddenAtLoad"] else "does not open on click")
        for box in visit(page).report["dropdowns"]
        if not (box["hiddenAtLoad"] and box.get("shownOnClick"))
    ]
    assert not problems, f"{page}:{_list(problems)}"


@pytest.mark.parametrize("page", BROWSED)
def test_algorithms_and_exercises_have_labels(visit, page):
    """Algorithms and exercises carry an author's label, so that the text can cite them."""
    generated = re.compile(r"^algorithm-\d+$|-exercise-\d+$")
    unlabelled = [
        f"{block['classes']} (id {block['id']!r})"
        for block in visit(page).report["blocks"]
        if not block["id"] or generated.search(block["id"])
    ]
    assert not unlabelled, f"{page}: add :label: to{_list(unlabelled)}"


def test_search_works_offline(new_page, base_url):
    if "search.html" not in html_pages():
        pytest.skip("the site has no search page")
    page = new_page()
    result = watch(page, base_url)
    page.goto(f"{base_url}search.html?q=gradient", wait_until="load")
    hits = page.locator("#search-results ul.search li")
    hits.first.wait_for(timeout=10_000)
    count = hits.count()
    page.context.close()
    assert count > 0
    assert not (result.third_party or result.failed or result.console_errors
                or result.page_errors), vars(result)


# --------------------------------------------------------------------- the files alone


@pytest.mark.parametrize("page", ALL_PAGES)
def test_internal_links_and_anchors_resolve(page):
    problems = []
    for link in parse_page(page).links:
        target = resolve(page, link.url)
        if target is None:
            continue
        if target.external:
            if link.tag != "a":
                problems.append(f"<{link.tag} {link.attr}={link.url}> loads from another host")
            continue
        file = SITE / target.path
        if not file.is_file():
            problems.append(f"{link.url}: {target.path} does not exist")
        elif target.fragment and file.suffix == ".html":
            if target.fragment not in parse_page(target.path).ids:
                problems.append(f"{link.url}: no id {target.fragment!r} in {target.path}")
    assert not problems, f"{page}:{_list(problems)}"


@pytest.mark.parametrize("page", ALL_PAGES)
def test_page_head(page):
    """A title, a description and the favicon; no launch or live-code buttons."""
    head = parse_page(page)
    if head.redirect is not None:
        return
    title_parts = head.title.split(" \u2014 ")
    assert head.title and len(title_parts) == len(set(title_parts)), f"title {head.title!r}"
    assert head.description and 40 <= len(head.description) <= 160, (
        f"{page}: description {head.description!r}")
    assert head.icons, f"{page} names no favicon"
    for icon in head.icons:
        icon_file = SITE / resolve(page, icon).path
        assert icon_file.is_file() and icon_file.stat().st_size > 0, icon
    assert book_title() in head.title, f"{page}: title {head.title!r}"
    html = (SITE / page).read_text(encoding="utf8")
    for marker in ("thebe", "launch-buttons", "mybinder.org", "colab.research.google"):
        assert marker not in html.lower(), f"{page} offers a launch/live-code feature ({marker})"


@pytest.mark.parametrize("source", NOTEBOOKS)
def test_notebook_download(base_url, source):
    """The page's .ipynb download serves the chapter's notebook, outputs and all."""
    page = source.removesuffix(".ipynb") + ".html"
    links = [resolve(page, link.url) for link in parse_page(page).links if link.tag == "a"]
    assert any(t and not t.external and t.path == f"_sources/{source}" for t in links), (
        f"{page} has no download link to _sources/{source}")
    with urllib.request.urlopen(f"{base_url}_sources/{source}", timeout=10) as response:
        assert response.status == 200
        served = json.loads(response.read().decode("utf8"))
    assert served.get("nbformat") == 4 and isinstance(served.get("cells"), list)
    assert served == json.loads((ROOT / source).read_text(encoding="utf8")), (
        f"_sources/{source} differs from {source}: rebuild the site")
    assert any(cell.get("outputs") for cell in served["cells"] if cell["cell_type"] == "code"), (
        f"{source} is served without outputs")


def test_every_notebook_chapter_is_downloadable():
    missing = sorted(set(toc_notebooks()) - set(notebook_sources()))
    assert not missing, f"notebook chapters without a download on the site:{_list(missing)}"


@pytest.mark.parametrize("source", NOTEBOOKS)
def test_notebook_figures_all_appear(visit, source):
    """Each stored PNG output of a chapter is shown on its page (none lost in the build)."""
    notebook = json.loads((ROOT / source).read_text(encoding="utf8"))
    removed = {"remove-output", "remove-cell", "remove_output", "remove_cell"}
    expected = sum(
        "image/png" in output.get("data", {})
        for cell in notebook["cells"]
        if cell["cell_type"] == "code" and not removed & set(cell["metadata"].get("tags", []))
        for output in cell.get("outputs", [])
    )
    page = source.removesuffix(".ipynb") + ".html"
    shown = sum(image["output"] for image in visit(page).report["images"])
    assert shown == expected, f"{page} shows {shown} output images; {source} stores {expected}"
