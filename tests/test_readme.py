"""The README is a manual that cannot fall behind the code: the full code map
(docs/design.md) names every module, stage script and tool and nothing that is gone,
the README's short map names nothing that is gone, the tool lists name every tool,
its test command is the one CI runs, it stays short enough to read, and its first
screen carries no number that the next commit makes stale (those live in
reports/report.md and docs/)."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DESIGN = REPO / "docs" / "design.md"  # the full code map
MAX_LINES = 300
MAPPED = ("maskgit", "stages", "tools")  # every .py file under these is in the code map
# a line of the code map: its indent, one or more names (a path, or several separated by
# ", "), then nothing or a description after two or more spaces
ENTRY = re.compile(r"^( *)([\w./-]+(?:, [\w./-]+)*)(?: {2,}\S.*)?$")


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"no '## {title}' section"
    return match.group(1)


def code_map(text: str) -> str:
    blocks = re.findall(r"^```\n(.*?)^```", section(text, "Code map"), flags=re.S | re.M)
    assert blocks, "a code map lost its code block"
    return blocks[0]


def map_paths(block: str) -> set[str]:
    """The repository paths a code map names, and the folders they lie in. A name
    ending in '/' is a folder: the names indented under it are inside it. Lines that
    are not entries (a description carried on to the next line) are skipped."""
    paths, folders = set(), []  # folders: (indent, path) of the open folders
    for line in block.splitlines():
        match = ENTRY.match(line)
        if not match or not any("." in n or n.endswith("/") for n in match.group(2).split(", ")):
            continue
        indent = len(match.group(1))
        while folders and folders[-1][0] >= indent:
            folders.pop()
        parent = folders[-1][1] if folders else ""
        for name in match.group(2).split(", "):
            path = (parent + name).rstrip("/")
            paths.add(path)
            paths.update(path.rsplit("/", k)[0] for k in range(1, path.count("/") + 1))  # its folders
            if name.endswith("/"):
                folders.append((indent, parent + name))
    return paths


def python_files() -> set[str]:
    return {p.relative_to(REPO).as_posix() for top in MAPPED for p in (REPO / top).rglob("*.py")
            if "__pycache__" not in p.parts}


def test_the_parser_reads_nested_folders_lists_and_continuations():
    block = ("params.yaml, dvc.yaml   the params; the DAG\n"
             "pkg/                    a package\n"
             "  sub/                  a layer\n"
             "    a.py, b.py          two modules\n"
             "                        a description carried on\n"
             "    c.py\n"
             "  data/d.py             a module in a folder of its own\n"
             "tools/t.py              a tool\n")
    assert map_paths(block) == {"params.yaml", "dvc.yaml", "pkg", "pkg/sub", "pkg/sub/a.py", "pkg/sub/b.py",
                                "pkg/sub/c.py", "pkg/data", "pkg/data/d.py", "tools", "tools/t.py"}


def test_the_code_map_names_every_module_stage_and_tool():
    named = map_paths(code_map(DESIGN.read_text()))
    # a package's __init__.py is named by its folder
    missing = sorted(f for f in python_files()
                     if f not in named and not (f.endswith("/__init__.py") and f.rsplit("/", 1)[0] in named))
    assert not missing, ("docs/design.md's code map (## Code map) does not name these files; add each under its "
                         "folder, the name, two or more spaces, then one line on what it holds: "
                         f"{missing}")


@pytest.mark.parametrize("page", [README, DESIGN], ids=["README", "design"])
def test_the_code_map_names_nothing_that_is_gone(page):
    gone = sorted(p for p in map_paths(code_map(page.read_text())) if not (REPO / p).exists())
    assert not gone, f"{page.name}'s code map names files that do not exist: {gone}"


def test_the_readme_stays_a_manual_one_can_read():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_LINES, (f"README.md is {lines} lines (at most {MAX_LINES}): move reference material "
                                "to docs/ and link it")


def tools() -> list[str]:
    """The command-line tools: the modules directly in maskgit/ that run as `python -m`."""
    return sorted(p.stem for p in (REPO / "maskgit").glob("*.py")
                  if re.search(r'^if __name__ == "__main__":', p.read_text(), flags=re.M))


def test_the_tool_lists_name_every_tool():
    assert {"bench", "compare", "experiments", "preset", "sweep", "tune", "verify"} <= set(tools())
    package_doc = ast.get_docstring(ast.parse((REPO / "maskgit" / "__init__.py").read_text()))
    unlisted = [t for t in tools() if not re.search(rf"``(?:maskgit)?\.{t}``", package_doc)]
    assert not unlisted, f"maskgit/__init__.py's docstring does not list the tools {unlisted}"
    named = map_paths(code_map(README.read_text()))
    assert not [t for t in tools() if f"maskgit/{t}.py" not in named]


def test_ci_runs_the_readmes_test_command():
    commands = re.findall(r"^```bash\n(.*?)^```", section(README.read_text(), "Tests"), flags=re.S | re.M)
    assert commands, "the README's Tests section lost its command"
    command = commands[0].strip()
    assert "pytest" in command
    assert command in (REPO / ".ci" / "run").read_text().splitlines(), ".ci/run no longer runs the README's test command"


def first_screen(text: str) -> str:
    """Everything before the second section: the title, what the project is, the quick start."""
    heads = [m.start() for m in re.finditer(r"^## ", text, flags=re.M)]
    return text[: heads[1]] if len(heads) > 1 else text


@pytest.mark.parametrize("pattern, what", [
    (r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b", "a commit id"),
    (r"\b\d+ ?m \d+ ?s\b|\b\d+(?:\.\d+)? ?(?:s|min|minutes|seconds)\b", "a measured time"),
    (r"\bFID\b[^.\n]{0,20}\b\d+\.\d+", "an FID value"),
], ids=["commit", "time", "fid"])
def test_the_first_screen_has_no_number_that_goes_stale(pattern, what):
    screen = first_screen(README.read_text())
    found = re.findall(pattern, screen)
    assert not found, (f"README.md's first screen holds {what} ({found}): it goes stale with the next run; "
                       "link reports/report.md (generated) or docs/findings.md (dated) instead")
    assert "reports/report.md" in screen, "the first screen no longer says where the numbers are"


def test_readme_and_docs_link_only_inside_the_repository():
    for page in [README, *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#")[0]
            if not path or re.match(r"[a-z]+://", path):
                continue
            resolved = (page.parent / path).resolve()
            assert resolved.is_relative_to(REPO) and resolved.exists(), f"{page.name} links to {target}"
