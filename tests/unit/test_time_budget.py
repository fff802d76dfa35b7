"""`--time-limit` bounds the whole run: what the loop's `Budget` keeps back for the final report, and how
much of the split the final evaluation takes when time is short. Times are set, not measured: the answers
are far from any boundary a machine's speed could move."""

import time

from draw_service.train.loop import Budget, Meter


def budget(limit_s, elapsed_s, eval_s_per_image=None, train_limit_s=None, images=1000):
    return Budget(limit_s, train_limit_s, images, started=time.perf_counter() - elapsed_s,
                  eval_s_per_image=eval_s_per_image)


def meter(trained_s=10.0, steps=100):
    m = Meter("cpu")
    m.started -= trained_s
    m.steps = steps
    return m


def test_the_run_ends_when_what_is_left_is_what_the_final_report_needs():
    # a full evaluation costs 1000 images x 0.001 s = 1 s; the report keeps 1 s + MARGIN_S back
    assert not budget(600, 60, 0.001).spent(meter(), 50, 0, evaluating_next=False)
    assert budget(600, 600 - Budget.MARGIN_S - 0.5, 0.001).spent(meter(), 50, 0, evaluating_next=False)
    # before a due evaluation (here 10 s), that evaluation must fit as well as the final one
    assert budget(600, 580, 0.01).spent(meter(), 50, 0, evaluating_next=True)
    assert not budget(600, 580, 0.01).spent(meter(), 50, 0, evaluating_next=False)
    # importance samples make the final evaluation (1 + k) times dearer
    assert budget(600, 580, 0.01).spent(meter(), 50, 9, evaluating_next=False)


def test_an_evaluation_dearer_than_a_quarter_of_the_limit_keeps_only_that_quarter():
    # the whole split would take 1000 s of a 600-s run: 150 s (a quarter) are kept back, not 1000
    assert not budget(600, 400, 1.0).spent(meter(), 50, 0, evaluating_next=False)
    assert budget(600, 450, 1.0).spent(meter(), 50, 0, evaluating_next=False)
    # and the final evaluation then takes the share of the split that fits
    share = budget(600, 450, 1.0).final_share(meter(), 50, 0)
    assert 0.14 < share < 0.15  # (600 - 450 - 3) / 1000
    assert budget(600, 60, 0.001).final_share(meter(), 50, 0) == 1.0
    assert budget(600, 700, 0.001).final_share(meter(), 50, 0) == 0.0


def test_before_any_evaluation_its_cost_is_estimated_from_the_training_steps():
    # 100 steps of 50 images in 10 s: 0.002 s per image trained, 0.001 per image evaluated (half)
    b = budget(600, 60)
    assert abs(b.full_eval_s(meter(10.0, 100), 50, 0) - 1.0) < 0.05
    b.timed_eval(images=500, seconds=5.0, iw_samples=0)  # then the measured cost wins
    assert b.full_eval_s(meter(10.0, 100), 50, 0) == 10.0


def test_the_training_time_limit_counts_training_alone():
    b = budget(None, 10_000, train_limit_s=60)
    m = meter()
    m.budget_s = 61.0
    assert b.spent(m, 50, 0, evaluating_next=False)
    m.budget_s = 0.0
    m.started = time.perf_counter()
    assert not b.spent(m, 50, 0, evaluating_next=False)
