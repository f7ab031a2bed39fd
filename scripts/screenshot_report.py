"""Screenshot a Snakemake HTML report in headless Chromium, after its JavaScript has rendered.

    python scripts/screenshot_report.py report.html --out report.png
    python scripts/screenshot_report.py report.html --show funnel.png --out funnel.png
    python scripts/screenshot_report.py report.zip --show cost.html --out cost.png --check

A Snakemake report is a React app: the HTML file holds the data (results as base64 data URIs)
and the scripts that draw the page, so the file has to run in a browser before anything shows.
Chromium's ``--virtual-time-budget`` lets the page's scripts and timers run before the shot.

``--show NAME`` opens one result the way a click in the report does: a copy of the report gets a
small script that selects the result's category and shows the result (an image, or an HTML
table in the report's iframe); the report itself is left untouched. ``--check`` fails (exit 1)
when the screenshot is blank or the rendered page lacks the app, so CI can use it.

Needs Chromium (Debian: ``apt-get install chromium``) and Pillow (in the lock). Reports built
with ``--report report.zip`` are unpacked to a temporary folder first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
# Added to a copy of the report, after its own scripts. Headless Chromium lays the page out in a
# viewport shorter than the screenshot (the window's height minus its toolbars), and the app is
# exactly one viewport high (Tailwind's h-screen), so the style pins the app to the picture's
# size. The script waits for the app, then opens the wanted result as a click does.
INJECTED = """
<style>.h-screen { height: __HEIGHT__px !important; } .w-screen { width: __WIDTH__px !important; }
</style>
<script>
(function () {
  const wanted = __WANTED__;
  function open() {
    if (typeof app === "undefined" || !app) { return setTimeout(open, 50); }
    if (wanted === null) { document.title = "screenshot: showing the start page"; return; }
    const paths = Object.keys(results).filter(
      (p) => results[p].name === wanted || p === wanted || p.endsWith("/" + wanted));
    if (paths.length === 0) { document.title = "screenshot: no result " + wanted; return; }
    const path = paths[0];
    let where = null;
    for (const cat in categories) {
      for (const sub in categories[cat]) {
        if (categories[cat][sub].includes(path)) { where = [cat, sub]; }
      }
    }
    const mime = results[path].mime_type;
    const views = {"text/html": "html", "application/pdf": "pdf"};
    const content = mime.startsWith("image/") ? "img" : views[mime];
    // One setView: React merges state asynchronously, so a second call would read stale state.
    const view = {navbarMode: "subcategory", category: where[0], subcategory: where[1]};
    if (content) {  // what a click shows; other types are downloads: show their info panel
      Object.assign(view, {content: content, contentPath: results[path].data_uri});
    } else {
      view.navbarMode = "resultinfo";
    }
    app.setView(Object.assign(view, {resultPath: path}));
    document.title = "screenshot: showing " + path;
  }
  window.addEventListener("load", open);
})();
</script>
"""


def find_browser(explicit: str | None = None) -> str | None:
    """The Chromium binary: ``--chromium``, else the first known name on PATH."""
    if explicit:
        return explicit
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def report_html(report: Path, workdir: Path) -> Path:
    """The report's HTML file; a ``.zip`` report is unpacked into ``workdir`` first."""
    if report.suffix != ".zip":
        return report
    with zipfile.ZipFile(report) as zf:
        zf.extractall(workdir / "unzipped")
    found = sorted((workdir / "unzipped").rglob("report.html"))
    if not found:
        raise SystemExit(f"no report.html inside {report}")
    return found[0]


def prepared_copy(page: Path, show: str | None, width: int, height: int, workdir: Path) -> Path:
    """A copy of ``page`` with :data:`INJECTED` (the report itself is left untouched).

    A zip report's page is copied next to itself, so its relative links to data still resolve.
    """
    text = page.read_text(encoding="utf-8")
    marker = "</body>"
    if marker not in text:
        raise SystemExit(f"{page} does not look like a Snakemake report (no </body>)")
    head, _, tail = text.rpartition(marker)
    extra = (
        INJECTED.replace("__HEIGHT__", str(height))
        .replace("__WIDTH__", str(width))
        .replace("__WANTED__", json.dumps(show))
    )
    target = (
        page.with_name(f".screenshot-{page.name}")
        if page.is_relative_to(workdir)
        else workdir / page.name
    )
    target.write_text(head + extra + marker + tail, encoding="utf-8")
    return target


def chromium_args(browser: str, width: int, height: int, budget_ms: int) -> list[str]:
    return [
        browser,
        "--headless",
        "--no-sandbox",  # root in containers; the page is a local file we made
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        f"--virtual-time-budget={budget_ms}",
    ]


def run_browser(args: list[str], profiles: Path, timeout: int, attempts: int = 3) -> str:
    """Run headless Chromium; its stdout. A run that hangs is killed whole and retried.

    Headless Chromium now and then never finishes a ``--virtual-time-budget`` run (seen once in
    ~20 runs on a loaded 2-core machine); a fresh start does. Chromium runs in its own process
    group so that killing it also ends its renderer and GPU processes; every attempt gets a
    fresh profile folder under ``profiles`` (a killed one may leave its lock behind).
    """
    for attempt in range(1, attempts + 1):
        profile = tempfile.mkdtemp(prefix="profile-", dir=profiles)
        proc = subprocess.Popen(
            [*args[:1], f"--user-data-dir={profile}", *args[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            print(f"{args[0]} hung (attempt {attempt}/{attempts}), retrying", file=sys.stderr)
            continue
        if proc.returncode != 0:
            raise SystemExit(f"{args[0]} failed ({proc.returncode}):\n{err[-3000:]}")
        return out
    raise SystemExit(f"{args[0]} did not finish in {attempts} attempts of {timeout} s")


def blank_reason(png: Path) -> str | None:
    """Why the screenshot looks blank (None if it shows something).

    A page that failed to render is one flat colour, or the small "Loading Snakemake Report..."
    text on white: both have almost no pixels that differ from the background.
    """
    from PIL import Image, ImageStat

    with Image.open(png) as img:
        gray = img.convert("L").resize((200, 150))
    stddev = ImageStat.Stat(gray).stddev[0]
    hist = gray.histogram()
    background = max(range(256), key=lambda v: hist[v])
    differing = sum(n for v, n in enumerate(hist) if abs(v - background) > 24) / (200 * 150)
    if stddev < 5 or differing < 0.02:
        return f"blank screenshot (std {stddev:.1f}, {differing:.1%} non-background pixels)"
    return None


def rendered(dom: str) -> bool:
    """Whether the report's React app drew itself (the empty ``#app`` div got its navbar)."""
    return '<div id="app"><' in dom and "<nav" in dom


def screenshot(
    report: Path,
    out: Path,
    *,
    show: str | None = None,
    width: int = 1400,
    height: int = 900,
    budget_ms: int = 15000,
    browser: str | None = None,
    timeout: int = 60,
) -> dict[str, object]:
    """Render ``report`` (optionally showing one result) and save a PNG; return what was seen.

    The returned ``dom`` is the page after its scripts ran (Chromium's ``--dump-dom``, same
    page and budget): it shows whether the app rendered and what it displays.
    """
    if not report.is_file():
        raise SystemExit(f"no report at {report}: build it with `snakemake --report {report}`")
    binary = find_browser(browser)
    if binary is None:
        raise SystemExit("Chromium not found: apt-get install chromium (or pass --chromium)")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="report-shot-") as tmp:
        workdir = Path(tmp)
        page = prepared_copy(report_html(report.resolve(), workdir), show, width, height, workdir)
        url = page.resolve().as_uri()
        base = chromium_args(binary, width, height, budget_ms)
        run_browser([*base, f"--screenshot={out}", url], workdir, timeout)
        dom = run_browser([*base, "--dump-dom", url], workdir, timeout)
    if not out.is_file():
        raise SystemExit(f"{binary} wrote no screenshot to {out}")
    return {"png": out, "dom": dom, "blank": blank_reason(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="report.html or report.zip")
    parser.add_argument("--out", type=Path, default=Path("report.png"), help="PNG to write")
    parser.add_argument("--show", help="result to open, by file name (e.g. funnel.png)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--budget-ms", type=int, default=15000, help="virtual time for the JS")
    parser.add_argument("--chromium", help="browser binary (default: chromium on PATH)")
    parser.add_argument("--check", action="store_true", help="exit 1 if blank or not rendered")
    args = parser.parse_args(argv)
    seen = screenshot(
        args.report,
        args.out,
        show=args.show,
        width=args.width,
        height=args.height,
        budget_ms=args.budget_ms,
        browser=args.chromium,
    )
    dom = str(seen["dom"])
    problems = [seen["blank"]] if seen["blank"] else []
    if not rendered(dom):
        problems.append("the report's app did not render")
    if "screenshot: showing" not in dom:
        problems.append(f"result {args.show!r} was not opened" if args.show else "no app")
    print(f"wrote {seen['png']}" + (f" ({'; '.join(problems)})" if problems else ""))
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    sys.exit(main())
