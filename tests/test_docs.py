"""The python examples of docs/ run as written, so they cannot fall behind the code."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_api_page_has_an_example():
    assert python_blocks(DOCS / "api.md"), "docs/api.md lost its runnable example"


@pytest.mark.parametrize("index", range(len(python_blocks(DOCS / "api.md"))))
def test_api_example_runs(index):
    code = python_blocks(DOCS / "api.md")[index]
    exec(compile(code, f"docs/api.md block {index}", "exec"), {"__name__": "docs_api_example"})
