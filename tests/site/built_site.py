"""What the site tests know about the built site, read from the files alone (no browser).

Pages are discovered from ``_build/html`` at collection time, so pages added later are
tested without editing the tests. ``OPTIMLAB_SITE_DIR`` points the tests at another built
site (the ``html`` folder of a ``jupyter-book build --path-output DIR``: ``DIR/_build/html``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("OPTIMLAB_SITE_DIR") or ROOT / "_build" / "html").resolve()
NOT_PAGES = ("_static", "_sources", "_images", "_downloads")
LOCAL = "site.invalid"  # stands for the site's own origin when resolving links
SKIPPED_SCHEMES = ("mailto", "javascript", "data", "tel")


def book_title():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    return config["title"]


def browser_required():
    """True when the environment demands that the browser tests run (CI sets it)."""
    return os.environ.get("OPTIMLAB_REQUIRE_BROWSER", "").strip() not in ("", "0")


def site_built():
    return (SITE / "index.html").is_file()


def html_pages():
    """Every HTML page of the site (relative POSIX paths), assets excluded."""
    if not site_built():
        return []
    return sorted(
        path.relative_to(SITE).as_posix()
        for path in SITE.rglob("*.html")
        if path.relative_to(SITE).parts[0] not in NOT_PAGES
    )


def browsed_pages():
    """The pages a reader lands on: every page except pure redirects (checked as links)."""
    return [page for page in html_pages() if parse_page(page).redirect is None]


def notebook_sources():
    """Notebooks that the site offers for download (`_sources/...ipynb`)."""
    sources = SITE / "_sources"
    if not sources.is_dir():
        return []
    return sorted(path.relative_to(sources).as_posix() for path in sources.rglob("*.ipynb"))


def toc_pages():
    """The HTML page of every file in _toc.yml (root and chapters), in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    found = []

    def walk(node):
        if isinstance(node, dict):
            name = node.get("root") or node.get("file")
            if isinstance(name, str):
                found.append(f"{name}.html")
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key, []))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def toc_notebooks():
    """Source notebooks listed in _toc.yml (relative POSIX paths)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    found = []

    def walk(node):
        if isinstance(node, dict):
            name = node.get("file") or node.get("root")
            if isinstance(name, str) and (ROOT / f"{name}.ipynb").is_file():
                found.append(f"{name}.ipynb")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return sorted(found)


@dataclass
class Link:
    tag: str
    attr: str
    url: str
    rel: str = ""


@dataclass
class Page:
    links: list[Link] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    title: str = ""
    description: str | None = None
    icons: list[str] = field(default_factory=list)
    redirect: str | None = None
    classes: set[str] = field(default_factory=set)


class _PageParser(HTMLParser):
    URL_ATTRS = {"a": "href", "link": "href", "img": "src", "script": "src",
                 "source": "src", "iframe": "src", "video": "src", "audio": "src"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        page = self.page
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                page.ids.add(attrs[key])
        page.classes.update((attrs.get("class") or "").split())
        attr = self.URL_ATTRS.get(tag)
        if attr and attrs.get(attr) is not None:
            page.links.append(Link(tag, attr, attrs[attr].strip(), attrs.get("rel") or ""))
        if tag == "link" and "icon" in (attrs.get("rel") or "").split():
            page.icons.append(attrs.get("href") or "")
        if tag == "meta":
            if (attrs.get("name") or "").lower() == "description":
                page.description = attrs.get("content") or ""
            if (attrs.get("http-equiv") or "").lower() == "refresh":
                match = re.search(r"url=(.+)", attrs.get("content") or "", re.I)
                if match:
                    page.redirect = match.group(1).strip().strip("'\"")
                    page.links.append(Link("meta", "content", page.redirect))
        if tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.page.title += data


@cache
def parse_page(page):
    parser = _PageParser()
    parser.feed((SITE / page).read_text(encoding="utf8"))
    parser.page.title = " ".join(parser.page.title.split())
    return parser.page


@dataclass
class Target:
    """Where a URL found on a page points."""

    external: bool
    path: str = ""  # relative to the site root, for local targets
    fragment: str = ""
    url: str = ""


def resolve(page, url):
    """Resolve `url` as found on `page`; None for URLs that name no resource (mailto:, #)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in SKIPPED_SCHEMES or url in ("", "#"):
        return None
    absolute = urljoin(f"http://{LOCAL}/{page}", url)
    parts = urlsplit(absolute)
    if parts.netloc != LOCAL:
        return Target(external=True, url=absolute)
    path = unquote(parts.path).lstrip("/")
    if path == "" or path.endswith("/"):
        path += "index.html"
    return Target(external=False, path=path, fragment=unquote(parts.fragment), url=absolute)
