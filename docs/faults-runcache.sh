#!/bin/bash
# typo -> dvc repro (fails) -> fix -> dvc repro : how many training stages run again?
set -u
SRC=${SRC:-$PWD}
W=$(mktemp -d)
cd $SRC && git ls-files -co --exclude-standard | while read f; do [ -f "$f" ] && mkdir -p "$W/$(dirname $f)" && cp "$f" "$W/$f"; done
cd $W
export PYTHONPATH=$W DVC_NO_ANALYTICS=1 MASKGIT_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MASKGIT_CACHE=$W/.mcache
python -m maskgit.preset tiny >/dev/null
rm -f metrics/*.json
git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm tiny
dvc repro train_transformer > log1 2>&1; echo "first repro rc=$?"
git add -A >/dev/null 2>&1; git -c user.name=t -c user.email=t@t commit -qm run1 >/dev/null
cp params.yaml params.good
python - <<'PY'
import re
t = open("params.yaml").read()
i = t.index("train_transformer:")
j = t.index("  steps:", i)
k = t.index("\n", j)
open("params.yaml", "w").write(t[:j] + "  steps: -40" + t[k:])
PY
grep -n "steps: -40" params.yaml
dvc repro train_transformer > log2 2>&1; echo "typo repro rc=$?"; grep -E "Running stage|error" log2
cp params.good params.yaml
dvc repro train_transformer > log3 2>&1; echo "fixed repro rc=$?"
echo "stages run after the fix:"; grep -E "Running stage|cached - skipping" log3
echo "dir: $W"
