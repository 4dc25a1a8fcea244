"""The pull-request review (docs/review.md) as CI runs it: the CI templates call
tools/review.sh, and here the same script runs on two commits of a tiny scratch project
(the base's run made by the test, the head's, a params edit committed without a re-run,
left to the script), then from a fresh clone whose runs come from a DVC remote. No forge
is reachable here, so the script's --dry-run stops before `cml comment update` and
prints the comment's body instead; CML itself is checked where it is installed."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, copy_project, stage_env

REVIEW = ROOT / "tools" / "review.sh"
GITHUB = ROOT / ".github" / "workflows" / "review.yml"
GITLAB = ROOT / ".gitlab-ci.yml"
NEEDS_CML = ("needs CML on PATH (npm install -g @dvcorg/cml@<the version tools/review.sh --cml-version prints>): "
             "CI installs it in the review job, not in the test suite")
# The tiny preset cut to one decoder, half the test images and the smallest bootstrap:
# this file checks the flow, not the numbers, and Inception features of every scored set
# are most of its time.
SMALLER = """\
prepare:
  n_test: 12
inpaint:
  schedules: [cosine]
  orders: [confidence]
evaluate:
  replicates: 100
"""


def run(cmd, cwd, env, timeout=900):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    command = " ".join(map(str, cmd))
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def review(cwd, env, *args):
    """tools/review.sh of the project at cwd, as CI calls it but with --dry-run."""
    return subprocess.run(["bash", "tools/review.sh", "--dry-run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def git_commit(cwd, env, message):
    run(["git", "add", "-A"], cwd, env)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", message], cwd, env)
    return run(["git", "rev-parse", "HEAD"], cwd, env).strip()


def cml_version() -> str:
    return subprocess.run(["bash", str(REVIEW), "--cml-version"], capture_output=True, text=True,
                          check=True).stdout.strip()


# --- the CI templates ------------------------------------------------------------------


def test_both_ci_templates_run_the_review_script_with_the_pinned_cml():
    assert re.fullmatch(r"\d+\.\d+\.\d+", cml_version()), "tools/review.sh pins no exact CML release"
    install = 'npm install -g "@dvcorg/cml@$(bash tools/review.sh --cml-version)"'

    workflow = yaml.safe_load(GITHUB.read_text())
    assert list(workflow[True]) == ["pull_request"]  # YAML 1.1 reads the key `on` as true
    assert workflow["permissions"]["pull-requests"] == "write"
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0  # the base must be in the clone
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11"
    commands = [s["run"] for s in steps if "run" in s]
    assert any("pip install -e ." in c and install in c for c in commands)
    (step,) = [s for s in steps if "tools/review.sh" in s.get("run", "") and "--cml-version" not in s["run"]]
    assert step["run"].startswith("bash tools/review.sh ") and "--dry-run" not in step["run"]
    assert step["env"]["REPO_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"  # what CML reads

    (gitlab,) = yaml.safe_load(GITLAB.read_text()).values()
    assert gitlab["variables"]["GIT_DEPTH"] == "0"
    assert gitlab["image"].startswith("python:3.11")
    assert "pip install -e ." in gitlab["script"] and install in gitlab["script"]
    assert gitlab["script"][-1].startswith("bash tools/review.sh ")


def posting_flags() -> set[str]:
    """The flags tools/review.sh gives `cml comment update`, from its one cml line and the
    publish flags it adds (the GitLab one only there)."""
    script = REVIEW.read_text()
    (line,) = [x.strip() for x in script.splitlines() if x.strip().startswith("cml ")]
    assert line.startswith("cml comment update "), line
    flags = set(re.findall(r"(--[a-z-]+)", line))
    return flags | set(re.findall(r"publish\+?=\((--[a-z-]+)\)", script))


def test_the_script_posts_one_comment_that_later_pushes_edit():
    # update finds the earlier comment by its watermark (cml.dev/doc/ref/comment); --publish
    # uploads the figures the page links
    assert posting_flags() == {"--target", "--watermark-title", "--publish", "--publish-native"}


@pytest.mark.skipif(shutil.which("cml") is None, reason=NEEDS_CML)
def test_cml_knows_those_flags_and_without_a_forge_says_so(tmp_path):
    help_text = subprocess.run(["cml", "comment", "update", "--help"], capture_output=True, text=True,
                               timeout=120).stdout
    for flag in posting_flags():
        assert flag in help_text, f"cml comment update has no {flag}"
    # no forge, no token: CML stops with a message instead of posting somewhere
    run(["git", "init", "-q"], tmp_path, None)
    (tmp_path / "body.md").write_text("# a body\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "GITLAB_", "CI_", "REPO_TOKEN", "BITBUCKET_"))}
    result = subprocess.run(["cml", "comment", "update", "--target=pr", "--watermark-title=maskgit review",
                             "--publish", "body.md"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0 and (result.stdout + result.stderr).strip()


# --- what the script refuses, before any run ----------------------------------------------


@pytest.fixture
def bare_repo(tmp_path):
    """A git repository holding only the script: enough for every check made before a run."""
    (tmp_path / "tools").mkdir()
    shutil.copy(REVIEW, tmp_path / "tools" / "review.sh")
    env = stage_env(tmp_path)
    run(["git", "init", "-q"], tmp_path, env)
    return tmp_path, env


def one_line_refusal(result, *words):
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("review: "), result.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert not result.stdout


def test_what_is_missing_is_one_line_before_anything_runs(bare_repo):
    repo, env = bare_repo
    first = git_commit(repo, env, "no run yet")
    (repo / "README").write_text("a change\n")
    git_commit(repo, env, "head")
    one_line_refusal(review(repo, env, "no-such-branch", "HEAD"), "'no-such-branch'", "fetch-depth: 0")
    one_line_refusal(review(repo, env, "HEAD", "no-such-head"), "'no-such-head'")
    one_line_refusal(review(repo, env, first, "HEAD"), "has no dvc.lock", first[:7])
    one_line_refusal(review(repo, env, "HEAD", "HEAD"), "nothing to review")
    one_line_refusal(review(repo, env), "usage:")
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    with_lock = git_commit(repo, env, "a lock, but no DVC project")
    (repo / "README").write_text("another change\n")
    git_commit(repo, env, "head")
    one_line_refusal(review(repo, env, with_lock, "HEAD"), "not a DVC project")
    if shutil.which("cml") is None:  # CI's review job has it; without it, posting is refused up front
        posting = subprocess.run(["bash", "tools/review.sh", "HEAD~1"], cwd=repo, env=env, capture_output=True,
                                 text=True, timeout=60)
        one_line_refusal(posting, "cml not found", f"@dvcorg/cml@{cml_version()}", "--dry-run")


# --- the review of two runs --------------------------------------------------------------


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory, fid_weights):
    """A tiny project with the base's run committed, a head commit that changes one param
    without a re-run, and the script's review of the head against the base."""
    tmp = tmp_path_factory.mktemp("review")
    project = copy_project(tmp / "project")
    env = stage_env(tmp)
    (project / "configs/test-fid.yaml").write_text(f"fid:\n  inception_weights: {fid_weights}\n")
    (project / "configs/test-smaller.yaml").write_text(SMALLER)
    run(["python", "-m", "maskgit.preset", "tiny", "test-fid", "test-smaller"], project, env)
    # the checkout's default-run metrics and lock: not this run's
    for old in [*(project / "metrics").glob("*.json"), project / "dvc.lock"]:
        old.unlink()
    run(["git", "init", "-q"], project, env)
    git_commit(project, env, "tiny")
    run(["dvc", "repro"], project, env)
    base = git_commit(project, env, "the tiny run")
    params = project / "params.yaml"
    text, edits = re.subn(r"^(  sweet_spot: )4\b", r"\g<1>2", params.read_text(), count=1, flags=re.M)
    assert edits == 1, "the tiny preset's inpaint.sweet_spot is no longer 4"
    params.write_text(text)
    head = git_commit(project, env, "sweet spot 2, not re-run")  # as a params-only pull request
    return project, env, base, head, review(project, env, base, "HEAD")


def linked_files(page: Path) -> list[str]:
    text = page.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text) + re.findall(r"<img [^>]*src=\"([^\"]+)\"", text)
    return [link for link in links if not re.match(r"[a-z]+://", link)]


@pytest.mark.pipeline
def test_the_review_is_the_page_of_the_base_against_the_head_it_reproduced(reviewed):
    project, env, base, head, result = reviewed
    assert result.returncode == 0, result.stderr[-3000:]
    body = Path(result.stdout.strip().splitlines()[-1])
    assert body.is_file() and body.parent == project / "reports" / "compare"
    text = body.read_text()
    a, b = base[:7], head[:7]
    assert f"`{b}` (B) against `{a}` (A)" in text
    assert "B is read from the files this job's `dvc repro` wrote" in text and "no DVC remote is set" in text
    # the page under it is maskgit.compare's, A the base and B the head: the changed param
    assert "`inpaint.sweet_spot` | 4 | 2 |" in re.sub(r" +", " ", text)
    assert "Per decoder (FID): cosine: B " in text
    figures = linked_files(body)
    assert figures and all((body.parent / f).is_file() for f in figures), figures
    # one tiny run served both revisions: the base came back whole from DVC's cache, and
    # the head re-ran only what its sweet spot reaches
    logs = project / "reports" / "compare"
    assert "Running stage" not in (logs / "review-base.log").read_text()
    head_ran = set(re.findall(r"Running stage '([^']+)'", (logs / "review-head.log").read_text()))
    assert "inpaint@cosine-confidence" in head_ran and not head_ran & {"prepare", "train_vqgan", "train_transformer"}
    # the checkout itself is as it was: no worktree left, no tracked file changed
    assert len(run(["git", "worktree", "list"], project, env).splitlines()) == 1
    assert run(["git", "status", "--porcelain", "--untracked-files=no"], project, env) == ""


@pytest.mark.pipeline
def test_from_a_clone_with_only_a_dvc_remote_both_runs_come_down_and_nothing_runs(reviewed, tmp_path):
    # CI's case with a remote: a fresh clone, an empty cache, the base's run pushed, and a
    # change that leaves the pipeline alone (a README edit): the head's committed run is
    # the base's, read at its commit, and no stage runs anywhere
    project, env, base, _, _ = reviewed
    store = tmp_path / "store"
    run(["dvc", "remote", "add", "--local", "-d", "store", str(store)], project, env)
    run(["dvc", "push"], project, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path, env)
    run(["dvc", "remote", "add", "--local", "-d", "store", str(store)], clone, env)
    run(["git", "switch", "-q", "-c", "docs", base], clone, env)
    (clone / "README.md").write_text((clone / "README.md").read_text() + "\nA line that changes no run.\n")
    head = git_commit(clone, env, "docs only")
    result = review(clone, env, base, "HEAD")
    assert result.returncode == 0, result.stderr[-3000:]
    body = Path(result.stdout.strip().splitlines()[-1])
    text = body.read_text()
    assert f"`{head[:7]}` (B) against `{base[:7]}` (A)" in text
    assert "pulled from the DVC remote `store`" in text and "B is the run the head's commit records" in text
    assert all((body.parent / f).is_file() for f in linked_files(body))
    for log in ("review-base.log", "review-head.log"):
        assert "Running stage" not in (body.parent / log).read_text(), log
