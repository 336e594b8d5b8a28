"""Make the HTML site self-contained and tidy its page heads.

A small local Sphinx extension, loaded from ``_config.yml``. It

* serves the vendored MathJax 3 (``static/mathjax``: the ``tex-chtml-full`` bundle and its
  CommonHTML woff-v2 fonts, from the ``mathjax@3.2.2`` npm package, Apache-2.0) and the
  book's stylesheet from ``_static/`` so that math renders without network access.
  The directory is added to ``html_static_path`` when the build starts, i.e. after
  Jupyter Book has injected every ``*.js``/``*.css`` of its own ``_static`` folders
  into every page: MathJax's files are copied, not injected; ``mathjax_path``
  in ``_config.yml`` loads the bundle, on pages with math only;
* removes the duplicate inline scripts that Sphinx 7.4 emits when an extension adds one
  after the builder started (the same script is registered once with the file name
  ``None`` and once with ``''``, and the two do not compare equal);
* titles the root page with the book's title alone, not "Title - Title"
  (``templates/layout.html``);
* gives every page a ``<meta name="description">``: the page's front-matter
  ``html_meta`` description if it has one, else the start of its first paragraph,
  else ``site_description``.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

from docutils import nodes

STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
DESCRIPTION_CHARS = 160


def add_paths(app, config):
    config.html_static_path.append(str(STATIC))
    config.templates_path.append(str(TEMPLATES))


def dedupe_inline_scripts(context):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def first_prose_paragraph(doctree):
    """The first paragraph of the page's prose, up to its first formula.

    Paragraphs inside asides are skipped; a paragraph with math keeps only its complete
    sentences before the first formula (a meta description is plain text).
    """
    skip = (nodes.admonition, nodes.sidebar, nodes.topic, nodes.table, nodes.footnote,
            nodes.citation)
    for paragraph in doctree.findall(nodes.paragraph):
        if any(isinstance(parent, skip) for parent in _ancestors(paragraph)):
            continue
        text = " ".join(_text_before_math(paragraph).split())
        if len(text) >= 40:
            return text
    return ""


def _text_before_math(paragraph):
    parts = []
    for node in paragraph.findall(include_self=False):
        if node.tagname == "math":
            prose = "".join(parts)
            end = max(prose.rfind(". "), prose.rfind("? "), prose.rfind("! "))
            return prose[: end + 1] if end >= 0 else ""
        if isinstance(node, nodes.Text):
            parts.append(str(node))
    return "".join(parts)


def _ancestors(node):
    while node.parent is not None:
        node = node.parent
        yield node


def shorten(text, limit=DESCRIPTION_CHARS):
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    sentence_end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    if sentence_end >= limit // 2:
        return cut[: sentence_end + 1]
    return cut.rsplit(" ", 1)[0].rstrip(",;:") + "\u2026"


def page_head(app, pagename, templatename, context, doctree):
    dedupe_inline_scripts(context)

    if pagename == app.config.root_doc and _plain(context.get("title")) == context.get("docstitle"):
        context["root_title_only"] = True

    metatags = context.get("metatags", "")
    if 'name="description"' in metatags:
        return
    description = first_prose_paragraph(doctree) if doctree is not None else ""
    description = shorten(description or app.config.site_description)
    if description:
        tag = f'<meta name="description" content="{escape(description, quote=True)}" />\n'
        context["metatags"] = metatags + tag


def _plain(html_text):
    return re.sub(r"<[^>]+>", "", html_text or "").strip()


def nitpick_pairs(app, config):
    # _config.yml can only write lists; Sphinx looks up (type, target) tuples.
    config.nitpick_ignore = [tuple(pair) for pair in config.nitpick_ignore]


def setup(app):
    app.add_config_value("site_description", "", "html")
    app.connect("config-inited", add_paths)
    app.connect("config-inited", nitpick_pairs)
    app.connect("html-page-context", page_head, priority=900)
    app.add_css_file("site.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
