"""The search driver: Ray Tune over DRAW's hyperparameters, one Ray Train run per trial.

A trial is a small function that launches a `TorchTrainer` with Tune's report callback (the Train V2
pattern), so one trial may itself span several GPUs. ASHA stops poor trials early; Optuna proposes new
ones from the finished (random search when Optuna is missing). The metric is the NLL bound on a
validation split held out of the training images. At the end a small "best" record (checkpoint URI,
config, metric, trial id) is written to `<storage>/<name>/best.json`, where Serve and the CLI read it.
Submitting a search with the same name again resumes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from .. import storage
from ..train.config import TrainConfig
from ..train.distributed import RayRun, init_ray, make_trainer, preflight
from .space import apply, search_space, starting_point

log = logging.getLogger(__name__)

METRIC, MODE = "nll_bound", "min"
BEST = "best.json"


@dataclass
class SearchConfig:
    base: TrainConfig = field(default_factory=TrainConfig)  # data, batch size, steps per trial, ...
    name: str = "draw-search"  # stable: submitting the same name again resumes the search
    storage: str = "runs"  # results, trial runs and best.json go to <storage>/<name>
    space: str = "svhn"  # svhn (the paper's SVHN model at the centre) or smoke
    num_trials: int = 16
    workers_per_trial: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    max_concurrent: int | None = None  # default: as many trials as the cluster's resources hold
    time_budget_s: float | None = None
    grace_reports: int = 1  # ASHA: reports a trial always gets
    reduction_factor: int = 2
    algorithm: str = "optuna"  # optuna or random
    seed: int = 0
    # Trials to run first, before the algorithm proposes any (default: the space's starting point).
    points_to_evaluate: list[dict[str, Any]] | None = None

    @property
    def location(self) -> storage.Location:
        return storage.resolve(self.storage).join(self.name)

    def reports_per_trial(self) -> int:
        return max(1, math.ceil(self.base.steps / (self.base.eval_every or self.base.steps)))


def run_trial(params: dict[str, Any], base: dict[str, Any], run: dict[str, Any], group: str) -> None:
    """One trial: a Ray Train run of the trial's configuration, reporting to Tune as it trains."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = ray.tune.get_context().get_trial_id()
    cfg = apply(params, TrainConfig.from_dict(base))
    cfg.tracking = dataclasses.replace(cfg.tracking, group=group, run_name=trial_id)
    make_trainer(cfg, RayRun(**run, name=trial_id), callbacks=[TuneReportCallback()]).fit()


def concurrency(cfg: SearchConfig) -> int:
    """Trials that fit the cluster at once (at least one: an autoscaler may add nodes)."""
    import ray

    if cfg.max_concurrent:
        return cfg.max_concurrent
    res = ray.cluster_resources()
    fits = res.get("CPU", 0) // max(cfg.workers_per_trial * cfg.cpus_per_worker, 1e-9)
    if cfg.gpus_per_worker:
        fits = min(fits, res.get("GPU", 0) // (cfg.workers_per_trial * cfg.gpus_per_worker))
    return max(1, int(fits))


def _searcher(cfg: SearchConfig):
    from ray.tune.search import BasicVariantGenerator

    first = cfg.points_to_evaluate or [starting_point(cfg.space)]
    if cfg.algorithm == "optuna":
        try:
            from ray.tune.search.optuna import OptunaSearch

            return OptunaSearch(metric=METRIC, mode=MODE, seed=cfg.seed, points_to_evaluate=first)
        except ImportError:
            log.warning("optuna is not installed: falling back to random search")
    elif cfg.algorithm != "random":
        raise ValueError(f"unknown search algorithm {cfg.algorithm!r}: use optuna or random")
    # A generator, not a Searcher: Tune's max_concurrent_trials does not reach it, so it is told itself.
    return BasicVariantGenerator(points_to_evaluate=first, random_state=cfg.seed, max_concurrent=concurrency(cfg))


def make_tuner(cfg: SearchConfig):
    import ray.tune
    from ray.tune.schedulers import ASHAScheduler

    loc = storage.check_access(cfg.storage)
    run = {"num_workers": cfg.workers_per_trial, "use_gpu": cfg.gpus_per_worker > 0,
           "gpus_per_worker": cfg.gpus_per_worker or 1.0, "cpus_per_worker": cfg.cpus_per_worker,
           "storage": cfg.location.join("trials").uri, "max_failures": 1}
    # The trial function only launches a Train run and waits; the run's workers hold the real resources.
    # Tune refuses an empty request, so it asks for a byte of memory: even a sliver of a CPU would leave
    # the last Train worker on a full node one sliver short of its CPU, and one trial fewer would run.
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(run_trial, base=cfg.base.to_dict(), run=run, group=cfg.name),
        {"CPU": 0, "memory": 1})
    if ray.tune.Tuner.can_restore(cfg.location.path, storage_filesystem=loc.fs):
        log.info("resuming the search %s", cfg.location.uri)
        return ray.tune.Tuner.restore(cfg.location.path, trainable, resume_errored=True,
                                      storage_filesystem=loc.fs)
    return ray.tune.Tuner(
        trainable,
        param_space=search_space(cfg.space),
        tune_config=ray.tune.TuneConfig(
            metric=METRIC, mode=MODE, num_samples=cfg.num_trials, max_concurrent_trials=concurrency(cfg),
            search_alg=_searcher(cfg), time_budget_s=cfg.time_budget_s,
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=cfg.reports_per_trial(),
                                    grace_period=cfg.grace_reports, reduction_factor=cfg.reduction_factor)),
        run_config=ray.tune.RunConfig(name=cfg.name, storage_path=loc.path, storage_filesystem=loc.fs,
                                      failure_config=ray.tune.FailureConfig(max_failures=0, fail_fast=False)),
    )


def _uri_of(cfg: SearchConfig, fs_path: str) -> str:
    return f"s3://{fs_path}" if cfg.location.is_s3 else fs_path


def summarise(cfg: SearchConfig, results) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One row per trial, and the best record (the lowest validation bound any trial reported)."""
    max_reports = cfg.reports_per_trial()
    rows, best = [], None
    for r in results:
        trial_id = r.path.rstrip("/").rsplit("/", 1)[-1] if r.path else "?"
        metrics = r.metrics or {}
        trial_id = metrics.get("trial_id", trial_id)
        reports = int(metrics.get("training_iteration", 0))
        status = "error" if r.error else ("completed" if reports >= max_reports else "stopped early")
        row = {"trial": trial_id, **{k: r.config.get(k) for k in ("read_n", "write_n", "z_size", "hidden", "T")},
               "lr": round(float(r.config.get("lr", float("nan"))), 6), "reports": reports,
               "nll_bound": metrics.get(METRIC), "status": status}
        if r.error:
            row["error"] = str(r.error).splitlines()[0][:120]
        rows.append(row)
        df = r.metrics_dataframe
        if df is None or METRIC not in df or "checkpoint_path" not in df:
            continue
        df = df.dropna(subset=[METRIC, "checkpoint_path"])
        if df.empty:
            continue
        top = df.loc[df[METRIC].idxmin()]
        if best is None or top[METRIC] < best["value"]:
            best = {"search": cfg.location.uri, "trial_id": trial_id, "metric": METRIC, "mode": MODE,
                    "value": float(top[METRIC]), "eval_split": "validation", "step": int(top.get("step", 0)),
                    "checkpoint": _uri_of(cfg, top["checkpoint_path"]),
                    "hyperparameters": {k: r.config[k] for k in ("read_n", "write_n", "z_size", "hidden", "T", "lr")},
                    "dataset": cfg.base.data.dataset}
    if best is not None:
        from .. import checkpoint

        best.update({"model": checkpoint.load(best["checkpoint"])["model_config"], "trials": len(rows),
                     "stopped_early": sum(r["status"] == "stopped early" for r in rows),
                     "errors": sum(r["status"] == "error" for r in rows),
                     "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    return rows, best


def format_table(rows: list[dict[str, Any]]) -> str:
    cols = ["trial", "read_n", "write_n", "z_size", "hidden", "T", "lr", "reports", "nll_bound", "status"]
    cells = [[("" if row.get(c) is None else f"{row[c]:.2f}" if c == "nll_bound" else str(row[c])) for c in cols]
             for row in sorted(rows, key=lambda r: (r["nll_bound"] is None, r["nll_bound"] or 0))]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def run_search(cfg: SearchConfig) -> dict[str, Any]:
    """Run (or resume) a search; returns the best record, also written to `<storage>/<name>/best.json`."""
    if not cfg.base.steps:
        raise ValueError("a search needs a fixed number of steps per trial (base.steps)")
    preflight(cfg.base, RayRun(num_workers=cfg.workers_per_trial, use_gpu=cfg.gpus_per_worker > 0,
                               storage=cfg.storage, name=cfg.name))  # checked as a trial's run
    init_ray()
    results = make_tuner(cfg).fit()
    rows, best = summarise(cfg, results)
    print(format_table(rows), flush=True)
    if best is None:
        raise RuntimeError(f"no trial of {cfg.location.uri} reported a checkpoint; see the trial errors above")
    storage.write_bytes(cfg.location.join(BEST), json.dumps(best, indent=2).encode())
    log.info("best: trial %s, %s %.2f, checkpoint %s", best["trial_id"], METRIC, best["value"], best["checkpoint"])
    return {**best, "best_record": cfg.location.join(BEST).uri}


def read_best(uri: str) -> dict[str, Any]:
    """A best record, by its own URI or by its search's folder."""
    loc = storage.resolve(uri)
    if not loc.path.endswith(".json"):
        loc = loc.join(BEST)
    try:
        return json.loads(storage.read_bytes(loc))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"no best record at {loc.uri}: has the search finished?") from err
