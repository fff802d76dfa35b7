"""The search driver: Ray Tune over DRAW's hyperparameters, one Ray Train run per trial.

A trial is a small function that launches a `TorchTrainer` with Tune's report callback (the Train V2
pattern), so one trial may itself span several GPUs. ASHA stops poor trials early; Optuna proposes new
ones from the finished (random search when Optuna is missing). The metric is the bound on a validation
split held out of the training images. At the end the trials are summarised (`results.py`) and the
best record is written to `<search>/best.json` (`best.py`). Submitting a search again resumes it.

    <search>/trials/<trial id>/     each trial's run folder (`run_dir.py`)
    <search>/best.json              the best record
    <search>/...                    Tune's own state (tuner.pkl, experiment state)
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from .. import best as best_record
from .. import checkpoint, storage
from ..run_dir import RunDir
from ..train.config import TrainConfig
from ..train.on_ray import make_trainer, preflight
from . import signature
from .config import SearchConfig
from .results import METRIC, MODE, TrialOutcome, format_table, summarise
from .space import apply, search_space, starting_point

log = logging.getLogger(__name__)

# What Ray Tune copies from the driver's environment into every trial's runtime env
# (ray.tune.execution.class_cache), where Ray's runtime_env_agent.log then records it in plain text. A
# trial's nodes have credentials of their own (a Secret, IRSA, an instance profile; on a local cluster the
# node's environment, which is the driver's).
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN")


# How stale the search's state in storage may be (Tune's default: 5 minutes). A driver that dies (a head
# pod restarted) resumes from that state: trials it finished since would train again. The state is a few KB.
STATE_SYNC_S = 10


def keep_credentials_off_trials() -> None:
    """Take the S3 credentials out of what Tune hands each trial (Ray offers no setting for it)."""
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE = frozenset(class_cache.ENV_VARS_TO_PROPAGATE) - set(CREDENTIALS)


def run_trial(params: dict[str, Any], base: dict[str, Any]) -> None:
    """One trial: a Ray Train run of the trial's configuration in `<search>/trials/<id>`, reporting to Tune."""
    import ray.tune

    from .trial_signals import EvaluatedReports

    trial_id = ray.tune.get_context().get_trial_id()
    cfg = apply(params, TrainConfig.from_dict(base))
    search = RunDir(cfg.out)
    cfg = cfg.replace(out=search.child("trials", trial_id).uri,
                      tracking=cfg.tracking.replace(group=search.name, run_name=trial_id))
    # A sampled configuration that cannot work (patches larger than the images) fails here, in one line,
    # before a worker group starts, and is not retried as a worker's crash would be.
    run = preflight(cfg)
    make_trainer(cfg, run, callbacks=[EvaluatedReports()]).fit()


def concurrency(cfg: SearchConfig, resources: dict[str, float]) -> int:
    """Trials at once: `--max-concurrent`, else as many as the cluster's `resources` hold now. A cluster that
    holds none yet (GPU workers autoscaling from zero) gets every trial at once, so their pending requests
    make the autoscaler add nodes, rather than one at a time; pass --max-concurrent to bound it."""
    if cfg.max_concurrent:
        return cfg.max_concurrent
    trial = cfg.base.ray
    fits = resources.get("CPU", 0) // max(trial.max_workers * trial.cpus_per_worker, 1e-9)
    if trial.use_gpu:
        fits = min(fits, resources.get("GPU", 0) // (trial.max_workers * trial.gpus_per_worker))
    if fits < 1:
        log.warning("the cluster holds no trial yet (%s): starting all %d trials and letting the autoscaler add "
                    "nodes; --max-concurrent bounds how many run at once", resources, cfg.trials)
        return cfg.trials
    return int(fits)


def _searcher(cfg: SearchConfig, at_once: int):
    from ray.tune.search import BasicVariantGenerator

    first = cfg.points_to_evaluate or [starting_point(cfg.space)]
    if cfg.algorithm == "optuna":
        try:
            from ray.tune.search.optuna import OptunaSearch

            return OptunaSearch(metric=METRIC, mode=MODE, seed=cfg.base.seed, points_to_evaluate=first)
        except ImportError:
            log.warning("optuna is not installed: falling back to random search")
    # A generator, not a Searcher: Tune's max_concurrent_trials does not reach it, so it is told itself.
    return BasicVariantGenerator(points_to_evaluate=first, random_state=cfg.base.seed, max_concurrent=at_once)


def make_tuner(cfg: SearchConfig):
    import ray.tune
    from ray._common.constants import HEAD_NODE_RESOURCE_NAME  # the head node's marker resource

    from .trial_signals import FinishingASHA

    search = RunDir(storage.check_access(cfg.base.out))
    storage_path, filesystem, name = search.ray_storage()
    # The trial function only launches a Train run and waits; the run's workers hold the real resources. It
    # runs on the head: a trial placed on a worker node dies with that node (a spot node reclaimed, an idle
    # node the autoscaler ends), and its Train run with it, elastic or not. So it asks for a thousandth of the
    # head's marker resource, as Ray Train's own state actor does, and no CPU: even a sliver of one would
    # leave the last Train worker on a full node one sliver short of its CPU, and one trial fewer would run.
    trainable = ray.tune.with_resources(ray.tune.with_parameters(run_trial, base=cfg.base.to_dict()),
                                        {"CPU": 0, HEAD_NODE_RESOURCE_NAME: 0.001})
    if ray.tune.Tuner.can_restore(search.loc.path, storage_filesystem=filesystem):
        # run_search verified the folder's state (signature.verify) before Ray started
        log.info("resuming the search %s", search.uri)
        tuner = ray.tune.Tuner.restore(search.loc.path, trainable, resume_errored=True, storage_filesystem=filesystem)
        signature.sign_stored(search, [signature.TUNER_STATE])
        return tuner
    at_once = concurrency(cfg, ray.cluster_resources())
    tuner = ray.tune.Tuner(
        trainable,
        param_space=search_space(cfg.space),
        tune_config=ray.tune.TuneConfig(
            metric=METRIC, mode=MODE, num_samples=cfg.trials, max_concurrent_trials=at_once,
            search_alg=_searcher(cfg, at_once), time_budget_s=cfg.time_budget,
            # ASHA counts in the runs' own steps, which a resumed trial continues (Tune's training_iteration
            # restarts behind them); its rungs fall on evaluations, `grace_reports` of them the first.
            scheduler=FinishingASHA(time_attr="step", max_t=cfg.base.steps,
                                    grace_period=min(cfg.grace_reports * cfg.eval_steps(), cfg.base.steps),
                                    reduction_factor=cfg.reduction_factor)),
        run_config=ray.tune.RunConfig(name=name, storage_path=storage_path, storage_filesystem=filesystem,
                                      failure_config=ray.tune.FailureConfig(max_failures=0, fail_fast=False),
                                      sync_config=ray.tune.SyncConfig(sync_period=STATE_SYNC_S),
                                      callbacks=[signature.make_signer(search), *_progress(cfg)],
                                      verbose=None if cfg.verbose else 0),
    )
    signature.sign_stored(search, [signature.TUNER_STATE])  # written by Tuner(...) itself, straight to storage
    return tuner


def _progress(cfg: SearchConfig) -> list:
    """The search's own lines (`progress.py`), unless --verbose asks for Tune's tables instead."""
    if cfg.verbose:
        return []
    import os

    from .progress import TrialLines

    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's older output, which verbose=0 silences whole

    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # its "A new study created" line
    except ImportError:
        pass
    return [TrialLines(cfg.trials, cfg.reports_per_trial(), cfg.reports_at)]


def outcomes(cfg: SearchConfig, search: RunDir, results) -> list[TrialOutcome]:
    """Tune's results as plain trial outcomes."""
    found = []
    for r in results:
        metrics = r.metrics or {}
        trial_id = metrics.get("trial_id") or (r.path.rstrip("/").rsplit("/", 1)[-1] if r.path else "?")
        checkpoints = []
        df = r.metrics_dataframe
        if df is not None and METRIC in df and "checkpoint_path" in df:
            for _, row in df.dropna(subset=[METRIC, "checkpoint_path"]).iterrows():
                checkpoints.append(({k: row[k] for k in ("nll_bound", "bits_per_dim", "step") if k in row},
                                    search.uri_of(row["checkpoint_path"])))
        found.append(TrialOutcome(trial_id, dict(r.config or {}), cfg.reports_at(metrics.get("step", 0)), metrics,
                                  str(r.error) if r.error else None, checkpoints))
    return found


def run_search(cfg: SearchConfig) -> dict[str, Any]:
    """Run (or resume) a search; returns the best record, also written to `<search>/best.json`."""
    from ..ray_cluster import connect

    if not cfg.base.steps:
        raise ValueError("a search needs a fixed number of steps per trial (--steps)")
    cfg = cfg.replace(base=cfg.base.with_absolute_paths())
    preflight(cfg.base)  # the data and storage, checked once as any trial's run would be
    search = RunDir(cfg.base.out)
    try:
        done = best_record.read(search.uri)
    except FileNotFoundError:
        done = None
    if done is not None:
        # A finished search: Tune would "resume" it and train nothing; say so instead of pretending.
        print(f"the search {search.uri} finished on {done.get('created', '?')} ({done.get('trials', '?')} trials); "
              f"nothing to run. Its best: trial {done['trial_id']}, {METRIC} {done['value']:.4f}. Choose another "
              f"--out to search again.", file=sys.stderr, flush=True)
        return {**done, "best_record": best_record.location(search.uri).uri, "resumed_finished_search": True}
    if storage.exists(search.loc.join(signature.TUNER_STATE)):
        signature.verify(search)  # before Ray starts, and before it unpickles anything of the folder
    connect(log_to_driver=cfg.verbose)  # the trials' own lines come as TrialLines, unless --verbose
    keep_credentials_off_trials()
    results = make_tuner(cfg).fit()
    rows, best = summarise(outcomes(cfg, search, results), cfg.reports_per_trial(), search.uri, cfg.base.data.dataset)
    print(format_table(rows), flush=True)
    if best is None:
        raise RuntimeError(f"no trial of {search.uri} reported a checkpoint; see the trial errors above")
    state = checkpoint.load(best["checkpoint"])
    best.update({"model": state["model_config"], "image_shape": state["image_shape"]})
    uri = best_record.write(search.uri, best)
    log.info("best: trial %s, %s %.4f, checkpoint %s", best["trial_id"], METRIC, best["value"], best["checkpoint"])
    return {**best, "best_record": uri}


def tune_command(cfg: SearchConfig) -> dict[str, Any]:
    """`draw-service tune`: prepare the dataset first if asked, then run (or resume) the search."""
    from ..data import shards

    if cfg.prepare.source and not shards.is_prepared(cfg.base.data.dataset):
        print(f"{cfg.base.data.dataset} holds no prepared dataset: preparing {cfg.prepare.source} into it",
              file=sys.stderr)
        shards.prepare_source(cfg.prepare.source, cfg.base.data.dataset, train_limit=cfg.prepare.train_limit,
                              test_limit=cfg.prepare.test_limit, progress=not cfg.base.quiet)
    return run_search(cfg)
