"""What a search is: the base training run each trial changes, the space, and how many trials run how."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.config import DataConfig
from ..settings import Settings, option, section
from ..train.config import RayConfig, TrainConfig


def _base() -> TrainConfig:
    # A search scores trials on a validation split held out of the training images, never on the test
    # split; every trial is a Ray Train run of at least one worker.
    return TrainConfig(data=DataConfig(validation_stride=10), ray=RayConfig(num_workers=1, max_failures=1),
                       out="runs/search")  # not a training run's runs/draw: a search is a folder of its own


@dataclass(frozen=True)
class PrepareFirst(Settings):
    """What a search prepares into its --dataset when nothing is there yet (flags --prepare-...)."""

    component = "prepare"

    source: str | None = option(None, flag="--prepare-from", help="if --dataset holds no prepared dataset, prepare "
                                                                   "this source (e.g. svhn) into it first")
    train_limit: int | None = option(None, min=1, help="with --prepare-from: the first N training images")
    test_limit: int | None = option(None, min=1, help="with --prepare-from: the first N test images")


@dataclass(frozen=True)
class SearchConfig(Settings):
    component = "search"

    base: TrainConfig = section(_base, title="each trial's training run", retold={
        "out": "the search's folder, local or s3://...: its trials, its state and best.json; submitting the same "
               "--out again resumes the search (a finished one says so and trains nothing)",
        "resume": None,  # a search resumes by its --out alone
    })
    space: str = option("svhn", choices=("svhn", "mnist-demo", "colour-cpu", "smoke"),
                        help="svhn: centred on the paper's SVHN model; mnist-demo: small models for a CPU; "
                             "colour-cpu: 32x32 colour models a CPU searches in an hour; smoke: tiny, for a check")
    trials: int = option(16, min=1, help="trials in all")
    max_concurrent: int | None = option(None, min=1, help="trials at once (default: what the cluster holds)")
    time_budget: float | None = option(None, above=0, metavar="SECONDS", help="seconds for the whole search")
    algorithm: str = option("optuna", choices=("optuna", "random"), help="how new trials are proposed")
    grace_reports: int = option(1, min=1, help="ASHA: evaluations every trial gets before it may be stopped")
    reduction_factor: int = option(2, min=2, cli=False, help="ASHA's reduction factor")
    prepare: PrepareFirst = section(PrepareFirst, title="preparing the dataset first", flag_prefix="prepare")
    verbose: bool = option(False, help="Ray's and Tune's own output too (Tune's status tables, every worker's log "
                                       "lines); by default a line per trial and per report")
    # Trials to run first, before the algorithm proposes any (default: the space's starting point).
    points_to_evaluate: list[dict[str, Any]] | None = option(None, cli=False, help="trials to run first")

    def check(self) -> None:
        if self.base.ray.min_workers < 1:
            raise ValueError("every trial of a search is a Ray Train run: --num-workers must be >= 1")

    def eval_steps(self) -> int:
        """Steps between a trial's evaluations (its reports to Tune)."""
        return self.base.eval_every or self.base.steps or 1

    def reports_at(self, step: int) -> int:
        """Evaluations a trial has reported by `step`, its last step's included. Counted from the run's own
        step, which survives a resumed search, as Tune's `training_iteration` does not (it restarts from the
        search's last saved state, behind the trial's checkpoint)."""
        return -(-int(step) // self.eval_steps())

    def reports_per_trial(self) -> int:
        return max(1, self.reports_at(self.base.steps or 0))
