#!/usr/bin/env bash
# The pull-request review (docs/review.md): the runs of two revisions, maskgit.compare's
# page of one against the other, posted on the pull request with CML.
#
#   tools/review.sh [--dry-run] [--out DIR] BASE [HEAD]
#   tools/review.sh --cml-version          # the CML release the CI templates install
#
# BASE is the branch the pull request goes into (a name or a commit); the page compares
# HEAD (default: HEAD) with its merge base with BASE, as a pull request's diff does, so
# that commits made on BASE since the branch point are not read as the change's doing.
#
# Each revision is checked out in a git worktree of its own that shares this clone's DVC
# cache, and `dvc checkout` then `dvc repro` run there (with --pull when a default DVC
# remote is set): outputs in the cache or on the remote come back, stages whose inputs a
# run already saw come back from DVC's run cache, the rest run. The checkout the script
# is started from is not touched, apart from the page it writes (--out, default
# reports/compare) and the logs beside it.
#
# --dry-run writes the comment's body and prints its path instead of posting it (no forge
# is needed: tests/test_review_flow.py runs exactly this). Otherwise the body goes to the
# pull request with `cml comment update`, which edits the comment an earlier push made.
#
# Exit status: 0 done; 2 a revision, a tool or a run's evidence is missing, or a step
# failed, said in the last line, which starts with "review:".
set -euo pipefail

# One place for the pinned CML release: both CI templates install what this prints.
CML_VERSION=0.20.6
# The hidden marker CML puts in its comment, so that the next push edits that comment.
WATERMARK="maskgit review"
USAGE="usage: tools/review.sh [--dry-run] [--out DIR] BASE [HEAD]"

die() {
  echo "review: $*" >&2
  exit 2
}

dry_run=0
out=""
revs=()
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --out) (($# >= 2)) || die "--out needs a folder ($USAGE)"; out=$2; shift ;;
    --out=*) out=${1#--out=} ;;
    --cml-version) echo "$CML_VERSION"; exit 0 ;;
    -h | --help) echo "$USAGE"; exit 0 ;;
    -*) die "unknown option $1 ($USAGE)" ;;
    *) revs+=("$1") ;;
  esac
  shift
done
((${#revs[@]} == 1 || ${#revs[@]} == 2)) || die "$USAGE"
base_arg=${revs[0]}
head_arg=${revs[1]:-HEAD}

# --out is relative to where the script was started, the rest to the repository root
if [[ -n $out && $out != /* ]]; then out=$PWD/$out; fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
for tool in git dvc python; do
  command -v "$tool" >/dev/null || die "$tool not found on PATH (pip install -e . installs dvc)"
done
git rev-parse --git-dir >/dev/null 2>&1 || die "$root is not in a git repository"
if ((!dry_run)); then
  command -v cml >/dev/null ||
    die "cml not found on PATH: npm install -g @dvcorg/cml@$CML_VERSION (or --dry-run to write the comment without posting it)"
fi

# A shallow clone lacks the base: the CI templates fetch the whole history for it.
base_sha=$(git rev-parse --verify --quiet "$base_arg^{commit}") ||
  die "base revision '$base_arg' is not in this clone (fetch the whole history: fetch-depth: 0 on GitHub, GIT_DEPTH: 0 on GitLab)"
head_sha=$(git rev-parse --verify --quiet "$head_arg^{commit}") || die "head revision '$head_arg' is not in this clone"
merge_base=$(git merge-base "$base_sha" "$head_sha") || die "'$base_arg' and '$head_arg' have no commit in common"
[[ $merge_base != "$head_sha" ]] || die "'$head_arg' is already in '$base_arg': nothing to review"
a=$(git rev-parse --short=7 "$merge_base")
b=$(git rev-parse --short=7 "$head_sha")
# compare reads the base's run where its dvc.lock says it is; without one there is no run
git cat-file -e "$merge_base:dvc.lock" 2>/dev/null ||
  die "base $a (the merge base of '$base_arg' and '$head_arg') has no dvc.lock: no run was committed there to review against"

[[ -d .dvc ]] || die "$root is not a DVC project (no .dvc folder)"

out=${out:-$root/reports/compare}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# `dvc remote default` exits 1 when none is set
if remote=$(dvc remote default 2>/dev/null) && [[ -n $remote ]]; then
  pull=(--pull)
  how="pulled from the DVC remote \`$remote\` where pushed, else made by \`dvc repro\`"
else
  pull=()
  how="made by \`dvc repro\` (no DVC remote is set; what DVC's cache already held came back from it)"
fi
cache=$(dvc cache dir)
mkdir -p "$cache"

work=$(mktemp -d "${TMPDIR:-/tmp}/review.XXXXXX")
cleanup() {
  git -C "$root" worktree remove --force "$work/base" >/dev/null 2>&1 || true
  git -C "$root" worktree remove --force "$work/head" >/dev/null 2>&1 || true
  rm -rf "$work"
  git -C "$root" worktree prune || true
}
trap cleanup EXIT

# reproduce NAME COMMIT: that commit's run in $work/NAME, its outputs in the shared cache
reproduce() {
  local name=$1 sha=$2 tree=$work/$1 log=$out/review-$1.log
  git worktree add --quiet --detach "$tree" "$sha"
  # remote credentials kept out of git (dvc remote modify --local) hold for the worktree too
  if [[ -f .dvc/config.local ]]; then cp .dvc/config.local "$tree/.dvc/config.local"; fi
  (cd "$tree" && dvc cache dir --local "$cache")
  echo "review: $name ${sha:0:7}: dvc checkout, dvc repro ${pull[*]} (log: $log)" >&2
  # checkout first: outputs already in the cache come back as they are, and a stage whose
  # outputs are all there is not run, not even one DVC's run cache cannot restore (those
  # with outputs git keeps: evaluate, plots, report). What is not in the cache it names in
  # the log, and the repro makes it.
  echo "review: dvc checkout (outputs the cache lacks are named as failures; dvc repro makes them below)" >"$log"
  (cd "$tree" && dvc checkout >>"$log" 2>&1) || true
  echo "review: dvc repro ${pull[*]}" >>"$log"
  # The stage scripts import maskgit: the worktree's own, not the one pip installed from
  # this checkout, or a base run would be made with the head's code.
  if ! (cd "$tree" && PYTHONPATH="$tree${PYTHONPATH:+:$PYTHONPATH}" dvc repro "${pull[@]}" >>"$log" 2>&1); then
    tail -n 20 "$log" >&2
    die "dvc repro of $name ${sha:0:7} failed: the lines above, all of it in $log"
  fi
}

reproduce base "$merge_base"
reproduce head "$head_sha"

# The base is read at its commit: its committed dvc.lock names the evidence, which the
# repro above put in the cache. The head likewise when its dvc.lock is its run; when the
# change was committed without a re-run (a params edit, say), the repro just made the
# head's run and it is read from the worktree's files.
if git -C "$work/head" diff --quiet HEAD -- dvc.lock; then
  b_run=$b
  head_note="B is the run the head's commit records."
else
  b_run=workspace
  head_note="B is read from the files this job's \`dvc repro\` wrote: the head's committed dvc.lock does not"
  head_note+=" name them (committed without a re-run, or stages re-run here for outputs that were not to be had)."
fi
# compare's notes pass through; when it fails, its one-line reason becomes the script's
notes=$work/compare.stderr
if ! page=$(cd "$work/head" && PYTHONPATH="$work/head${PYTHONPATH:+:$PYTHONPATH}" \
  python -m maskgit.compare "$a" "$b_run" --out "$out" 2>"$notes"); then
  if (($(wc -l <"$notes") > 1)); then cat "$notes" >&2; fi  # a traceback: a bug, shown whole
  die "python -m maskgit.compare $a $b_run made no page: $(tail -n 1 "$notes")"
fi
cat "$notes" >&2
page=$(printf '%s\n' "$page" | tail -n 1)
[[ -f $page ]] || die "python -m maskgit.compare printed '$page', which is not a file"

# The body: one line on which commits are A and B, the page, and at its foot how the runs
# were had (the page's first screen is for the answer). It sits beside the page so that
# the figures the page links resolve from it too.
body=$out/review-$a-$b.md
if [[ $merge_base == "$base_sha" ]]; then
  base_note=""  # the base itself: the head branched from its tip
else
  base_note=", its merge base with \`$base_arg\`"
fi
{
  # shellcheck disable=SC2016  # the backticks are markdown's
  printf '**Review** of `%s` (B) against `%s` (A)%s.\n\n' "$b" "$a" "$base_note"
  cat "$page"
  printf '\n---\n\nHow these runs were had: %s. %s\n' "$how" "$head_note"
} >"$body"
echo "$body"
if ((dry_run)); then exit 0; fi

# --publish uploads the figures the body links (GitHub: CML's asset server; GitLab: the
# project's own uploads, --publish-native). update: edits this pull request's earlier
# review comment, found by the watermark, instead of adding one per push.
publish=(--publish)
if [[ -n ${GITLAB_CI:-} ]]; then publish+=(--publish-native); fi
cml comment update --target=pr --watermark-title="$WATERMARK" "${publish[@]}" "$body"
