"""A markdown page as GitHub would show it, screenshotted: does its first screen give the answer?

    python tools/screenshot.py reports/report.md docs/screenshots/report.png
    python tools/screenshot.py reports/compare/A_vs_B.md /tmp/review.png --html /tmp/review.html

Renders the page the way GitHub renders markdown: CommonMark with GitHub's tables and
strikethrough, raw HTML such as <details> kept, images and links relative to the page's
folder. A short stylesheet after GitHub's (its fonts, sizes, table rules and page
width) dresses it, and headless Chromium takes a screenshot of the first screen,
1280x800 unless --width/--height say otherwise. Nothing is fetched: the page's own
images are read from disk.

A maintainer's tool, not in CI (docs/review.md). Needs Chromium (Debian: apt-get install
chromium; or the browser named by $CHROMIUM) and markdown-it-py (installed with DVC,
through rich).
"""

from __future__ import annotations

import argparse
import html
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 120  # a page of tables and a few figures; a hung browser must not hang the tool

# After GitHub's markdown stylesheet (github-markdown-css, light theme), cut to what
# these pages use: the file view's bordered column, its type scale, tables with
# borders and banded rows, code spans, <details>.
STYLE = """
body { margin: 0; background: #ffffff; }
.markdown-body {
  box-sizing: border-box; max-width: 1012px; margin: 16px auto; padding: 32px;
  border: 1px solid #d1d9e0; border-radius: 6px; color: #1f2328; background: #ffffff;
  font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif;
  font-size: 16px; line-height: 1.5; word-wrap: break-word;
}
.markdown-body > :first-child { margin-top: 0; }
h1, h2, h3, h4, h5, h6 { margin: 24px 0 16px; font-weight: 600; line-height: 1.25; }
h1 { font-size: 2em; padding-bottom: .3em; border-bottom: 1px solid #d1d9e0b3; }
h2 { font-size: 1.5em; padding-bottom: .3em; border-bottom: 1px solid #d1d9e0b3; }
h3 { font-size: 1.25em; }
h4 { font-size: 1em; }
p, blockquote, ul, ol, dl, table, pre, details { margin-top: 0; margin-bottom: 16px; }
ul, ol { padding-left: 2em; }
li + li { margin-top: .25em; }
a { color: #0969da; text-decoration: none; }
strong { font-weight: 600; }
code, pre {
  font-family: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 85%;
}
code { padding: .2em .4em; margin: 0; background: #818b981f; border-radius: 6px; white-space: break-spaces; }
pre { padding: 16px; overflow: auto; line-height: 1.45; background: #f6f8fa; border-radius: 6px; }
pre code { padding: 0; font-size: 100%; background: transparent; white-space: pre; }
blockquote { margin-left: 0; padding: 0 1em; color: #59636e; border-left: .25em solid #d1d9e0; }
hr { height: .25em; margin: 24px 0; padding: 0; background: #d1d9e0; border: 0; }
table {
  display: block; width: max-content; max-width: 100%; overflow: auto;
  border-spacing: 0; border-collapse: collapse;
}
th, td { padding: 6px 13px; border: 1px solid #d1d9e0; }
th { font-weight: 600; }
tr { background: #ffffff; border-top: 1px solid #d1d9e0b3; }
tr:nth-child(2n) { background: #f6f8fa; }
img { max-width: 100%; box-sizing: content-box; background: #ffffff; }
summary { cursor: pointer; }
details > :not(summary) { margin-top: 16px; }
"""


class Refusal(Exception):
    """Bad input or a missing tool: one line, exit status 2."""


def render(page: Path) -> str:
    """The page as a standalone HTML document whose relative links resolve from the page's folder."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        raise Refusal("markdown-it-py is not installed (pip install markdown-it-py)") from None
    try:
        text = page.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Refusal(f"{page}: no such page") from None
    except (OSError, UnicodeDecodeError) as e:
        raise Refusal(f"{page}: cannot be read as UTF-8 text ({e})") from None
    # GitHub keeps raw HTML (<details>, <img>) and adds tables and strikethrough to CommonMark
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    base = page.resolve().parent.as_uri() + "/"
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n<base href="{html.escape(base)}">\n'
            f"<title>{html.escape(page.name)}</title>\n<style>{STYLE}</style></head>\n"
            f'<body><article class="markdown-body">\n{md.render(text)}</article></body></html>\n')


def browser() -> str:
    named = os.environ.get("CHROMIUM")
    if named:
        found = shutil.which(named)
        if not found:
            raise Refusal(f"$CHROMIUM names {named!r}, which is not an executable on PATH")
        return found
    found = next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found:
        raise Refusal("no Chromium on PATH (Debian: apt-get install chromium; or name a browser in $CHROMIUM)")
    return found


def screenshot(document: str, png: Path, width: int, height: int) -> None:
    """Headless Chromium's picture of the document's first width x height pixels."""
    exe = browser()
    png = png.resolve()
    try:
        png.parent.mkdir(parents=True, exist_ok=True)
        png.unlink(missing_ok=True)  # so that a picture there afterwards is this run's
    except OSError as e:
        raise Refusal(f"{png}: cannot be written ({e.strerror})") from None
    with tempfile.TemporaryDirectory(prefix="screenshot-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(document, encoding="utf-8")
        # a fresh profile, no network chatter of its own, the window at the screen's size
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={Path(tmp) / 'profile'}",
               f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri()]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise Refusal(f"{exe} took over {TIMEOUT_S} s and was stopped") from None
    if result.returncode != 0 or not png.is_file():
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise Refusal(f"{exe} made no screenshot (exit {result.returncode}): {last}")


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels >= 1, got {value!r}")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot a markdown page as GitHub would show it.")
    parser.add_argument("page", type=Path, help="the markdown page (its images relative to its folder)")
    parser.add_argument("png", type=Path, help="where the screenshot goes")
    parser.add_argument("--width", type=positive, default=1280)
    parser.add_argument("--height", type=positive, default=800)
    parser.add_argument("--html", type=Path, help="also keep the rendered HTML here")
    args = parser.parse_args(argv)
    try:
        document = render(args.page)
        if args.html:
            try:
                args.html.parent.mkdir(parents=True, exist_ok=True)
                args.html.write_text(document, encoding="utf-8")
            except OSError as e:
                raise Refusal(f"--html {args.html}: cannot be written ({e.strerror})") from None
        screenshot(document, args.png, args.width, args.height)
    except Refusal as e:
        print(f"screenshot: {e}", file=sys.stderr)
        return 2
    print(args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
