"""The measurement of docs/scale.md section 5: a 6-point sweep, local executor, at
--jobs 1 and --jobs 2, each from a fresh bare Git remote and DVC remote (the setup of
tests/test_sweep.py: tiny preset, one schedule, 8 test images). Prints wall time and
the number of stage and training runs counted in the job logs.

    PYTHONPATH=$PWD python docs/measure_sweep.py /tmp/measure
"""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_sweep import make_world  # noqa: E402

GRID = ["-S", "inpaint.sweet_spot=1,2,3", "-S", "inpaint.choice_temperature=2.0,4.5"]


def main(base: Path) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    print(f"commit {commit}; grid {' '.join(GRID)}")
    for jobs in (1, 2):
        tmp = base / f"jobs{jobs}"
        tmp.mkdir(parents=True)
        project, _, _, _, env = make_world(tmp)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "maskgit.sweep", *GRID, "--jobs", str(jobs),
                              "--scratch", str(tmp / "scratch")], cwd=project, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        assert out.returncode == 0, out.stderr
        logs = "\n".join(p.read_text() for p in (project / ".sweep").rglob("logs/*.log"))
        trained = logs.count("Running stage 'train_transformer'")
        print(f"--jobs {jobs}: {seconds:.0f} s wall; {logs.count('Running stage ')} stage runs, "
              f"train_transformer trained {trained}x; {out.stdout.strip().splitlines()[-1]}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
