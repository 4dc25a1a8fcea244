"""Finished DVC experiments -> reports/experiments.md, the ablation tables of the lab
reports: FID per schedule for every experiment, and for every swept param a table
and a plot of FID against it, best row marked (maskgit/pages/experiments.py).

    dvc exp run --queue -S 'inpaint.total_iter=5,8,10' && dvc queue start
    python -m maskgit.experiments          # reads `dvc exp show --json`: HEAD and its experiments
    python -m maskgit.experiments --all-commits   # every commit's too (this project's history included)
    python -m maskgit.experiments --pull   # first pull every experiment of HEAD from the git remote
                                           # (a sweep's, run on other machines: maskgit.sweep)

The Optuna study of maskgit.tune adds its trial table to the same page.
"""

from __future__ import annotations

import argparse

from maskgit.pages.experiments import add_page_args, build_page
from maskgit.project.tool import run_tool


def main(argv=None):
    run_tool(lambda: cli(argv), "experiments")


def cli(argv=None):
    parser = argparse.ArgumentParser(description="Build reports/experiments.md from the finished DVC experiments.")
    add_page_args(parser)
    args = parser.parse_args(argv)
    build_page(args.out, args.all_commits, args.pull, args.git_remote)


if __name__ == "__main__":
    main()
