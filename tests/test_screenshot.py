"""tools/screenshot.py, the maintainers' check of a page as a person sees it (docs/review.md):
a markdown page with GitHub's constructs rendered to HTML, and Chromium's picture of
its first screen, the page's own figure in it."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "screenshot.py"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PAGE = """\
# The verdict

| set | FID |
| --- | ---: |
| cosine | 1.25 |

<details><summary>every metric</summary>

folded away

</details>

![a red square](figures/red.png)
"""


def shoot(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, timeout=180)


def test_a_missing_page_is_one_line(tmp_path):
    result = shoot(tmp_path / "nowhere.md", tmp_path / "shot.png")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nowhere.md" in result.stderr, result.stderr
    assert not (tmp_path / "shot.png").exists()


@pytest.mark.skipif(not any(map(shutil.which, BROWSERS)),
                    reason="needs Chromium on PATH (Debian: apt-get install chromium); a maintainer's tool, not in CI")
def test_the_first_screen_of_a_page_with_a_table_details_and_a_relative_figure(tmp_path):
    pytest.importorskip("markdown_it", reason="needs markdown-it-py (installed with DVC, through rich)")
    from PIL import Image

    page = tmp_path / "pages" / "page.md"
    (page.parent / "figures").mkdir(parents=True)
    page.write_text(PAGE)
    Image.new("RGB", (300, 200), (255, 0, 0)).save(page.parent / "figures" / "red.png")
    png, html = tmp_path / "shots" / "page.png", tmp_path / "page.html"
    result = shoot(page, png, "--html", html)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(png)
    document = html.read_text()
    # GitHub's table (with its column alignment), the raw <details> kept, links from the page's folder
    assert '<th style="text-align:right">FID</th>' in document
    assert "<details><summary>every metric</summary>" in document
    assert f'<base href="{page.parent.resolve().as_uri()}/">' in document and 'src="figures/red.png"' in document
    with Image.open(png) as shot:
        assert shot.size == (1280, 800)
        # the figure was found beside the page and drawn on the first screen (at most at its own size)
        red = int((np.asarray(shot.convert("RGB")) == (255, 0, 0)).all(axis=-1).sum())
    assert 0.9 * 300 * 200 <= red <= 300 * 200, red
