"""What MKL's cross-vendor branch costs: the default run under two `MKL_CBWR` values.

    python tools/cbwr_cost.py [--rev HEAD] [--rounds 2] [--out /tmp/cbwr] [--preset tiny]

Clones the revision twice into --out; in one clone portable mode's `MKL_CBWR` is the
revision's own value, in the other the alternative (COMPATIBLE when the revision
uses AVX2,STRICT, and the other way round). Then runs `dvc repro -f` in each, one
after the other, --rounds times (A B A B ...), so that both see the same machine
state, and prints:

- every stage's wall time (timings/<stage>.json) per run, and the ratio of the
  medians;
- which outputs' hashes differ between the two settings (dvc.lock), and whether each
  setting repeated its own bytes from round to round.

Needs a quiet machine: two busy threads per core make every number meaningless.
For maintainers; not in the pipeline, not in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NUMERICS = "maskgit/pipeline/numerics.py"
SETTING = re.compile(r'"MKL_CBWR": "([^"]+)"')
ALTERNATIVE = {"AVX2,STRICT": "COMPATIBLE", "COMPATIBLE": "AVX2,STRICT"}


def sh(cmd, cwd, env=None):
    subprocess.run(cmd, cwd=cwd, env=env, check=True)


def clone(rev: str, dest: Path, cbwr: str | None) -> str:
    sh(["git", "clone", "-q", str(ROOT), str(dest)], cwd=ROOT)
    sh(["git", "checkout", "-q", rev], cwd=dest)
    path = dest / NUMERICS
    text = path.read_text()
    own = SETTING.search(text).group(1)
    if cbwr is not None:
        path.write_text(SETTING.sub(f'"MKL_CBWR": "{cbwr}"', text))
    return cbwr or own


def outputs(lock: dict) -> dict[str, str]:
    return {o["path"]: o.get("md5") for s in lock["stages"].values() for o in s.get("outs", [])
            if not o["path"].startswith(("timings/", "reports/report.md", "reports/provenance.json"))}


def run(dest: Path, env: dict, preset: str | None) -> dict:
    if preset:
        sh([sys.executable, "-m", "maskgit.preset", preset], cwd=dest, env=env)
    start = time.perf_counter()
    sh(["dvc", "repro", "-f", "-q"], cwd=dest, env=env)
    wall = time.perf_counter() - start
    stages = {p.stem: json.loads(p.read_text())["seconds"] for p in sorted((dest / "timings").glob("*.json"))}
    return {"wall": wall, "stages": stages, "outs": outputs(yaml.safe_load((dest / "dvc.lock").read_text()))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cbwr"))
    parser.add_argument("--preset", default=None, help="a preset to apply first (tiny: a quick dry run)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=False)
    rev = subprocess.run(["git", "rev-parse", args.rev], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    a = clone(rev, args.out / "a", None)
    clone(rev, args.out / "b", ALTERNATIVE[a])
    settings = {a: args.out / "a", ALTERNATIVE[a]: args.out / "b"}
    results = {name: [] for name in settings}
    for round_ in range(args.rounds):
        for name, dest in settings.items():
            # the clone's own package, not the checkout this interpreter installed
            env = {**os.environ, "PYTHONPATH": str(dest), "DVC_NO_ANALYTICS": "1",
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
            print(f"round {round_ + 1}: MKL_CBWR={name} ...", file=sys.stderr, flush=True)
            results[name].append(run(dest, env, args.preset if round_ == 0 else None))
            print(f"  {results[name][-1]['wall']:.1f} s", file=sys.stderr, flush=True)
    (args.out / "results.json").write_text(json.dumps({"rev": rev, "results": results}, indent=1))
    report(rev, results)


def report(rev: str, results: dict) -> None:
    (a, ra), (b, rb) = results.items()
    print(f"revision {rev[:7]}; {len(ra)} rounds; wall seconds per run, median ratio {b} / {a}\n")
    stages = sorted(set(ra[0]["stages"]) | set(rb[0]["stages"]))
    print(f"| stage | {a} | {b} | ratio |\n| --- | ---: | ---: | ---: |")
    for stage in stages + ["(dvc repro wall)"]:
        get = (lambda r: r["wall"]) if stage.startswith("(") else (lambda r: r["stages"].get(stage, float("nan")))
        xa, xb = [get(r) for r in ra], [get(r) for r in rb]
        print(f"| {stage} | {' / '.join(f'{x:.1f}' for x in xa)} | {' / '.join(f'{x:.1f}' for x in xb)} | "
              f"{statistics.median(xb) / statistics.median(xa):.2f} |")
    for name, runs in results.items():
        repeats = all(r["outs"] == runs[0]["outs"] for r in runs)
        print(f"\n{name}: every round the same output hashes: {repeats}")
    differ = sorted(p for p in ra[0]["outs"] if ra[0]["outs"][p] != rb[0]["outs"].get(p))
    print(f"outputs whose bytes differ between the settings ({len(differ)} of {len(ra[0]['outs'])}):")
    for p in differ:
        print(f"  {p}")


if __name__ == "__main__":
    main()
