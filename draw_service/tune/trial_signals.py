"""What Tune hears from a trial's Ray Train run, and how it acts on it.

- Only evaluated reports reach Tune. A run also reports a checkpoint alone (a spot node's preemption notice,
  `--checkpoint-every` between evaluations); Tune refuses a result without the search's metric and ends the
  whole search (Optuna would fail on it too). The run keeps such checkpoints and restarts from them itself.
- A trial at its last report ends by itself. Tune's ASHA stops a trial the moment it reports its last
  evaluation (`max_t`), and Tune then ends the trial's actor at once, while its Train run is still shutting
  down. The run's controller dies with the actor before it removes its placement group and withdraws its
  request to the autoscaler (Ray 2.60): the next trial waits minutes for CPUs nothing uses, and nodes stay
  up 3 minutes for nothing (docs/many-nodes.md). Here a finished trial ends as its function returns."""

from __future__ import annotations

from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler

from .results import METRIC


class EvaluatedReports(TuneReportCallback):
    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        if METRIC in metrics[0]:
            super().after_report(run_context, metrics, checkpoint)


class FinishingASHA(ASHAScheduler):
    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(self._time_attr, 0) >= self._max_t:
            return self.CONTINUE  # its last report: the Train run ends next, on its own
        return super().on_trial_result(tune_controller, trial, result)
