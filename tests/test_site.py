"""The book as a reader sees it: built from the executed notebooks and opened in headless Chromium.

The site is built by tools/book.py from the executed copies that the notebook tests of this run
wrote (tools/executed.py), so these tests run after the notebooks (conftest.py orders them last).
Every page is opened from a local HTTP server on 127.0.0.1 and must: load nothing from outside
(no external or failed request, no console error), show its maths typeset by the bundled MathJax,
show every figure its notebook produced at the figure's real size, hide the exercise solutions
behind a toggle that opens them, and say which budget and machine produced its outputs. Internal
links must resolve and the search must find terms from a late lesson and from the glossary. A
screenshot of every page is saved in book/_build/screenshots/ (CI keeps it as an artifact).

Without a browser or without executed notebooks these tests are skipped, except in CI
(FTLIB_REQUIRE_SITE_TEST=1, set by .ci/run), where that is a failure.
"""
from __future__ import annotations

import base64
import functools
import http.server
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "book" / "_build"
HTML = BUILD / "html"
SHOTS = BUILD / "screenshots"
REQUIRED = os.environ.get("FTLIB_REQUIRE_SITE_TEST") == "1"

pytestmark = [pytest.mark.slow, pytest.mark.site]

sys.path.insert(0, str(ROOT / "tools"))
import book  # noqa: E402
import executed  # noqa: E402

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _unavailable(why: str):
    if REQUIRED:
        pytest.fail(f"the site test must run here (FTLIB_REQUIRE_SITE_TEST=1), but {why}")
    pytest.skip(why)


def chromium_path() -> str | None:
    for candidate in (os.environ.get("FTLIB_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


# ---- building and serving the site -------------------------------------------------------------

@pytest.fixture(scope="module")
def site():
    (BUILD / "site-report.txt").unlink(missing_ok=True)
    missing = book.stale(book.toc_notebooks())
    if missing and not REQUIRED:
        _unavailable("no fresh executed copy of " + ", ".join(nb.stem for nb in missing)
                     + " (run the notebooks first: `make test`, or `make book`)")
    if missing:        # CI: the book executes them itself (through their tests), and says so
        log = executed.EXECUTED_DIR / "_runs.log"
        report("no executed copy from the test run of " + ", ".join(nb.stem for nb in missing)
               + "; the book build executes them again. The run's log:\n"
               + (log.read_text(encoding="utf-8") if log.is_file() else "(none)"))
    t0 = time.time()
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "book.py")] + ([] if missing else ["--no-execute"]),
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"book build failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    report(f"book built from the executed notebooks in {time.time() - t0:.0f} s: {len(pages(HTML))} pages")
    return HTML


def report(line: str) -> None:
    """The site's measurements, printed by .ci/run after the tests (book/_build/site-report.txt)."""
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / "site-report.txt", "a", encoding="utf-8") as f:
        f.write(line + "\n")


SERVER_ERRORS: list[str] = []   # every request the server answered with an error, page events or not


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send_error(self, code, *args, **kwargs):
        # The browser's own requests (/favicon.ico) raise no page event; the server sees them all.
        SERVER_ERRORS.append(f"HTTP {code} for {self.path}")
        super().send_error(code, *args, **kwargs)


@pytest.fixture(scope="module")
def server(site):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(server):
    exe = chromium_path()
    if exe is None:
        _unavailable("no Chromium found (install Debian's `chromium`, or set FTLIB_CHROMIUM to a Chrome/Chromium binary)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def pages(html: Path) -> list[str]:
    """Every HTML page of the site, relative to its root."""
    return sorted(str(p.relative_to(html)) for p in html.rglob("*.html") if not p.relative_to(html).parts[0].startswith("_"))


# ---- what a page's notebook produced -------------------------------------------------------------

def png_size(data: str) -> tuple[int, int]:
    raw = base64.b64decode(data)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", raw[16:24])


def run_record(stem: str) -> dict:
    nb = nbformat.read(str(executed.copy_path(ROOT / "notebooks" / f"{stem}.ipynb")), as_version=4)
    return nb.metadata[executed.RUN_KEY]


def notebook_figures(stem: str) -> list[tuple[int, int]]:
    """The pixel sizes of the PNG figures that the executed copy of notebook ``stem`` holds."""
    nb = nbformat.read(str(executed.copy_path(ROOT / "notebooks" / f"{stem}.ipynb")), as_version=4)
    return sorted(png_size(out["data"]["image/png"]) for cell in nb.cells if cell.cell_type == "code"
                  for out in cell.get("outputs", []) if "image/png" in out.get("data", {}))


def hidden_solution_cells(stem: str) -> int:
    nb = nbformat.read(str(ROOT / "notebooks" / f"{stem}.ipynb"), as_version=4)
    return sum("hide-input" in c.get("metadata", {}).get("tags", []) for c in nb.cells)


# ---- opening a page ------------------------------------------------------------------------------

class Visit:
    """Open ``url`` in a new tab and record everything that went wrong while it loaded."""

    def __init__(self, browser, server: str, url: str):
        self.server, self.problems = server, []
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.on("request", self._request)
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed request {r.url}: {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status} for {r.url}"))
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(
            f"console error: {m.text} (at {m.location.get('url') or 'no url'})"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.goto(server + url, wait_until="networkidle")
        # MathJax 3 typesets after load; wait until it has finished (pages with no maths have no MathJax).
        self.page.evaluate("async () => { if (window.MathJax && MathJax.startup) await MathJax.startup.promise; }")

    def _request(self, request):
        if not (request.url.startswith(self.server) or request.url.startswith("data:")):
            self.problems.append(f"external request {request.url}")

    def close(self):
        self.page.close()


RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$")

PAGE_FACTS = """() => {
  const prose = document.querySelector('main').cloneNode(true);
  prose.querySelectorAll('pre, code, script, style, .cell_input, .cell_output').forEach(e => e.remove());
  const maths = [...document.querySelectorAll('main .math')];
  const imgs = [...document.querySelectorAll('main img')].map(i => ({
      src: i.getAttribute('src'), complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,
      shown: i.getBoundingClientRect().width}));
  return {
    prose: prose.textContent,
    maths: maths.length,
    typeset: maths.filter(m => m.querySelector('mjx-container') && !m.querySelector('mjx-merror')).length,
    imgs: imgs,
    runInfo: (document.querySelector('.run-info') || {}).textContent || null,
  };
}"""


def test_every_page_loads_offline_with_maths_figures_and_run_info(browser, server, site):
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    failures, t0 = [], time.time()
    SERVER_ERRORS.clear()
    for rel in pages(site):
        visit = Visit(browser, server, rel)
        facts = visit.page.evaluate(PAGE_FACTS)
        visit.page.screenshot(path=str(SHOTS / (rel.replace("/", "__").removesuffix(".html") + ".png")))
        problems = list(visit.problems)
        if facts["typeset"] != facts["maths"]:
            problems.append(f"{facts['maths'] - facts['typeset']} of {facts['maths']} formulas not typeset")
        raw = RAW_TEX.search(facts["prose"])
        if raw:
            start = max(raw.start() - 40, 0)
            problems.append(f"raw TeX in the rendered text: ...{facts['prose'][start:raw.end() + 40]!r}")
        for img in facts["imgs"]:
            if not img["complete"] or img["w"] == 0 or img["shown"] == 0:
                problems.append(f"figure {img['src']} did not load or is not shown")
        if rel.startswith("notebooks/"):
            stem = Path(rel).stem
            shown = sorted((i["w"], i["h"]) for i in facts["imgs"] if "_images/" in (i["src"] or ""))
            if shown != notebook_figures(stem):
                problems.append(f"figures on the page {shown} are not the notebook's {notebook_figures(stem)}")
            info = run_record(stem)
            if not facts["runInfo"] or f"Run budget {info['budget']}" not in " ".join(facts["runInfo"].split()):
                problems.append("no box saying which budget and machine produced the outputs")
        visit.close()
        if problems:
            failures.append(f"{rel}:\n  " + "\n  ".join(problems))
    report(f"{len(pages(site))} pages opened in Chromium in {time.time() - t0:.0f} s; screenshots in {SHOTS.relative_to(ROOT)}")
    if SERVER_ERRORS:
        failures.append("the server answered with an error (requests no page event shows):\n  "
                        + "\n  ".join(sorted(set(SERVER_ERRORS))))
    assert not failures, "\n".join(failures)


def test_the_checks_of_a_page_can_fail(browser, server, site, tmp_path):
    """The page checks above catch what they claim to: raw TeX, an external script, a missing figure."""
    bad = site / "_broken_page_for_test.html"
    SERVER_ERRORS.clear()
    bad.write_text('<html><body><main><p>\\(p\\) is raw</p><img src="_images/none.png">'
                   '<script src="https://cdn.jsdelivr.net/npm/x.js"></script></main></body></html>')
    try:
        visit = Visit(browser, server, bad.name)
        facts = visit.page.evaluate(PAGE_FACTS)
        visit.close()
    finally:
        bad.unlink()
    assert any("external request https://cdn.jsdelivr.net" in p for p in visit.problems)
    assert any("HTTP 404" in p for p in visit.problems)
    assert "HTTP 404 for /_images/none.png" in SERVER_ERRORS      # the server's own record sees it too
    assert RAW_TEX.search(facts["prose"])
    assert facts["imgs"][0]["w"] == 0


# ---- links, references and search ----------------------------------------------------------------

class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links, self.assets, self.icons = set(), [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "link" and "icon" in (a.get("rel") or "").split() and a.get("href"):
            self.icons.append(a["href"])
        for key in ("src", "href") if tag in ("script", "img", "link", "source", "iframe") else ():
            if a.get(key) and not (tag == "link" and a.get("rel") in ("canonical", "alternate")):
                self.assets.append((tag, a[key]))


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> _Refs:
    refs = _Refs()
    refs.feed(path.read_text(encoding="utf-8"))
    return refs


def test_no_page_refers_to_an_external_script_style_font_or_image(site):
    css_urls = re.compile(r"url\(\s*['\"]?((?:https?:)?//[^)'\"]+)")
    bad = [f"{rel}: <{tag}> {url}" for rel in pages(site) for tag, url in _parse(site / rel).assets
           if re.match(r"(https?:)?//", url)]
    bad += [f"{css.relative_to(site)}: {m}" for css in site.rglob("*.css") for m in css_urls.findall(css.read_text(errors="replace"))]
    assert not bad, "the site must work offline:\n" + "\n".join(bad)


def pages_without_an_icon(site: Path) -> list[str]:
    """Pages that name no icon that exists. A browser asks such a page's server for /favicon.ico, and
    whether that 404 is seen before the page moves on (the root page is a redirect) is a race: the
    site test then fails on some runs and not others. So every page names one."""
    bad = []
    for rel in pages(site):
        hrefs = _parse(site / rel).icons
        icons = [(site / rel).parent / unquote(urlsplit(h).path) for h in hrefs if not h.startswith("data:")]
        if not any(h.startswith("data:") for h in hrefs) and not any(Path(os.path.normpath(i)).is_file() for i in icons):
            bad.append(rel)
    return bad


def test_every_page_names_an_icon_so_no_browser_asks_for_favicon_ico(site, tmp_path):
    assert not pages_without_an_icon(site), "pages with no icon: " + ", ".join(pages_without_an_icon(site))
    assert (site / "favicon.ico").is_file()              # and for browsers that ask anyway
    # the wrong answer it rejects: Jupyter Book's own root page, a bare redirect
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    assert pages_without_an_icon(tmp_path) == ["index.html"]


def test_every_internal_link_resolves(site):
    broken = []
    for rel in pages(site):
        for href in _parse(site / rel).links:
            parts = urlsplit(href)
            if parts.scheme or href.startswith("//") or href.startswith("mailto:"):
                continue                                   # links to sources in prose are fine
            target = site / rel if not parts.path else (site / rel).parent / unquote(parts.path)
            target = Path(os.path.normpath(target))
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{rel}: {href} (no such file)")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _parse(target).ids:
                broken.append(f"{rel}: {href} (no element with that id)")
    assert not broken, "broken internal links:\n" + "\n".join(broken)


def _search(browser, server, term: str) -> list[str]:
    visit = Visit(browser, server, f"search.html?q={term}")
    visit.page.wait_for_function("() => /Search finished|did not match/.test("
                                 "(document.querySelector('#search-results .search-summary') || {}).textContent || '')",
                                 timeout=30_000)
    hits = visit.page.eval_on_selector_all("#search-results ul.search li a", "as => as.map(a => a.href)")
    assert not visit.problems, visit.problems
    visit.close()
    return [urljoin(server, urlsplit(h).path)[len(server):] for h in hits]


def test_search_finds_a_late_lesson_and_the_glossary(browser, server, site):
    assert "notebooks/15_named_entities.html" in _search(browser, server, "seqeval")
    assert "book/glossary.html" in _search(browser, server, "微调")
    assert _search(browser, server, "zzyzxnotaword") == []


def test_solutions_are_hidden_until_their_toggle_is_clicked(browser, server, site):
    """A worked solution and the answer it prints stay folded until the reader opens them."""
    stem = "01_cross_entropy"
    n = hidden_solution_cells(stem)
    assert n >= 1
    visit = Visit(browser, server, f"notebooks/{stem}.html")
    cells = visit.page.locator("div.cell.tag_hide-cell")
    assert cells.count() == n
    first = cells.nth(0)
    source, output = first.locator(".cell_input"), first.locator(".cell_output")
    assert "check(" in source.text_content() and "correct" in output.text_content()   # they are on the page ...
    assert not source.is_visible() and not output.is_visible(), "a solution is shown before its toggle is clicked"
    first.locator("summary").first.click()                                         # ... behind a toggle
    source.wait_for(state="visible", timeout=5_000)
    assert output.is_visible()
    assert not visit.problems, visit.problems
    visit.close()
