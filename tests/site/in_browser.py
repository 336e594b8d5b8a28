"""What a page load does in the browser: the requests, the console and a DOM report."""

from __future__ import annotations

from urllib.parse import urlsplit


class Visit:
    """What one page load did: requests, console, and the DOM report of VISIT_JS."""

    def __init__(self):
        self.third_party = []
        self.failed = []
        self.console_errors = []
        self.page_errors = []
        self.report = {}


def watch(page, base_url):
    """Block and record requests to other hosts; record failures and console errors."""
    local = urlsplit(base_url).netloc
    result = Visit()

    def route(route_):
        url = route_.request.url
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != local:
            result.third_party.append(url)
            route_.abort("blockedbyclient")
        else:
            route_.continue_()

    def on_response(response):
        if response.status >= 400:
            result.failed.append(f"HTTP {response.status} {response.url}")

    def on_request_failed(request):
        if urlsplit(request.url).netloc == local:
            result.failed.append(f"{request.failure} {request.url}")

    def on_console(message):
        if message.type == "error":
            result.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    page.route("**/*", route)
    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    page.on("console", on_console)
    page.on("pageerror", lambda error: result.page_errors.append(str(error)))
    return result


# Runs in the page after `load`: waits for MathJax and the images, then reports what a
# reader would see. Kept in one script so that each page costs one round trip.
VISIT_JS = r"""
async () => {
  const withTimeout = (promise, ms) =>
    Promise.race([promise, new Promise(resolve => setTimeout(() => resolve('timeout'), ms))]);
  const report = {};

  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    report.mathjax = (await withTimeout(mj.startup.promise.then(() => 'ok'), 15000)) === 'ok'
      ? mj.version : 'timeout';
  } else {
    report.mathjax = null;
  }
  const maths = [...document.querySelectorAll('.math')];
  report.mathCount = maths.length;
  report.untypeset = maths.filter(m => !m.querySelector('mjx-container'))
                          .map(m => m.textContent.trim().slice(0, 80));
  report.mathErrors = [...document.querySelectorAll('mjx-merror')]
                        .map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 120));

  const images = [...document.images];
  images.forEach(img => { img.loading = 'eager'; });
  await withTimeout(Promise.all(images.map(img => img.decode().catch(() => null))), 10000);
  const inContent = img => !!img.closest('.bd-content');
  const describe = img => ({
    src: img.getAttribute('src'),
    naturalWidth: img.naturalWidth,
    alt: img.getAttribute('alt'),
    content: inContent(img),
    output: !!img.closest('.cell_output'),
    caption: (img.closest('figure')?.querySelector('figcaption')?.textContent || '').trim(),
    themed: img.matches('.only-dark, .only-light, .dark-light'),
  });
  report.images = images.map(describe);
  const html = document.documentElement;
  const savedTheme = html.dataset.theme;
  const noTransitions = document.createElement('style');
  noTransitions.textContent = '* { transition: none !important; }';
  document.head.appendChild(noTransitions);
  for (const [mode, key] of [['dark', 'darkBackground'], ['light', 'lightBackground']]) {
    html.dataset.theme = mode;
    images.forEach((img, i) => { report.images[i][key] = getComputedStyle(img).backgroundColor; });
  }
  html.dataset.theme = savedTheme;
  noTransitions.remove();

  const text = document.body.textContent;
  report.errorText = [];
  if (text.includes('Traceback (most recent call last)')) report.errorText.push('a Python traceback');
  for (const [selector, what] of [
      ['.output.traceback, .output.error', 'an error output cell'],
      ['.output.stderr', 'output on stderr'],
      ['.system-message', 'a docutils system message'],
      ['.problematic', 'an unresolved reference']]) {
    const found = document.querySelectorAll(selector);
    if (found.length) report.errorText.push(`${found.length} x ${what}: ` +
                                           found[0].textContent.trim().slice(0, 120));
  }

  report.blocks = [...document.querySelectorAll('.proof.algorithm, div.exercise')]
    .map(el => ({id: el.id, classes: el.className}));
  report.dropdowns = [];
  for (const box of document.querySelectorAll('.admonition.dropdown, .toggle, .solution')) {
    const body = [...box.children].filter(c => !c.matches('.admonition-title, button, .toggle-button'));
    const visible = () => body.some(el => el.getClientRects().length > 0 &&
                                          getComputedStyle(el).visibility !== 'hidden');
    const entry = {id: box.id, classes: box.className, hiddenAtLoad: !visible()};
    const button = box.querySelector('button.toggle-button') || box.querySelector('.admonition-title');
    if (button) {
      button.click();
      await new Promise(resolve => setTimeout(resolve, 50));
      entry.shownOnClick = visible();
    }
    report.dropdowns.push(entry);
  }
  return report;
}
"""


# Runs in the page after `load` at a given viewport: waits for MathJax and the images, then
# measures what a reader on that screen gets. See tests/site/test_layout.py.
LAYOUT_JS = r"""
async () => {
  const withTimeout = (promise, ms) =>
    Promise.race([promise, new Promise(resolve => setTimeout(() => resolve('timeout'), ms))]);
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) await withTimeout(mj.startup.promise, 15000);
  const images = [...document.images];
  images.forEach(img => { img.loading = 'eager'; });
  await withTimeout(Promise.all(images.map(img => img.decode().catch(() => null))), 10000);
  await new Promise(resolve => requestAnimationFrame(() => setTimeout(resolve, 100)));

  const report = {innerWidth: window.innerWidth,
                  scrollWidth: document.documentElement.scrollWidth};
  const describe = el => {
    const id = el.id ? '#' + el.id : '';
    const cls = el.classList.length ? '.' + [...el.classList].slice(0, 2).join('.') : '';
    return `<${el.tagName.toLowerCase()}${id}${cls}> "${el.textContent.trim().slice(0, 50)}"`;
  };
  // The outermost elements that reach past the right edge, for the failure message.
  report.tooWide = [];
  if (report.scrollWidth > report.innerWidth) {
    for (const el of document.body.querySelectorAll('*')) {
      const right = el.getBoundingClientRect().right + window.scrollX;
      if (right > report.innerWidth + 1 && getComputedStyle(el).position !== 'fixed') {
        let parent = el.parentElement, nested = false;
        while (parent && parent !== document.body) {
          if (report.tooWide.some(w => w.el === parent)) { nested = true; break; }
          parent = parent.parentElement;
        }
        if (!nested) report.tooWide.push({el, text: `${describe(el)} reaches ${Math.round(right)} px`});
      }
      if (report.tooWide.length >= 8) break;
    }
    report.tooWide = report.tooWide.map(w => w.text);
  }

  // Text a reader sees as TeX source: text nodes of the page outside code and typeset math.
  const skip = 'pre, code, kbd, samp, script, style, textarea, mjx-container, .math, ' +
               '.highlight, .MathJax, .sig, [aria-hidden="true"]';  // .sig: API signatures are code
  const macros = 'frac|sqrt|mathrm|mathbf|hat|bar|tilde|nabla|sum|prod|left|right|begin|end|' +
                 'alpha|beta|gamma|eta|lambda|mu|theta|epsilon|kappa|rho|sigma|tau|cdot|le|ge|infty|ell';
  const tex = new RegExp('\\$[^$\\s][^$]*\\$|\\\\[()\\[\\]]|\\\\(' + macros + ')\\b');
  report.rawTex = [];
  const root = document.querySelector('.bd-article') || document.body;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest(skip)) continue;
    const match = node.textContent.match(tex);
    if (match) {
      const at = Math.max(0, match.index - 30);
      report.rawTex.push(node.textContent.slice(at, match.index + 40).replace(/\s+/g, ' '));
    }
  }

  // Figures: the scale at which each one is drawn (see test_figures_are_legible_on_a_phone).
  report.figures = images
    .filter(img => img.closest('.bd-article') && (img.closest('.cell_output') || img.closest('figure')))
    .map(img => {
      const declared = parseFloat(img.getAttribute('width')) ||
                       (img.style.width.endsWith('px') ? parseFloat(img.style.width) : 0);
      const natural = declared || img.naturalWidth;
      const rendered = img.getBoundingClientRect().width;
      return {src: img.getAttribute('src'), naturalCss: natural, declared: !!declared,
              pixels: img.naturalWidth, rendered,
              scale: natural ? rendered / natural : 0};
    });
  return report;
}
"""
