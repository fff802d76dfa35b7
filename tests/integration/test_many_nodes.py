"""Training on several Ray nodes: real raylets added to the session cluster and taken away mid-run
(`ray.cluster_utils.Cluster`), data and checkpoints on the S3 server.

Every run here places its workers with `--worker-resources draw_test_pool=1`, so they land only on the
1-CPU nodes a test adds (`node_pool`), one worker per node."""

import json
import threading

import pytest
import torch
from ray_runs import POOL_RESOURCE, NodePool, checkpoints_in, registered_step, wait_for

from draw_service import checkpoint, storage
from draw_service.data.config import DataConfig
from draw_service.model import DRAWConfig
from draw_service.tracking import TrackingConfig
from draw_service.train.config import RayConfig, TrainConfig
from draw_service.train.on_ray import fit

POOL = f"{POOL_RESOURCE}=1"
MODEL = DRAWConfig(T=8, enc_size=64, dec_size=64, z_size=8, read_n=2, write_n=3, likelihood="auto")
STEPS, EVERY = 240, 40
ELASTIC_STEPS = 1000
NOTICE_S = 3  # a spot provider's warning before the node goes (Ray Train polls for drains every 1 s here)


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch):
    """Ray Train waits 60 s for a worker group that cannot be placed (its view of the nodes lags a removal
    by a moment) before it tries a smaller one; a test cluster's nodes start in seconds."""
    monkeypatch.setenv("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "10")


def config(dataset, out, workers=2, **ray):
    return TrainConfig(model=MODEL, data=DataConfig(dataset=dataset), tracking=TrackingConfig(wandb=False),
                       ray=RayConfig(num_workers=workers, worker_resources=POOL, **ray), out=out, batch_size=40,
                       steps=STEPS, eval_every=EVERY, keep_checkpoints=100, quiet=True)


def in_background(cfg):
    """fit(cfg) on a thread: (thread, outcome dict that gets "result" or "error")."""
    return in_background_call(fit, cfg)


def in_background_call(run_it, cfg):
    outcome = {}

    def run():
        try:
            outcome["result"] = run_it(cfg)
        except Exception as err:  # noqa: BLE001  (the test asserts on it)
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def reports(out):
    """Every report the run's rank 0 wrote: step → metrics."""
    folder = f"{out}/metrics"
    return {int(n.split(".")[0]): json.loads(storage.read_bytes(f"{folder}/{n}")) for n in storage.list_dir(folder)}


def final_weights(out):
    state = checkpoint.load(f"{out}/checkpoint_{STEPS:07d}")
    assert state["step"] == STEPS
    return state["model"]


@pytest.fixture(scope="module")
def uninterrupted(cluster_nodes, mnist_s3):
    """The reference run: 2 workers on 2 nodes, nothing taken away."""
    pool = NodePool(cluster_nodes)
    nodes = [pool.add(), pool.add()]
    out = "s3://draw/runs/nodes-uninterrupted"
    try:
        result = fit(config(mnist_s3, out))
    finally:
        pool.remove_all()
    return {"out": out, "result": result, "node_ids": [n.node_id[:12] for n in nodes]}


def test_ddp_across_two_nodes_reads_s3_and_checkpoints_to_it(uninterrupted):
    result, out = uninterrupted["result"], uninterrupted["out"]
    placed = result["worker_nodes"].split(",")
    print(f"\nnode placement: rank 0 on node {placed[0]}, rank 1 on node {placed[1]} "
          f"(the pool's nodes: {', '.join(uninterrupted['node_ids'])})")
    assert result["world_size"] == 2 and result["step"] == STEPS
    assert sorted(placed) == sorted(uninterrupted["node_ids"])  # one worker on each node, none on the head
    expected = [f"checkpoint_{s:07d}" for s in range(EVERY, STEPS + 1, EVERY)]
    assert checkpoints_in("runs/nodes-uninterrupted/") == expected
    assert result["latest_checkpoint"] == f"{out}/checkpoint_{STEPS:07d}"


def test_a_preempted_node_replaced_mid_run_ends_bit_for_bit_as_the_uninterrupted_run(uninterrupted, node_pool,
                                                                                    mnist_s3):
    """A spot node reclaimed after a checkpoint (drained, then gone) and a new node joining: the run ends at
    its last step with the very weights of the run nothing happened to. No failures are allowed
    (--max-failures 0): a preemption is not a failure."""
    nodes = [node_pool.add(), node_pool.add()]
    out = "s3://draw/runs/nodes-preempted"
    thread, outcome = in_background(config(mnist_s3, out, max_failures=0))
    wait_for(lambda: registered_step("draw/runs/nodes-preempted") >= EVERY, 240, "the first checkpoint",
             alive=thread.is_alive)
    at = registered_step("draw/runs/nodes-preempted")
    node_pool.remove(nodes[1], preempted=True, notice_s=NOTICE_S)
    node_pool.add()  # the replacement
    thread.join(timeout=400)
    assert not thread.is_alive() and "error" not in outcome, outcome
    result = outcome["result"]
    jit = [c for c in checkpoints_in("runs/nodes-preempted/") if int(c.split("_")[1]) % EVERY]
    print(f"\npreemption: node {nodes[1].node_id[:12]} drained ({NOTICE_S} s notice) and removed with checkpoint "
          f"step {at} registered; checkpoints taken on the notice: {jit}; resumed from step {result['resumed_from']} "
          f"on nodes {result['worker_nodes']}")
    assert result["step"] == STEPS and EVERY <= result["resumed_from"] < STEPS
    ours, theirs = final_weights(out), final_weights(uninterrupted["out"])
    differ = [name for name in theirs if not torch.equal(ours[name], theirs[name])]
    print(f"bit-for-bit: {len(theirs) - len(differ)} of {len(theirs)} tensors of the final weights equal the "
          f"uninterrupted run's")
    assert not differ, differ


def look_at_the_nodes_now():
    """Ray's autoscaling coordinator, which tells an elastic run what it may grow to, looks at the cluster's
    nodes every 20 s; ask it to look now (as a caller that pins nodes does), so that the run shrinks and grows
    within seconds of a node's going or coming and can be short."""
    import ray

    coordinator = ray.get_actor("AutoscalingCoordinator", namespace="AutoscalingCoordinator")
    ray.get(coordinator.get_reserved_resources.remote("draw-test", recompute=True), timeout=30)


def test_an_elastic_run_trains_on_through_a_lost_node_and_grows_back(node_pool, mnist_s3):
    """--num-workers 1-2: a node goes and none replaces it; the run goes on with one worker from its last
    checkpoint, and grows back to two when a node joins."""
    nodes = [node_pool.add(), node_pool.add()]
    out = "s3://draw/runs/nodes-elastic"
    # (with the upload of each checkpoint on Ray's own thread)
    cfg = config(mnist_s3, out, workers=(1, 2), max_failures=0, resize_check_s=2.0,
                 checkpoint_upload="async").replace(steps=ELASTIC_STEPS)
    thread, outcome = in_background(cfg)
    wait_for(lambda: registered_step("draw/runs/nodes-elastic") >= EVERY, 240, "the first checkpoint",
             alive=thread.is_alive)
    node_pool.remove(nodes[1], preempted=True, notice_s=NOTICE_S)
    look_at_the_nodes_now()
    shrunk = wait_for(lambda: [s for s, m in reports(out).items() if m["world_size"] == 1], 240,
                      "a report from one worker", alive=thread.is_alive)
    node_pool.add()
    look_at_the_nodes_now()
    thread.join(timeout=400)
    assert not thread.is_alive() and "error" not in outcome, outcome
    sizes = {s: m["world_size"] for s, m in sorted(reports(out).items())}
    print(f"\nelastic run, world size by report step: {sizes}")
    assert outcome["result"]["step"] == ELASTIC_STEPS
    assert sizes[min(sizes)] == 2 and min(shrunk) > min(sizes)  # two workers, then one after the node went,
    assert sizes[max(sizes)] == 2  # and two again at the end


def test_a_search_whose_trials_span_two_nodes_trains_on_through_a_lost_node(node_pool, mnist_s3):
    """A search whose trials run two DDP workers each (the shape of a GPU search: several GPUs per trial),
    one after the other on two nodes; a node goes under the second trial with `--num-workers 1-2`, which goes
    on with one worker from its checkpoint, and the search ends with its best record."""
    from draw_service.tune.config import SearchConfig
    from draw_service.tune.search import run_search

    nodes = [node_pool.add(), node_pool.add()]
    pool_ids = {n.node_id[:12] for n in nodes}
    out = "s3://draw/searches/two-nodes"
    steps, every = ELASTIC_STEPS, 100  # long enough that the node goes mid-trial, whatever the machine's speed
    base = config(mnist_s3, out, workers=(1, 2), max_failures=0, resize_check_s=2.0).replace(
        steps=steps, eval_every=every, data=DataConfig(dataset=mnist_s3, validation_stride=10, test_limit=100))
    point = {"read_n": 2, "write_n": 3, "z_size": 8, "hidden": 32, "T": 4, "lr": 3e-3}
    cfg = SearchConfig(base=base, space="smoke", trials=2, max_concurrent=1, algorithm="random",
                       points_to_evaluate=[point, {**point, "lr": 4e-3}], grace_reports=steps // every)
    thread, outcome = in_background_call(run_search, cfg)

    def trials() -> list[str]:
        try:
            return sorted(storage.list_dir(f"{out}/trials"))
        except FileNotFoundError:
            return []

    def second_trial_checkpointed() -> str | None:
        registered = {t: registered_step(f"{out.removeprefix('s3://')}/trials/{t}") for t in trials()}
        later = [t for t, step in registered.items() if 0 < step < steps]
        return later[0] if steps in registered.values() and later else None

    second = wait_for(second_trial_checkpointed, 400, "the second trial's first checkpoint", alive=thread.is_alive)
    node_pool.remove(nodes[1], preempted=True, notice_s=NOTICE_S)
    look_at_the_nodes_now()
    thread.join(timeout=400)
    assert not thread.is_alive() and "error" not in outcome, str(outcome.get("error"))[-3000:]
    (first,) = [t for t in trials() if t != second]
    placed = {t: {s: (m["world_size"], m["worker_nodes"]) for s, m in sorted(reports(f"{out}/trials/{t}").items())}
              for t in (first, second)}
    print(f"\ntwo-worker trials, (world size, worker nodes) by report step: {placed}")
    best = outcome["result"]
    print(f"best record: trial {best['trial_id']}, {best['metric']} {best['value']:.4f}, {best['trials']} trials")
    # the first trial: both workers, one on each pool node, throughout
    assert all(size == 2 and set(on.split(",")) == pool_ids for size, on in placed[first].values()), placed
    # the second: two nodes, then one worker on the node that is left, to its last step
    sizes = [size for size, _ in placed[second].values()]
    assert sizes[0] == 2 and sizes[-1] == 1 and max(placed[second]) == steps, placed
    assert placed[second][max(placed[second])][1] == nodes[0].node_id[:12], placed
    assert best["trials"] == 2 and storage.exists(checkpoint.checkpoint_file(best["checkpoint"])), best
