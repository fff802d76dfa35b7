"""Hyperparameter search on Ray Tune over SVHN-format data, with results in the S3 server."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import point_ray_address_file_here
from svhn_files import write_svhn_mat

from devtools.s3_server import free_port_pairs
from draw_service import best as best_record
from draw_service import checkpoint, storage
from draw_service.data import shards
from draw_service.data.config import DataConfig
from draw_service.tracking import TrackingConfig
from draw_service.train.config import RayConfig, TrainConfig
from draw_service.tune.config import SearchConfig
from draw_service.tune.search import run_search

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def svhn_root(tmp_path_factory, mnist):
    return write_svhn_mat(tmp_path_factory.mktemp("svhn-root"), mnist)


def test_smoke_search_stops_trials_early_survives_a_failed_trial_and_resumes(ray_cluster, svhn_root, monkeypatch,
                                                                             capsys):
    monkeypatch.setenv("DRAW_DATA_ROOT", str(svhn_root))
    shards.prepare_source("svhn", "s3://draw/datasets/svhn-smoke", progress=False)
    base = TrainConfig(data=DataConfig(dataset="s3://draw/datasets/svhn-smoke", validation_stride=10, test_limit=100),
                       tracking=TrackingConfig(wandb=False), ray=RayConfig(num_workers=1, max_failures=1),
                       out="s3://draw/searches/smoke", batch_size=32, steps=40, eval_every=10, eval_batch_size=100,
                       quiet=True)
    good = {"read_n": 3, "write_n": 4, "z_size": 8, "hidden": 32, "T": 4, "lr": 3e-3}
    broken = {**good, "write_n": 99}  # a patch larger than the image: this trial must fail alone
    # (random search here, which takes any starting point; the job-submission test below runs Optuna)
    # Barely learning, and started after `good`: ASHA stops it at the first rung.
    crawling = {**good, "lr": 1e-7}
    cfg = SearchConfig(base=base, space="smoke", trials=5,
                       max_concurrent=2, points_to_evaluate=[good, broken, crawling], algorithm="random")
    best = run_search(cfg)
    table = capsys.readouterr().out
    assert "stopped early" in table and "error" in table and table.count("completed") >= 1

    assert best["best_record"] == "s3://draw/searches/smoke/best.json"
    assert best["trials"] == 5 and best["errors"] == 1 and best["stopped_early"] >= 1
    assert best["eval_split"] == "validation" and best["metric"] == "nll_bound"
    record = best_record.read("s3://draw/searches/smoke")
    assert record["checkpoint"].startswith("s3://draw/searches/smoke/trials/")
    model, state = checkpoint.load_model(record["checkpoint"])
    assert model.image_shape == (3, 32, 32) and state["metrics"]["nll_bound"] == pytest.approx(record["value"])
    images, _ = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert images.shape == (4, 3, 32, 32)

    # Submitting the same search again resumes it: nothing is re-run and the same best comes back.
    again = run_search(cfg)
    assert again["trial_id"] == best["trial_id"] and again["value"] == best["value"]


def test_ray_job_submit_runs_the_svhn_smoke_search_on_a_running_cluster(svhn_root, tmp_path):
    """`ray start --head` on free ports, then exactly the command users run against a cluster."""
    ports = free_port_pairs(8)
    env = {**os.environ, "DRAW_DATA_ROOT": str(svhn_root), "RAY_AUTH_MODE": "token",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(k, None)  # this search stores locally
    ray = str(Path(sys.executable).parent / "ray")
    head = subprocess.Popen(
        [ray, "start", "--head", "--block", f"--port={ports[0]}", f"--dashboard-port={ports[1]}",
         f"--ray-client-server-port={ports[2]}", f"--dashboard-agent-listen-port={ports[3]}",
         f"--dashboard-agent-grpc-port={ports[4]}", f"--runtime-env-agent-port={ports[5]}",
         f"--metrics-export-port={ports[6]}", f"--min-worker-port={ports[7]}", f"--max-worker-port={ports[7] + 200}",
         "--num-cpus=4", "--include-dashboard=true", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{ports[1]}"
    try:
        deadline = time.monotonic() + 90
        while subprocess.run([ray, "job", "list", "--address", address], env=env,
                             capture_output=True).returncode != 0:
            assert time.monotonic() < deadline and head.poll() is None, "the Ray head did not come up"
            time.sleep(1)
        store = tmp_path / "store"
        job = subprocess.run(
            [ray, "job", "submit", "--address", address, "--working-dir", ".", "--",
             "python", "jobs/tune_svhn.py", "--smoke", "--storage", str(store)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout + job.stderr
        record = json.loads((store / "tune-svhn-smoke" / "best.json").read_text())
        assert record["trials"] == 4 and storage.exists(checkpoint.checkpoint_file(record["checkpoint"]))
        assert checkpoint.load_model(record["checkpoint"])[0].image_shape == (3, 32, 32)
    finally:
        # `ray stop` would also stop this test session's own cluster: end just this head's processes,
        # and point Ray's address file back at the session's cluster (or remove it).
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        from ray._private.utils import get_ray_address_file

        Path(get_ray_address_file(None)).unlink(missing_ok=True)
        point_ray_address_file_here()
