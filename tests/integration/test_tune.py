"""Hyperparameter search on Ray Tune over SVHN-format data, with results in the S3 server."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import point_ray_address_file_here
from ray_heads import RAY, head_env, ray_head
from readme import readme_lines
from wandb_records import history, lifetime, run_info

from draw_service import best as best_record
from draw_service import checkpoint, storage
from draw_service.data import shards
from draw_service.data.config import DataConfig
from draw_service.tracking import TrackingConfig
from draw_service.train.config import RayConfig, TrainConfig
from draw_service.tune.config import SearchConfig
from draw_service.tune.search import run_search

REPO = Path(__file__).resolve().parents[2]


def test_smoke_search_stops_trials_early_survives_a_failed_trial_and_resumes(ray_cluster, svhn_root, monkeypatch,
                                                                             capsys, tmp_path):
    monkeypatch.setenv("DRAW_DATA_ROOT", str(svhn_root))
    shards.prepare_source("svhn", "s3://draw/datasets/svhn-smoke", progress=False)
    base = TrainConfig(data=DataConfig(dataset="s3://draw/datasets/svhn-smoke", validation_stride=10, test_limit=100),
                       tracking=TrackingConfig(wandb=True), ray=RayConfig(num_workers=1, max_failures=1),
                       out="s3://draw/searches/smoke", batch_size=32, steps=40, eval_every=10, eval_batch_size=100,
                       quiet=True)
    good = {"read_n": 3, "write_n": 4, "z_size": 8, "hidden": 32, "T": 4, "lr": 3e-3}
    broken = {**good, "write_n": 99}  # a patch larger than the image: this trial must fail alone
    # (random search here, which takes any starting point; the job-submission test below runs Optuna, two
    # trials at once) Barely learning, and run after `good`: ASHA stops it at the first rung.
    crawling = {**good, "lr": 1e-7}
    cfg = SearchConfig(base=base, space="smoke", trials=3,
                       max_concurrent=1, points_to_evaluate=[good, broken, crawling], algorithm="random")
    best = run_search(cfg)
    said = capsys.readouterr()
    table = said.out
    print(table, said.err)
    # the search's own progress, a line per trial start, report and end (Tune's tables only with --verbose)
    lines = [ln for ln in said.err.splitlines() if re.match(r"\[\d+:\d\d\] trial \w+: ", ln)]
    assert len([ln for ln in lines if ": started (read_n 3 write_n " in ln]) == 3, said.err
    assert len([ln for ln in lines if " report 4/4, step 40: validation bound " in ln]) == 1, said.err
    assert len([ln for ln in lines if "stopped early by ASHA after 1 report (" in ln]) == 1, said.err
    assert len([ln for ln in lines if ": failed: ValueError: attention patches" in ln]) == 1, said.err
    assert "3/3 trials done" in lines[-1] and "Trial status" not in said.out + said.err
    statuses = re.findall(r"^\w+_\d{5}\s.*?(completed|stopped early|error)\s*$", table, re.M)  # the summary's rows
    assert sorted(statuses) == ["completed", "error", "stopped early"], table
    assert re.search(r"\s1e-07\s.*stopped early", table), table  # the crawling trial, its lr as it was
    # the failed trial's cause, in one line under the table
    assert re.search(r"trial \w+ failed: ValueError: attention patches read_n=3, write_n=99 are larger than the "
                     r"32x32 image", table), table

    assert best["best_record"] == "s3://draw/searches/smoke/best.json"
    assert best["trials"] == 3 and best["errors"] == 1 and best["stopped_early"] == 1
    assert best["eval_split"] == "validation" and best["metric"] == "bits_per_dim"
    record = best_record.read("s3://draw/searches/smoke")
    assert record["checkpoint"].startswith("s3://draw/searches/smoke/trials/")
    model, state = checkpoint.load_model(record["checkpoint"])
    assert model.image_shape == (3, 32, 32) and state["metrics"]["bits_per_dim"] == pytest.approx(record["value"])
    assert model.config.likelihood == "logistic-mixture"  # 8-bit colour: a real likelihood, so bits/dim mean something
    assert "bits_per_dim" in table and f"{record['value']:.4f}" in table
    images, _ = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert images.shape == (4, 3, 32, 32)

    # Tracking that survives the pod: every trial that trained, the one ASHA stopped too, left a complete
    # W&B run in the search's storage (not only on the node that ran it), grouped under the search's name.
    objects = storage.boto3_client().list_objects_v2(Bucket="draw", Prefix="searches/smoke/trials/")["Contents"]
    keys = [o["Key"] for o in objects if o["Key"].endswith(".wandb")]
    print("W&B run files of the search, in its storage:", *(f"s3://draw/{k}" for k in keys), sep="\n  ")
    assert len(keys) == 2, keys
    # the broken trial failed before any worker started: it left nothing in storage (only the empty folder
    # marker pyarrow keeps where the storage check wrote and deleted its probe)
    broken_id = re.search(r"trial (\w+) failed", table).group(1)
    left = [(o["Key"], o["Size"]) for o in objects if o["Key"].startswith(f"searches/smoke/trials/{broken_id}/")]
    assert all(key.endswith("/") and size == 0 for key, size in left), left
    infos = {}
    for key in keys:
        local = tmp_path / key
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(storage.read_bytes(f"s3://draw/{key}"))
        info = run_info(local)
        infos[info.display_name] = info
        reported = [r["_step"] for r in history(local) if "nll_bound" in r]
        assert reported[:1] == [10] and reported == sorted(reported), (key, reported)
    assert {i.run_group for i in infos.values()} == {"smoke"}
    assert best["trial_id"] in infos and len(infos) == len(keys)  # one W&B run per trial

    # Submitting the same search again resumes it: nothing is re-run and the same best comes back.
    again = run_search(cfg)
    assert again["trial_id"] == best["trial_id"] and again["value"] == best["value"]


def test_a_search_given_a_relative_folder_keeps_its_trials_there(ray_cluster, monkeypatch, tmp_path):
    """Tune runs each trial in a working directory of its own: `--out runs/x` must still mean ./runs/x where
    the command was typed, not a folder inside Ray's session directory that nobody looks in."""
    monkeypatch.chdir(tmp_path)
    base = TrainConfig(data=DataConfig(dataset="mnist", train_limit=200, test_limit=20, validation_stride=10),
                       tracking=TrackingConfig(wandb=False), ray=RayConfig(num_workers=1, max_failures=0),
                       out="runs/relative", batch_size=20, steps=4, eval_every=4, quiet=True)
    best = run_search(SearchConfig(base=base, space="smoke", trials=1, algorithm="random"))
    assert best["checkpoint"].startswith(str(tmp_path / "runs" / "relative" / "trials")), best["checkpoint"]
    assert (Path(best["checkpoint"]) / checkpoint.FILENAME).is_file()
    assert sorted(p.name for p in (tmp_path / "runs" / "relative" / "trials").iterdir()) == [best["trial_id"]]


def trial_lifetimes(prefix: str, tmp_path: Path) -> dict[str, tuple[float, float]]:
    """Each trial's W&B run under `prefix` in the bucket `draw`: (when it started, its last row), in seconds
    since the epoch, as W&B recorded them on the trial's worker."""
    found = {}
    for obj in storage.boto3_client().list_objects_v2(Bucket="draw", Prefix=prefix)["Contents"]:
        if obj["Key"].endswith(".wandb"):
            local = tmp_path / obj["Key"]
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(storage.read_bytes(f"s3://draw/{obj['Key']}"))
            name, start, end = lifetime(local)
            found[name] = (start, end)
    return found


def readme_submit_line() -> list[str]:
    """The README's `ray job submit` line (section "On a Ray cluster"), as words."""
    import shlex

    (line,) = [ln for ln in readme_lines("On a Ray cluster") if ln.startswith("ray job submit")]
    return shlex.split(line)


def test_ray_job_submit_runs_the_readmes_smoke_search_on_a_running_cluster(s3, tmp_path):
    """A head started as the README says (`RAY_AUTH_MODE=token ray start --head`, here on free ports and with
    a token of the test's own, never ~/.ray's), then the README's submit line word for word but for the
    head's address. The head was started with the job's settings in its environment (DRAW_DATA_ROOT and
    DRAW_STORAGE, pointed at the test's S3) and the S3 credentials, as a pod has them from its Secret."""
    env = head_env(DRAW_STORAGE="s3://draw/jobs")
    words = readme_submit_line()
    words[words.index("--address") + 1] = "{address}"
    with ray_head(env, lambda gcs: ["--num-cpus=4"]) as head:
        job = subprocess.run([w.format(address=head.address) for w in words], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
        log = job.stdout + job.stderr
        # the transcript, for the record (pytest -s shows it): the trial counts as they ran, and the end
        print(*(line for line in log.splitlines() if "Trial status" in line), log[-5000:], sep="\n")
        assert job.returncode == 0, log[-3000:]
        assert "succeeded" in log
        # .rayignore kept docs/ (pictures, GIFs of 11 MB) out of the upload; Ray warns of each large file it packs
        assert "is very large" in log and not re.search(r"/docs/\S+ is very large", log), log[:3000]
        # Two trials at once (--max-concurrent 2 in the smoke preset), from what the trials recorded: each
        # one's W&B run began before the other's last row. (Not Tune's status line: it comes every 30 s, and
        # a fast machine runs the whole search between two of them.)
        lives = trial_lifetimes("jobs/", tmp_path)
        first = min(start for start, _ in lives.values())
        print("the trials' W&B runs, s from the first start:",
              {t: (round(a - first, 2), round(b - first, 2)) for t, (a, b) in lives.items()})
        assert len(lives) == 2, lives
        (a, b) = lives.values()
        assert max(a[0], b[0]) < min(a[1], b[1]), lives  # each began before the other ended
        keys = [o["Key"] for o in storage.boto3_client().list_objects_v2(Bucket="draw", Prefix="jobs/")["Contents"]]
        (record_key,) = [k for k in keys if k.endswith("/best.json")]
        record = json.loads(storage.read_bytes(f"s3://draw/{record_key}"))
        assert record["trials"] == 2 and storage.exists(checkpoint.checkpoint_file(record["checkpoint"]))
        assert checkpoint.load_model(record["checkpoint"])[0].image_shape == (1, 28, 28)  # --source mnist
        assert "/tune-mnist-smoke-" in record_key



TWO_RUNS = """
import sys
from draw_service.data.config import DataConfig
from draw_service.model import DRAWConfig
from draw_service.ray_cluster import connect
from draw_service.tracking import TrackingConfig
from draw_service.train.config import RayConfig, TrainConfig
from draw_service.train.on_ray import fit

connect(num_cpus=1)
for name in ("first", "second"):  # the second needs the CPU the first held: it waits if it is not freed
    cfg = TrainConfig(model=DRAWConfig(T=2, enc_size=8, dec_size=8, z_size=2, read_n=2, write_n=3, likelihood="auto"),
                      data=DataConfig(dataset="mnist", train_limit=200, test_limit=20),
                      tracking=TrackingConfig(wandb=False), ray=RayConfig(num_workers=1, max_failures=0),
                      out=sys.argv[1] + "/" + name, batch_size=20, steps=2, quiet=True)
    print(name, fit(cfg)["step"], flush=True)
"""


def test_the_product_finds_its_own_cluster(ray_cluster, tmp_path):
    """Two Ray Train runs in a row on a cluster the product starts, while another Ray instance is up (this
    test session's) and a dead cluster's address is left in Ray's temp folder (what a `ray start` head killed
    without `ray stop` leaves): each run frees what it held, so the second one starts. Either situation
    alone used to leave the first run's resources held and the second waiting forever."""
    from ray._private.utils import get_ray_address_file

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    assert ray_cluster.is_initialized()  # the other instance
    Path(get_ray_address_file(None)).write_text("127.0.0.1:1")  # the dead one's address
    try:
        run = subprocess.run([sys.executable, "-c", TWO_RUNS, str(tmp_path)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=400)
    finally:
        point_ray_address_file_here()
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "first 2" in run.stdout and "second 2" in run.stdout


# Passed 4 times of 5 on a 2-core AMD EPYC VM (2026-12-07); in the fifth, a fresh-clone suite run, the resubmitted
# search's unfinished trial did not report within 300 s after `ray job stop` (docs/many-nodes.md). Out of the
# default run until that is understood; `pytest -m quarantine` runs it, and prints the cluster's state if it hangs.
@pytest.mark.quarantine
def test_a_search_whose_driver_is_stopped_or_killed_resumes_where_it_was(svhn_root, tmp_path):
    """The smoke search as a job on a 1-CPU head, its driver ended twice mid-search: once by `ray job stop`
    (SIGTERM), once killed outright (SIGKILL, as a head pod's restart does). Each time the same submission
    again (same --name) resumes it: the trials that had finished are not rerun, the one that had a
    checkpoint continues from it, and one best record comes out at the end."""
    import signal
    import time

    from ray_heads import cluster_report, job_info, job_logs, job_status
    from ray_runs import wait_for

    store = tmp_path / "storage"
    search = store / "resumed"
    env = head_env()
    env.pop("DRAW_DATA_ROOT", None)
    steps = 120

    def submit(head, job: str) -> None:
        words = [RAY, "job", "submit", "--no-wait", "--submission-id", job, "--address", head.address,
                 "--runtime-env-json", json.dumps({"env_vars": {"DRAW_DATA_ROOT": str(svhn_root)}}), "--",
                 "python", "jobs/tune_svhn.py", "--smoke", "--trials", "3", "--max-concurrent", "1",
                 "--steps", str(steps), "--eval-every", "10", "--grace-reports", str(steps // 10),
                 "--name", "resumed", "--storage", str(store)]
        assert subprocess.run(words, cwd=REPO, env=head.env, capture_output=True, timeout=120).returncode == 0

    def trials() -> dict[str, dict[int, dict]]:
        """Each trial's reports so far: trial id → {step: report}."""
        return {d.name: {int(f.stem): json.loads(f.read_text()) for f in (d / "metrics").glob("*.json")}
                for d in sorted((search / "trials").glob("*")) if (d / "metrics").is_dir()}

    def finished_and_one_checkpointed(n_finished: int):
        now = trials()
        done = [t for t, r in now.items() if max(r, default=0) == steps]
        going = [t for t, r in now.items() if t not in done and len(list((search / "trials" / t).glob(
            "checkpoint_*"))) >= 2]
        return (done, going[0]) if len(done) >= n_finished and going else None

    def ended(head, job: str) -> str:
        return wait_for(lambda: (s := job_status(head, job)) in ("STOPPED", "FAILED", "SUCCEEDED") and s, 120,
                        f"job {job} to end")

    with ray_head(env, lambda gcs: ["--num-cpus=1"]) as head:
        submit(head, "first")
        for job, nxt, ending, n_finished in (("first", "second", "stop", 1), ("second", "third", "kill", 2)):
            done, going = wait_for(lambda n=n_finished: finished_and_one_checkpointed(n), 300,
                                   f"{n_finished} trial(s) finished and another checkpointed",
                                   alive=lambda j=job: job_status(head, j) in ("", "PENDING", "RUNNING"), every=0.5)
            if ending == "stop":
                subprocess.run([RAY, "job", "stop", "--address", head.address, job], env=head.env,
                               capture_output=True, timeout=120)
            else:
                os.kill(int(job_info(head, job)["driver_info"]["pid"]), signal.SIGKILL)
            status = ended(head, job)
            time.sleep(1)  # (a report already on its way lands; the state below is what the next run finds)
            before = trials()
            print(f"\njob {job}: driver ended by {ending}, job {status}; trials' last steps: "
                  f"{ {t: max(r) for t, r in before.items()} } (finished: {done}, with a checkpoint: {going})")
            assert status in ("STOPPED", "FAILED"), job_logs(head, job)[-3000:]
            assert not (search / "best.json").exists()
            # the same submission again: the finished trials are left as they are, the checkpointed one goes on
            submit(head, nxt)
            last = max(before[going])
            wait_for(lambda t=going, b=last: max(trials().get(t) or {0: {}}) > b, 300,
                     f"trial {going} to report again", every=0.5, explain=lambda j=nxt: cluster_report(head, j))
            resumed = {s: r for s, r in trials()[going].items() if s > max(before[going])}
            print(f"job {nxt}: trial {going} reports again from step {min(resumed)}, resumed_from "
                  f"{resumed[min(resumed)]['resumed_from']}")
            assert all(0 < r["resumed_from"] <= max(before[going]) for r in resumed.values()), resumed
            for t in done:
                assert trials()[t] == before[t], t  # not one report more: not rerun
        assert ended(head, "third") == "SUCCEEDED", job_logs(head, "third")[-3000:]
        final = trials()
        record = json.loads((search / "best.json").read_text())
        print(f"job third: trials' last steps {({t: max(r) for t, r in final.items()})}; best record: trial "
              f"{record['trial_id']}, {record['metric']} {record['value']:.4f}, {record['trials']} trials")
        assert record["trials"] == 3 and len(final) == 3 and all(max(r) == steps for r in final.values()), final
        assert record["trial_id"] in final
