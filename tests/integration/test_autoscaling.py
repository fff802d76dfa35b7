"""Autoscaling as `cluster/kuberay/rayjob.yaml` promises it, on Ray's fake multi-node autoscaler: a head
without CPUs, worker nodes of 1 CPU from 0 to 4 that the autoscaler starts as real raylets on this machine and
ends when they have been idle for 30 s. The head is this test's own, stopped by its process group."""

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from ray_heads import RAY, autoscaler_status, cluster_report, head_env, job_logs, job_status, ray_head
from ray_runs import wait_for
from wandb_records import lifetime, most_at_once

from draw_service import checkpoint, storage

REPO = Path(__file__).resolve().parents[2]
WATCH = Path(__file__).resolve().parents[1] / "cluster_watch.py"
MAX_NODES = 4


def autoscaling_config(gcs: str) -> dict:
    """The fake provider's cluster config (the shape of Ray's fake_multi_node/example.yaml)."""
    return {
        "cluster_name": "draw-autoscaling-test", "max_workers": MAX_NODES, "upscaling_speed": 1.0,
        # Idle for 30 s: a node the autoscaler has just started sits idle until a trial's worker is placed on it,
        # which a loaded 2-core machine can take tens of seconds to do; a shorter timeout ends it first and
        # starts another, again and again (ray-project/ray#50783).
        "idle_timeout_minutes": 0.5,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": gcs},
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "cpu-1": {"resources": {"CPU": 1, "object_store_memory": 100 * 1024**2}, "node_config": {},
                      "min_workers": 0, "max_workers": MAX_NODES},
        },
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


class Watch:
    """`cluster_watch.py` running beside a test: nodes alive and Ray Train workers, once a second."""

    def __init__(self, head, log: Path):
        self.log = log
        self.proc = subprocess.Popen([sys.executable, str(WATCH), head.address], env=head.env,
                                     stdout=log.open("w"), stderr=subprocess.DEVNULL)

    def samples(self) -> list[dict]:
        return [s for s in map(json.loads, self.log.read_text().splitlines()) if "nodes" in s]

    def peak(self, key: str) -> int:
        return max((s[key] for s in self.samples()), default=0)

    def now(self, key: str) -> int | None:
        samples = self.samples()
        return samples[-1][key] if samples else None

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def autoscaling_head(tmp_path_factory):
    env = head_env(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
    env.pop("DRAW_DATA_ROOT", None)  # not on the nodes: a job is told where its data is
    config = tmp_path_factory.mktemp("autoscaling") / "cluster.json"

    def args(gcs: str) -> list[str]:
        config.write_text(json.dumps(autoscaling_config(gcs)))
        return ["--num-cpus=0", f"--autoscaling-config={config}"]

    with ray_head(env, args) as head:
        yield head


@pytest.mark.timeout(900)  # the search (about 80 s here), then the nodes' idle timeout
def test_a_search_scaling_from_zero_adds_nodes_runs_trials_side_by_side_and_lets_them_go(
        autoscaling_head, svhn_root, tmp_path):
    head = autoscaling_head
    watch = Watch(head, tmp_path / "watch.jsonl")
    try:
        wait_for(lambda: watch.now("nodes") == 1, 60, "the head alone, before the search")
        storage_root = tmp_path / "storage"
        job = f"autoscaled-{uuid.uuid4().hex[:8]}"
        submit = subprocess.run(
            # No --working-dir: the fake nodes share the head's session folder on this machine, and a node the
            # autoscaler ends deletes the uploaded package that the job's driver and workers run in. The
            # checkout itself is on every (fake) node.
            [RAY, "job", "submit", "--no-wait", "--submission-id", job, "--address", head.address,
             "--runtime-env-json", json.dumps({"env_vars": {"DRAW_DATA_ROOT": str(svhn_root)}}), "--",
             "python", str(REPO / "jobs" / "tune_svhn.py"), "--smoke", "--trials", "4", "--max-concurrent", "4",
             "--grace-reports", "4",  # every trial runs to its end: four side by side
             "--name", "autoscaled", "--storage", str(storage_root)],
            cwd=REPO, env=head.env, capture_output=True, text=True, timeout=60)
        assert submit.returncode == 0, submit.stderr[-2000:]
        status = wait_for(lambda: (word := job_status(head, job)) in ("SUCCEEDED", "FAILED", "STOPPED") and word,
                          360, "the search to end", every=2, explain=lambda: cluster_report(head, job))
        log = job_logs(head, job)
        (tmp_path / "job.log").write_text(log)
        print(log[-3000:])
        print(cluster_report(head, job))
        assert status == "SUCCEEDED", log[-3000:]
        peak_nodes = watch.peak("nodes")
        # Every trial's Train run withdrew its request for nodes as it ended (a request left behind lives 180 s
        # and keeps its nodes up: tune/trial_signals.py); the autoscaler's status says what is still asked for.
        wait_for(lambda: "Node status" in (now := autoscaler_status(head)) and "from request_resources()" not in now,
                 60, "the trials' requests for nodes to be withdrawn", every=1, explain=lambda: cluster_report(head))
        wait_for(lambda: watch.now("nodes") == 1, 330, "the idle worker nodes to be released", every=1,
                 explain=lambda: cluster_report(head))
        released = watch.samples()[-1]
    finally:
        watch.stop()
    timeline = [(round(s["t"] - watch.samples()[0]["t"]), s["nodes"], s["workers"]) for s in watch.samples()]
    print("seconds, nodes alive, Ray Train workers:", timeline)
    assert released["nodes"] == 1 and released["workers"] == 0, released  # the head alone again
    assert peak_nodes > 3, f"the autoscaler added {peak_nodes - 1} nodes; timeline {timeline}"
    assert peak_nodes <= MAX_NODES + 1, timeline
    # side by side, from what the trials recorded: each trial's W&B run, its start and its last row
    lives = {name: (start, end) for name, start, end in map(lifetime, (storage_root / "autoscaled").rglob("*.wandb"))}
    first = min(start for start, _ in lives.values())
    print("the trials' W&B runs, s from the first start:",
          {t: (round(a - first, 1), round(b - first, 1)) for t, (a, b) in lives.items()})
    assert len(lives) == 4 and most_at_once(list(lives.values())) >= 3, lives
    record = json.loads((storage_root / "autoscaled" / "best.json").read_text())
    assert record["trials"] == 4, record
    assert storage.exists(checkpoint.checkpoint_file(record["checkpoint"])), record
