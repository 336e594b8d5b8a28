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
  else ``site_description``;
* hides ``# NBVAL_...`` marker comments from the code cells shown on the page (nbval's
  markers belong in cell tags; the downloaded notebook is unchanged);
* typesets the ``$...$`` math of bibliography entries (pybtex writes it out as text) and
  links every bibliography entry back to the places that cite it, on any page;
* loads the interactive figures' scripts on the pages that hold one, and only there: the
  vendored Vega and Vega-Lite (``static/vega``: ``vega@6.4.0`` and ``vega-lite@6.5.0``
  from npm, BSD-3-Clause; see ``static/vega/README.txt``) and ``static/interactive``, which
  draws the figures that ``optimlab.interactive`` wrote into a notebook's outputs;
* builds ``_downloads/BUNDLE`` when the site is built: the chapters' notebooks, optimlab,
  its requirements and the lock, in one zip that runs offline once installed; every page
  offers it in the theme's download menu, and the ``{bundle}`` role links to it from prose.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from html import escape
from pathlib import Path

from docutils import nodes

STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
DESCRIPTION_CHARS = 160
BUNDLE = "optimizers-from-first-principles.zip"
BUNDLE_PATH = f"_downloads/{BUNDLE}"
# What the bundle holds besides the notebooks (paths relative to the repository root).
BUNDLE_FILES = ("README.md", "LICENSE", "pyproject.toml", "requirements.txt", "requirements.lock")
BUNDLE_TREES = ("optimlab",)
NBVAL_COMMENT = re.compile(r"^[ \t]*#[ \t]*NBVAL_[A-Z_]+[ \t]*\n?", re.MULTILINE)
INLINE_TEX = re.compile(r"\$([^$]+)\$")
# An interactive figure is an HTML output holding <div class="ol-interactive">.
INTERACTIVE_MARK = 'class="ol-interactive"'
INTERACTIVE_JS = ("vega/vega.min.js", "vega/vega-lite.min.js", "interactive/figures.js")
INTERACTIVE_CSS = "interactive/figures.css"


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


def hide_nbval_comments(app, doctree):
    """Drop ``# NBVAL_...`` lines from the code cells of the page (not from the notebook)."""
    for container in doctree.findall(nodes.container):
        if container.get("nb_element") != "cell_code_source":
            continue
        for block in container.findall(nodes.literal_block):
            text = block.astext()
            cleaned = NBVAL_COMMENT.sub("", text)
            if cleaned != text:
                block.children = [nodes.Text(cleaned)]
                block.rawsource = cleaned


def _split_tex(text):
    """[Text | math] pieces of a string in which pybtex left `$...$` as plain text."""
    pieces, last = [], 0
    for match in INLINE_TEX.finditer(text):
        if match.start() > last:
            pieces.append(nodes.Text(text[last:match.start()]))
        pieces.append(nodes.math(match.group(0), match.group(1).strip()))
        last = match.end()
    if last < len(text):
        pieces.append(nodes.Text(text[last:]))
    return pieces


def bibliography_aids(app, doctree, docname):
    """Typeset the math of bibliography entries; link each entry back to its citations."""
    citations = list(doctree.findall(nodes.citation))
    if not citations:
        return
    typeset = False
    for citation in citations:
        for element in list(citation.findall(nodes.Element)):
            if isinstance(element, (nodes.literal, nodes.math, nodes.FixedTextElement)):
                continue
            # pybtex writes an entry as many small text nodes: join neighbours first.
            children, run = [], []
            for child in element.children:
                if isinstance(child, nodes.Text):
                    run.append(str(child))
                    continue
                if run:
                    children.append("".join(run))
                    run = []
                children.append(child)
            if run:
                children.append("".join(run))
            if not any(isinstance(c, str) and INLINE_TEX.search(c) for c in children):
                continue
            element.children = []
            for child in children:
                element.extend(_split_tex(child) if isinstance(child, str) else [child])
            typeset = True
    if typeset:
        app.env.get_domain("math").data["has_equations"][docname] = True

    domain = app.env.get_domain("cite")
    key_of = {citation.citation_id: citation.key for citation in domain.citations}
    for citation in citations:
        key = next((key_of[i] for i in citation["ids"] if i in key_of), None)
        refs = [ref for ref in domain.citation_refs
                if key in {target.key for target in ref.targets}]
        if key is None or not refs:
            continue
        line = nodes.paragraph(classes=["citation-backlinks"])
        line += nodes.Text("Cited in ")
        seen = {}
        for ref in refs:
            seen.setdefault(ref.docname, []).append(ref.citation_ref_id)
        for n, (citing, ids) in enumerate(seen.items()):
            if n:
                line += nodes.Text(", ")
            uri = app.builder.get_relative_uri(docname, citing)
            title = app.env.titles[citing].astext() if citing in app.env.titles else citing
            line += nodes.reference("", title, internal=True, refuri=f"{uri}#{ids[0]}")
            for k, ref_id in enumerate(ids[1:], start=2):
                line += nodes.Text(" ")
                line += nodes.reference("", f"({k})", internal=True, refuri=f"{uri}#{ref_id}")
        line += nodes.Text(".")
        citation += line


def _bundle_uri(docname):
    return posixpath.relpath(BUNDLE_PATH, posixpath.dirname(docname) or ".")


def bundle_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``{bundle}`link text``: a link to the downloadable bundle of notebooks and code."""
    docname = inliner.document.settings.env.docname
    node = nodes.reference(rawtext, text, refuri=_bundle_uri(docname), classes=["bundle-link"])
    return [node], []


def bundle_button(app, pagename, templatename, context, doctree):
    """Offer the bundle in the theme's download menu, first, on every page."""
    for group in context.get("header_buttons", []):
        if group.get("label") == "download-buttons":
            group["buttons"].insert(0, {
                "type": "link",
                "url": _bundle_uri(pagename),
                "text": ".zip",
                "tooltip": "Download the notebooks and optimlab, to run them",
                "icon": "fas fa-file-zipper",
                "label": "download-bundle-button",
            })


RUN_TEXT = """\
# Running the book's notebooks

This folder holds every chapter of "{title}" as a Jupyter notebook (book/), the package
optimlab that the chapters import, and the exact versions of everything they use
(requirements.lock). With Python 3.11 or newer:

    python3 -m venv .venv
    .venv/bin/pip install --no-deps -r requirements.lock
    .venv/bin/pip install --no-deps -e .
    .venv/bin/jupyter lab book/

(On Windows: .venv\\Scripts\\pip and .venv\\Scripts\\jupyter.) Installing needs the network
once; after that everything runs offline: the chapters download no data.
"""


def _bundle_members(app):
    root = Path(app.srcdir)
    members = []
    for docname in sorted(app.env.found_docs):
        source = Path(app.env.doc2path(docname))
        if source.suffix == ".ipynb":
            members.append(source)
    for name in BUNDLE_FILES:
        if (root / name).is_file():
            members.append(root / name)
    for tree in BUNDLE_TREES:
        members.extend(path for path in sorted((root / tree).rglob("*"))
                       if path.is_file() and "__pycache__" not in path.parts
                       and path.suffix not in (".pyc", ".pyo"))
    return root, members


def build_bundle(app, exception):
    """Write the zip of notebooks, optimlab and the lock (byte-identical for equal inputs)."""
    if exception is not None or app.builder.format != "html":
        return
    root, members = _bundle_members(app)
    folder = Path(BUNDLE).stem
    target = Path(app.outdir) / BUNDLE_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        def add(name, data):
            info = zipfile.ZipInfo(f"{folder}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            bundle.writestr(info, data)

        add("RUN.md", RUN_TEXT.format(title=app.config.project))
        for path in members:
            add(path.relative_to(root).as_posix(), path.read_bytes())


def interactive_assets(app, pagename, templatename, context, doctree):
    """Vega, Vega-Lite and the figure script, on the pages with an interactive figure only."""
    if doctree is None:
        return
    if any(INTERACTIVE_MARK in node.astext() for node in doctree.findall(nodes.raw)):
        for script in INTERACTIVE_JS:  # deferred scripts run in order, after the page is parsed
            app.add_js_file(script, loading_method="defer")
        app.add_css_file(INTERACTIVE_CSS)


def nitpick_pairs(app, config):
    # _config.yml can only write lists; Sphinx looks up (type, target) tuples.
    config.nitpick_ignore = [tuple(pair) for pair in config.nitpick_ignore]


def setup(app):
    app.add_config_value("site_description", "", "html")
    app.connect("config-inited", add_paths)
    app.connect("config-inited", nitpick_pairs)
    app.connect("html-page-context", page_head, priority=900)
    app.connect("html-page-context", bundle_button, priority=900)
    app.connect("html-page-context", interactive_assets)
    app.connect("doctree-read", hide_nbval_comments)
    app.connect("doctree-resolved", bibliography_aids)
    app.connect("build-finished", build_bundle)
    app.add_role("bundle", bundle_role)
    app.add_css_file("site.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
