"""What both training stages share around their loops: the run's fingerprint, resuming
from the last checkpoint, and the dvclive log with the history of a resumed run
replayed into it, so a resumed run's curves read as if it had never stopped."""

from __future__ import annotations

import atexit
import shutil
from pathlib import Path

import torch
from dvclive import Live

from maskgit.project.files import replace_dir
from maskgit.pipeline.resume import Resumable, fingerprint


def partial_dir(live_dir: str | Path) -> Path:
    """dvclive/.<name>.partial: one fixed name, so that the next run clears what a
    killed one (SIGKILL: no clean-up runs) left."""
    live_dir = Path(live_dir)
    partial = live_dir.parent / f".{live_dir.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    return partial


def run_fingerprint(params: dict, device: torch.device, *files: str | Path) -> str:
    """The fingerprint of a training run: its params, the device *type* and its input
    files. The type and not the index: `device: auto` picks the freest GPU, and a
    restarted run on cuda:1 must continue the run it began on cuda:0."""
    return fingerprint({**params, "device": torch.device(device).type}, *files)


class TrainingRun:
    """One training stage's resumable state and its dvclive log.

        run = TrainingRun("train_vqgan", key, every, paths.LIVE_VQGAN, params_to_log)
        start, extra = run.resume(model, opt, sched, generator)   # 0, {} on a fresh run
        run.open_live()                     # the log, with a resumed run's history replayed
        for step in range(start, steps):
            ...; run.check_finite(loss, step); run.log(row)
            run.save(step + 1, model, opt, sched, generator)      # a checkpoint when one is due
        run.finish(summary)                 # the summary, the log in place, the checkpoint gone
    """

    def __init__(self, stage: str, key: str, checkpoint_every: int, live_dir: str | Path, logged_params: dict,
                 is_main: bool = True):
        self.checkpoint = Resumable(stage, key, checkpoint_every)
        self.live_dir, self.logged_params, self.is_main = live_dir, logged_params, is_main
        self.history: list[dict] = []  # the logged rows, saved with each checkpoint
        self._live: Live | None = None

    def resume(self, model, optimizer, scheduler, generator: torch.Generator) -> tuple[int, dict]:
        """(step to start from, the loop's own saved state): (0, {}) when there is no
        checkpoint of this run."""
        saved = self.checkpoint.load(verbose=self.is_main)
        if saved is None:
            return 0, {}
        self.checkpoint.restore(saved, model, optimizer, scheduler, generator)
        self.history = saved.pop("history", [])
        return saved["step"], saved

    def open_live(self) -> Live | None:
        """The dvclive log (rank 0 only), with the resumed history replayed. It is built
        in a partial folder beside live_dir and takes its place only in finish(): a
        run that is killed or fails never leaves curves that look like a finished run's
        (the last good run's stay in DVC's cache: `dvc checkout` brings them back)."""
        if not self.is_main:
            return None
        self._partial = partial_dir(self.live_dir)
        atexit.register(shutil.rmtree, self._partial, ignore_errors=True)
        self._live = Live(self._partial, dvcyaml=False, save_dvc_exp=False, report=None)
        self._live.log_params(self.logged_params)
        for row in self.history:
            _log_row(self._live, row)
        return self._live

    def log(self, row: dict) -> None:
        self.history.append(row)
        if self._live is not None:
            _log_row(self._live, row)

    def save(self, step: int, model, optimizer, scheduler, generator: torch.Generator, **extra) -> None:
        if self.is_main and self.checkpoint.due(step):
            self.checkpoint.save_training(step, model, optimizer, scheduler, generator, history=self.history, **extra)

    def check_finite(self, loss: torch.Tensor, step: int) -> None:
        self.checkpoint.check_finite(loss, step)

    def finish(self, summary: dict) -> None:
        """Final metrics into the log, close it, and drop the checkpoint."""
        if self._live is not None:
            self._live.summary.update(summary)
            self._live.end()
            replace_dir(self._partial, Path(self.live_dir))
        if self.is_main:
            self.checkpoint.clear()


def _log_row(live: Live, row: dict) -> None:
    for name, value in row.items():
        live.log_metric(name, value)
    live.next_step()
