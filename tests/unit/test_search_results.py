"""The summary of a finished search: rows, the table a user reads, the best record."""

from draw_service.tune.results import TrialOutcome, format_table, summarise

PARAMS = {"read_n": 3, "write_n": 4, "z_size": 8, "hidden": 32, "T": 4, "lr": 3e-3}
RAY_ERROR = """ray::ImplicitFunc.train() (pid=27631, ip=192.0.2.2, actor_id=3e02, repr=run_trial)
  File "/x/draw_service/tune/search.py", line 45, in run_trial
    preflight(cfg)
ValueError: attention patches read_n=3, write_n=99 are larger than the 32x32 image
"""


def test_the_table_ranks_trials_says_why_one_failed_and_the_best_is_the_lowest_bound():
    trials = [
        TrialOutcome("a_00000", PARAMS, 4, {"nll_bound": 900.0, "bits_per_dim": 0.6},
                     checkpoints=[({"nll_bound": 950.0, "bits_per_dim": 0.7, "step": 20}, "s3://b/a/checkpoint_20"),
                                  ({"nll_bound": 900.0, "bits_per_dim": 0.6, "step": 40}, "s3://b/a/checkpoint_40")]),
        TrialOutcome("a_00001", {**PARAMS, "write_n": 99}, 0, {}, error=RAY_ERROR),
        TrialOutcome("a_00002", {**PARAMS, "lr": 1e-7}, 1, {"nll_bound": 990.0, "bits_per_dim": 0.8},
                     checkpoints=[({"nll_bound": 990.0, "bits_per_dim": 0.8, "step": 10}, "s3://b/c/checkpoint_10")]),
    ]
    rows, best = summarise(trials, max_reports=4, search_uri="s3://b/s", dataset="s3://b/d")
    assert [r["status"] for r in rows] == ["completed", "error", "stopped early"]
    assert best["checkpoint"] == "s3://b/a/checkpoint_40" and best["value"] == 0.6 and best["step"] == 40
    assert (best["trials"], best["errors"], best["stopped_early"]) == (3, 1, 1)
    table = format_table(rows).splitlines()
    assert [line.split()[0] for line in table[2:5]] == ["a_00000", "a_00002", "a_00001"]  # best first, failed last
    assert "1e-07" in table[3]  # a tiny learning rate is not shown as 0.0
    assert table[-1] == ("trial a_00001 failed: ValueError: attention patches read_n=3, write_n=99 are larger "
                         "than the 32x32 image")


def test_asha_lets_a_trial_at_its_last_report_end_by_itself_and_still_stops_poor_ones_early():
    """At its last report a trial is done: Tune's ASHA would STOP it (and Tune end its actor while its Train
    run shuts down, leaving its placement group and node request behind); ours lets it return."""
    from dataclasses import dataclass

    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    from draw_service.tune.trial_signals import FinishingASHA

    @dataclass
    class Trial:  # what ASHA reads of a trial
        trial_id: str

    def scheduler(kind):
        s = kind(time_attr="training_iteration", metric="bits_per_dim", mode="min", max_t=4, grace_period=1,
                 reduction_factor=2)
        for t in ("good", "poor"):
            s.on_trial_add(None, Trial(t))
        return s

    stock, ours = scheduler(ASHAScheduler), scheduler(FinishingASHA)
    last = {"training_iteration": 4, "bits_per_dim": 1.0}
    assert stock.on_trial_result(None, Trial("good"), last) == TrialScheduler.STOP
    assert ours.on_trial_result(None, Trial("good"), last) == TrialScheduler.CONTINUE
    # a rung below the last still cuts a trial worse than the ones before it
    assert ours.on_trial_result(None, Trial("good"), {"training_iteration": 1, "bits_per_dim": 1.0}) == "CONTINUE"
    assert ours.on_trial_result(None, Trial("poor"), {"training_iteration": 1, "bits_per_dim": 9.0}) == "STOP"


def test_the_s3_credentials_stay_off_the_environment_tune_gives_each_trial(monkeypatch):
    """Tune copies the names in its class_cache.ENV_VARS_TO_PROPAGATE from the driver's environment into each
    trial's runtime env (which Ray's runtime_env_agent.log then writes out); the search takes the S3
    credentials off that list. This fails when a Ray upgrade hands them on by another name or list."""
    from ray.tune.execution import class_cache

    from draw_service.tune.search import CREDENTIALS, keep_credentials_off_trials

    monkeypatch.setattr(class_cache, "ENV_VARS_TO_PROPAGATE", class_cache.ENV_VARS_TO_PROPAGATE)  # restored after
    for name in CREDENTIALS:
        monkeypatch.setenv(name, "secret-" + name)
    monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")
    keep_credentials_off_trials()
    trial_class = class_cache._ActorClassCache().get(type("Trainable", (), {}))  # what Tune starts a trial as
    env_vars = trial_class._default_options["runtime_env"]["env_vars"]
    assert env_vars.get("RAY_CHDIR_TO_TRIAL_DIR") == "0"  # the others still go
    assert not set(CREDENTIALS) & set(env_vars), env_vars
