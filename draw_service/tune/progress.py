"""A search's own progress on the driver: one line when a trial starts, one per report, one when it ends.

Ray Tune's status tables and every worker's log lines are what `--verbose` brings back; by default the
search prints these lines instead (to stderr, like every command's progress)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback

from .results import HYPERPARAMETERS, cause


def _params(config: dict[str, Any]) -> str:
    return " ".join(f"{k} {config[k]:.3g}" if k == "lr" else f"{k} {config[k]}" for k in HYPERPARAMETERS
                    if k in config)


class TrialLines(Callback):
    def __init__(self, total: int, reports_per_trial: int, reports_at: Callable[[int], int]):
        self.total, self.reports, self.reports_at = total, reports_per_trial, reports_at
        self.started = time.monotonic()
        self.ended = 0

    def say(self, trial, text: str) -> None:
        s = int(time.monotonic() - self.started)
        print(f"[{s // 60}:{s % 60:02d}] trial {trial.trial_id}: {text}", file=sys.stderr, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.say(trial, f"started ({_params(trial.config)})")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        bound, bpd = result.get("nll_bound"), result.get("bits_per_dim")
        if bound is None:
            return
        self.say(trial, f"report {self.reports_at(result.get('step', 0))}/{self.reports}, step {result.get('step')}: "
                        f"{result.get('eval_split', 'validation')} bound {bound:.2f} nats ({bpd:.4f} bits/dim), "
                        f"{result.get('images_per_s', 0):.0f} images/s")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended += 1
        done = self.reports_at((trial.last_result or {}).get("step", 0))
        how = "finished" if done >= self.reports else \
            f"stopped early by ASHA after {done} report{'s' if done != 1 else ''}"
        self.say(trial, f"{how} ({self.ended}/{self.total} trials done)")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended += 1
        error = _error_text(trial)
        self.say(trial, f"failed: {cause(error) if error else 'see its error file'} "
                        f"({self.ended}/{self.total} trials done)")


def _error_text(trial) -> str | None:
    """The trial's error as Tune wrote it: in the driver's own copy first (storage gets it later)."""
    local = getattr(trial, "error_file", None)
    if local and os.path.exists(local):
        with open(local) as f:
            return f.read()
    error = trial.get_error()
    return str(error) if error else None
