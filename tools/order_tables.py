"""The decoding-order tables of docs/findings.md from a run's metrics/evaluation.json:
each order against the first one (confidence) on every schedule, for FID, KID, hole
PSNR and hole SSIM, with the run's corrected verdicts; then every metric by mask area.

    python tools/order_tables.py metrics/evaluation.json
    git show <experiment ref>:metrics/evaluation.json > ev.json && python tools/order_tables.py ev.json --params params.yaml

The schedules and orders come from the params file of the same run (default: params.yaml).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from maskgit.pages.markdown import buckets_table, correction_line, order_table
from maskgit.project.yamlio import parse_yaml


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evaluation", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    ev = json.loads(args.evaluation.read_text())
    ip = parse_yaml(args.params.read_text())["inpaint"]
    print("\n".join(order_table(ev, ip["schedules"], ip["orders"], metrics=("fid", "kid", "hole_psnr", "hole_ssim"))))
    print(correction_line(ev["correction"], "every verdict of the run's report") + "\n")
    print("\n".join(buckets_table(ev)))


if __name__ == "__main__":
    main()
