"""Print the built site as one PDF: `python book/_ext/print_book.py _build/html _build/book.pdf`.

The system Chromium (driven by Playwright, which downloads no browser) prints every page
of the table of contents, in order, from the built site served on 127.0.0.1, once MathJax
has typeset it and with every folded part (solutions, hidden code) opened; the site's
print stylesheet (book/_ext/static/site.css) wraps long code lines instead of clipping
them. pypdf then joins the pages behind a contents page (with page numbers), adds a PDF
outline (bookmarks) and numbers the pages as the contents page does.
"""

from __future__ import annotations

import functools
import html
import http.server
import io
import os
import shutil
import sys
import threading
from pathlib import Path

import yaml
from pypdf import PdfReader, PdfWriter

ROOT = Path(__file__).resolve().parents[2]
PDF_OPTIONS = dict(format="A4", print_background=True, prefer_css_page_size=False,
                   margin={"top": "16mm", "bottom": "16mm", "left": "14mm", "right": "14mm"})

PREPARE_JS = r"""
async () => {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) await mj.startup.promise;
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-hidden').forEach(el => el.classList.remove('toggle-hidden'));
  document.querySelectorAll('button.toggle-button').forEach(b => b.classList.remove('toggle-button-hidden'));
  await Promise.all([...document.images].map(img => { img.loading = 'eager';
                                                      return img.decode().catch(() => null); }));
  return document.querySelector('.bd-article h1')?.textContent.replace('#', '').trim()
         || document.title;
}
"""


def toc_pages():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages.extend(chapter["file"] for chapter in part.get("chapters", []))
    pages.extend(chapter["file"] for chapter in toc.get("chapters", []))
    return [f"{page}.html" for page in pages]


def find_chromium():
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (path := shutil.which(candidate)):
            return path
    sys.exit("make pdf needs Chromium (Debian: apt-get install chromium)")


def serve(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def contents_html(title, entries):
    rows = "\n".join(
        f'<li><span class="t">{html.escape(name)}</span><span class="n">{page}</span></li>'
        for name, page in entries)
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
      body {{ font-family: sans-serif; margin: 0; }}
      h1 {{ font-size: 28pt; margin: 30mm 0 4mm; }} h2 {{ font-size: 16pt; margin-top: 14mm; }}
      ol {{ list-style: none; padding: 0; font-size: 12pt; }}
      li {{ display: flex; border-bottom: 1px dotted #999; padding: 2.5mm 0; }}
      .t {{ flex: 1; }} .n {{ width: 12mm; text-align: right; }}
    </style></head><body><h1>{html.escape(title)}</h1><h2>Contents</h2>
    <ol>{rows}</ol></body></html>"""


def main(site, output):
    site, output = Path(site), Path(output)
    from playwright.sync_api import sync_playwright

    title = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))["title"]
    server, base = serve(site)
    printed = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=find_chromium(), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1000, "height": 1400})
        tab = context.new_page()
        tab.emulate_media(media="print")
        for page in toc_pages():
            if not (site / page).is_file():
                sys.exit(f"{site / page} is missing: build the site first")
            tab.goto(base + page, wait_until="load")
            name = tab.evaluate(PREPARE_JS)
            printed.append((name, PdfReader(io.BytesIO(tab.pdf(**PDF_OPTIONS)))))
            print(f"printed {page} ({len(printed[-1][1].pages)} pages)")
        # The contents page: one page (or more) before the chapters.
        contents_pages = 1
        for _ in range(3):  # numbers depend on the contents' own length
            entries, start = [], contents_pages + 1
            for name, reader in printed:
                entries.append((name, start))
                start += len(reader.pages)
            tab.set_content(contents_html(title, entries))
            contents = PdfReader(io.BytesIO(tab.pdf(**PDF_OPTIONS)))
            if len(contents.pages) == contents_pages:
                break
            contents_pages = len(contents.pages)
        browser.close()
    server.shutdown()

    writer = PdfWriter()
    writer.append(contents)
    for (name, reader), (_, start) in zip(printed, entries, strict=True):
        writer.append(reader)
        writer.add_outline_item(title=name, page_number=start - 1)
    writer.add_metadata({"/Title": title})
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("wb") as handle:
        writer.write(handle)
    print(f"wrote {output} ({len(writer.pages)} pages)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.splitlines()[0])
    main(*sys.argv[1:])
