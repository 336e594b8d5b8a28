"""The interactive figures as a reader uses them, in headless Chromium, offline.

An interactive figure is an HTML output of a chapter's notebook (``optimlab.interactive``): a
Vega-Lite specification whose data the notebook computed, and the sliders over them. The
site draws it with the vendored Vega and Vega-Lite (``book/_ext/static/vega``) and
``book/_ext/static/interactive/figures.js``. For every figure these tests move each slider
across its whole range and check that the drawing changes and that the numbers the figure
shows are the notebook's at that setting; that no request leaves 127.0.0.1; that the figure
follows the dark theme, fits a 390 px phone, and leaves its fallback text to readers without
JavaScript and to print; and that the library is loaded on these pages only.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from built_site import ROOT, SITE, html_pages, notebook_sources, site_built
from in_browser import watch

MARK = 'class="ol-interactive"'
LIBRARY = ("_static/vega/vega.min.js", "_static/vega/vega-lite.min.js",
           "_static/interactive/figures.js")
DATA_BUDGET = 200_000  # bytes of JSON per figure
SMALLEST_TEXT_PX = 12
RENDER_TIMEOUT_MS = 15_000


class _SpecParser(HTMLParser):
    """The JSON of every <script class="ol-interactive-spec"> in an HTML output."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.specs, self._inside = [], False

    def handle_starttag(self, tag, attrs):
        self._inside = tag == "script" and "ol-interactive-spec" in (dict(attrs).get("class") or "")

    def handle_endtag(self, tag):
        self._inside = False

    def handle_data(self, data):
        if self._inside:
            self.specs.append(json.loads(data))


def notebook_figures(source):
    """The interactive figures stored in the outputs of a notebook (path relative to ROOT)."""
    notebook = json.loads((ROOT / source).read_text(encoding="utf8"))
    found = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html")
            if html and MARK in "".join(html):
                parser = _SpecParser()
                parser.feed("".join(html))
                found.extend(parser.specs)
    return found


def _figures():
    if not site_built():
        return [pytest.param(None, None, id="unbuilt")]
    params = [pytest.param(source.removesuffix(".ipynb") + ".html", figure, id=figure["name"])
              for source in notebook_sources() for figure in notebook_figures(source)]
    return params or [pytest.param(None, None, marks=pytest.mark.skip(reason="no interactive figure"))]


FIGURES = _figures()
PAGES = sorted({p.values[0] for p in FIGURES if p.values[0]}) or [None]


def _rows(figure, dataset, **index):
    rows = [row for row in figure["spec"]["datasets"][dataset]
            if all(row[key] == value for key, value in index.items())]
    assert len(rows) == 1, f"{figure['name']}: {len(rows)} rows of {dataset} at {index}"
    return rows[0]


# What each figure writes under its panels, from the notebook's data at a setting of the
# sliders (the formats are those of the figure's text marks). A new figure adds its own.
def _readout_ch1(figure, state):
    row = _rows(figure, "runs", a=state["i_lr"], b=state["i_mu"], c=state["i_kappa"])
    status = ("beyond the stability boundary: diverges" if row["p"] > 1
              else "on the stability boundary" if row["p"] == 1 else "converges")
    return [f"predicted \u03c1 = {row['p']:.4f}, measured {row['q']:.4f}", status]


def _readout_ch5(figure, state):
    row = _rows(figure, "u", i=state["i_i"], j=state["i_j"])
    return ["mean step at t = 1 and at t = 100:",
            f"Adam: {row['a'][0]:.4f} \u03b7 and {row['a'][-1]:.4f} \u03b7",
            f"uncorrected: {row['b'][0]:.4f} \u03b7 and {row['b'][-1]:.4f} \u03b7"]


def _exponential(value):
    """``value`` as d3-format's ``.2e`` writes it: ``5.02e-5``, ``1.00e+0``."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}e{int(exponent):+d}"


def _readout_ch6(figure, state):
    first = _rows(figure, "r", i=state["i_lam"], j=state["i_sig"])
    second = _rows(figure, "r", i=state["i_lam"], j=0)   # sigma_2 = 0.2, the first column

    def rates(row, measured, predicted):
        return f"{_exponential(row[measured])} ({_exponential(row[predicted])})"

    return ["rate per step: measured (predicted)",
            f"Adam + L2, \u03c3\u2081 = {first['s']:g}: {rates(first, 'l', 'lp')}",
            f"Adam + L2, \u03c3\u2082 = {second['s']:g}: {rates(second, 'l', 'lp')}",
            f"AdamW, both weights: {rates(first, 'w', 'wp')}"]


READOUTS = {"ch1-gd-momentum": _readout_ch1, "ch5-bias-correction": _readout_ch5,
            "ch6-l2-vs-decoupled": _readout_ch6}


def _settings(state):
    return json.dumps(state, separators=(",", ":"))


@pytest.fixture(scope="module")
def open_page(browser, base_url):
    """open_page(page, **context options) -> (tab, Visit) with every figure drawn."""
    contexts = []

    def load(page, wait=True, **options):
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = browser.new_context(service_workers="block", **options)
        context.set_default_timeout(20_000)
        contexts.append(context)
        tab = context.new_page()
        visit = watch(tab, base_url)
        tab.goto(base_url + page, wait_until="load")
        if wait:
            tab.wait_for_function(
                "() => [...document.querySelectorAll('.ol-interactive')]"
                ".every(f => f.dataset.rendered)", timeout=RENDER_TIMEOUT_MS)
        return tab, visit

    yield load
    for context in contexts:
        context.close()


def _clean(visit):
    return visit.third_party + visit.failed + visit.console_errors + visit.page_errors


# ------------------------------------------------------------------------ the files alone


@pytest.mark.parametrize("page", PAGES)
def test_figure_data_stay_small(page):
    if page is None:
        pytest.skip("no interactive figure")
    for source in notebook_sources():
        for figure in notebook_figures(source):
            size = len(json.dumps(figure["spec"]["datasets"], separators=(",", ":")))
            assert size < DATA_BUDGET, f"{figure['name']}: {size:,} bytes of data"


def test_library_only_on_pages_with_figures():
    """Vega is loaded where a figure needs it and nowhere else; never from another host."""
    problems = []
    for page in html_pages():
        html = (SITE / page).read_text(encoding="utf8")
        depth = page.count("/")
        wanted = [("../" * depth) + path for path in LIBRARY]
        scripts = re.findall(r'<script[^>]*\bsrc="([^"?]+)', html)
        loaded = [path for path in wanted if path in scripts]
        if MARK in html and loaded != wanted:
            problems.append(f"{page}: has a figure but loads {loaded}")
        if MARK not in html and (loaded or any("vega" in src for src in scripts)):
            problems.append(f"{page}: loads the figure library without a figure")
    assert not problems, "\n".join(problems)
    for path in LIBRARY:
        assert (SITE / path).is_file(), f"{path} is missing from the built site"
    for name in ("LICENSE-vega", "LICENSE-vega-lite", "THIRD-PARTY-LICENSES.txt"):
        assert (SITE / "_static" / "vega" / name).is_file(), f"the vendored library lacks {name}"


# ------------------------------------------------------------------------ in the browser


@pytest.mark.parametrize(("page", "figure"), FIGURES)
def test_sliders_move_the_drawing_and_show_the_notebooks_numbers(open_page, page, figure):
    assert figure["name"] in READOUTS, f"add the readout of {figure['name']} to READOUTS"
    readout = READOUTS[figure["name"]]
    tab, visit = open_page(page)
    root = tab.locator(f"#interactive-{figure['name']}")
    sliders = figure["sliders"]
    inputs = root.locator("input[type=range]")
    assert inputs.count() == len(sliders)
    assert root.locator(".ol-chart svg").count() == 1, "the figure is not drawn as SVG"
    assert root.locator(".ol-interactive-fallback").is_hidden()
    state = {s["param"]: s["value"] for s in sliders}

    def shown():
        texts = root.evaluate("r => [...r.querySelectorAll('.ol-chart svg text')]"
                              ".map(t => t.textContent.replace(/\\s+/g, ' ').trim())")
        return root.locator(".ol-chart svg").inner_html(), texts

    def move(k, position):
        state[sliders[k]["param"]] = position
        inputs.nth(k).fill(str(position))
        tab.wait_for_function("([id, want]) => document.getElementById(id).dataset.rendered === want",
                              arg=[f"interactive-{figure['name']}", _settings(state)],
                              timeout=RENDER_TIMEOUT_MS)
        drawing, texts = shown()
        for line in readout(figure, state):
            assert " ".join(line.split()) in texts, (
                f"{figure['name']} at {state}: shows {texts[-4:]}, the notebook's data say {line!r}")
        value = root.locator("output.ol-slider-value").nth(k).text_content()
        assert value == sliders[k]["labels"][position], f"slider {k} shows {value!r}"
        return drawing

    before, _ = shown()
    for line in readout(figure, state):
        assert " ".join(line.split()) in shown()[1], f"{figure['name']} at load: no {line!r}"
    for k, slider in enumerate(sliders):
        start = slider["value"]
        for position in [*range(len(slider["labels"])), start]:
            if position == state[slider["param"]]:
                continue
            drawing = move(k, position)
            assert drawing != before, (
                f"{figure['name']}: moving {slider['param']} to {position} did not change the drawing")
            before = drawing
    # Every slider at its far end, then at its start, together.
    for ends in ([len(s["labels"]) - 1 for s in sliders], [0] * len(sliders)):
        for k, position in enumerate(ends):
            move(k, position)
    assert not _clean(visit), f"{page}:\n" + "\n".join(_clean(visit))


@pytest.mark.parametrize("page", PAGES)
def test_no_request_leaves_the_host(open_page, page):
    if page is None:
        pytest.skip("no interactive figure")
    tab, visit = open_page(page)
    urls = tab.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(url.startswith("http://127.0.0.1:") for url in urls), urls
    assert not _clean(visit), f"{page}:\n" + "\n".join(_clean(visit))


@pytest.mark.parametrize("page", PAGES)
def test_figures_follow_the_dark_theme(open_page, page):
    if page is None:
        pytest.skip("no interactive figure")
    tab, visit = open_page(page, color_scheme="dark")
    tab.wait_for_function("document.documentElement.dataset.theme === 'dark'")
    tab.wait_for_function("[...document.querySelectorAll('.ol-interactive')]"
                          ".every(f => f.dataset.theme === 'dark' && f.dataset.rendered)")
    report = tab.evaluate("""() => [...document.querySelectorAll('.ol-interactive')].map(f => {
        const label = f.querySelector('.ol-chart svg .role-axis-label text');
        const box = f.closest('.text_html') || f;
        return {id: f.id, label: label && getComputedStyle(label).fill,
                backing: getComputedStyle(box).backgroundColor,
                page: getComputedStyle(document.body).backgroundColor};
      })""")
    for figure in report:
        red, green, blue = (int(v) for v in re.findall(r"\d+", figure["label"])[:3])
        assert min(red, green, blue) > 150, f"{figure['id']}: axis labels {figure['label']} on a dark page"
        assert figure["backing"] in ("rgba(0, 0, 0, 0)", "transparent", figure["page"]), (
            f"{figure['id']}: backed with {figure['backing']} in the dark theme")
    assert not _clean(visit), f"{page}:\n" + "\n".join(_clean(visit))


@pytest.mark.parametrize("page", PAGES)
def test_figures_fit_a_phone(open_page, page):
    if page is None:
        pytest.skip("no interactive figure")
    tab, visit = open_page(page, viewport={"width": 390, "height": 844}, device_scale_factor=3,
                           is_mobile=True, has_touch=True)
    report = tab.evaluate("""() => ({
        scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
        figures: [...document.querySelectorAll('.ol-interactive')].map(f => {
          const svg = f.querySelector('.ol-chart svg');
          const sizes = [...svg.querySelectorAll('text')].filter(t => t.textContent.trim())
            .map(t => parseFloat(getComputedStyle(t).fontSize));
          return {id: f.id, svg: svg.getBoundingClientRect().right,
                  box: f.getBoundingClientRect().right, smallest: Math.min(...sizes)};
        })})""")
    assert report["scrollWidth"] <= report["innerWidth"], report
    for figure in report["figures"]:
        assert figure["svg"] <= figure["box"] + 0.5, f"{figure['id']} is wider than the column"
        assert figure["smallest"] >= SMALLEST_TEXT_PX, f"{figure['id']}: text of {figure['smallest']} px"
    assert not _clean(visit), f"{page}:\n" + "\n".join(_clean(visit))


@pytest.mark.parametrize("page", PAGES)
def test_fallback_without_javascript_and_in_print(open_page, page):
    """Without JavaScript the figure is its fallback text, whose links lead to the static
    figures; printed, the sliders and the chart give way to the same text."""
    if page is None:
        pytest.skip("no interactive figure")
    tab, _ = open_page(page, wait=False, java_script_enabled=False)
    fallbacks = tab.locator(".ol-interactive-fallback")
    assert fallbacks.count() == tab.locator(".ol-interactive").count() > 0
    for i in range(fallbacks.count()):
        assert fallbacks.nth(i).is_visible()
        targets = fallbacks.nth(i).evaluate(
            "p => [...p.querySelectorAll('a[href^=\"#\"]')].map(a => a.getAttribute('href').slice(1))")
        assert targets, "the fallback text points to no static figure"
        for target in targets:
            assert tab.locator(f"figure[id='{target}'] img").count() == 1, f"#{target} is no static figure"

    tab, _ = open_page(page)
    tab.emulate_media(media="print")
    for root in tab.locator(".ol-interactive").all():
        assert root.locator(".ol-interactive-fallback").is_visible()
        assert root.locator(".ol-chart").is_hidden() and root.locator(".ol-controls").is_hidden()
