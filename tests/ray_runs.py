"""Ray runs seen from a test: nodes added to the session cluster and taken away, a run's checkpoints on the
suite's S3 server and what Ray registered of them."""

import json
import time

from draw_service import storage


def checkpoints_in(prefix: str) -> list[str]:
    """The checkpoint folders under `prefix` in the bucket `draw`."""
    resp = storage.boto3_client().list_objects_v2(Bucket="draw", Prefix=prefix)
    names = {k["Key"][len(prefix):].split("/")[0] for k in resp.get("Contents", [])}
    return sorted(n for n in names if n.startswith("checkpoint_") and not n.endswith(".json"))


def registered_step(run_path: str) -> int:
    """The step of the latest checkpoint Ray's controller has registered for a run (0 if none)."""
    try:
        snapshot = json.loads(storage.read_bytes(f"s3://{run_path}/checkpoint_manager_snapshot.json"))
    except FileNotFoundError:
        return 0
    latest = snapshot.get("latest_checkpoint_result") or {}
    return int(latest.get("checkpoint_dir_name", "checkpoint_0").split("_")[1])


def wait_for(condition, timeout: float, what: str, alive=None, every: float = 0.2, explain=lambda: ""):
    """Poll `condition()` until it is true; fail naming `what` after `timeout` s or when `alive()` turns false,
    with what `explain()` says then (the state a failure in CI is read from)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}\n{explain()}"
        assert alive is None or alive(), f"the run ended before {what}"
        time.sleep(every)
    return value


def train_workers_on(node_id: str) -> list:
    """Ray Train's live worker actors on a node."""
    from ray.util.state import list_actors

    return list_actors(filters=[("node_id", "=", node_id), ("state", "=", "ALIVE"),
                                ("class_name", "=", "RayTrainWorker")], raise_on_missing_output=False)


POOL_RESOURCE = "draw_test_pool"  # a custom resource only the worker nodes a test adds have


class NodePool:
    """Worker nodes a test adds to the session cluster: real raylets with 1 CPU and 1 POOL_RESOURCE (runs
    with `--worker-resources draw_test_pool=1` land only on them, one worker per node)."""

    def __init__(self, cluster):
        self.cluster, self.nodes = cluster, []

    def add(self):
        node = self.cluster.add_node(num_cpus=1, object_store_memory=80 * 1024**2, resources={POOL_RESOURCE: 1})
        self.nodes.append(node)
        return node

    def remove(self, node, preempted: bool = True, notice_s: int = 0) -> None:
        """Take a node away; `preempted` first drains it as a spot provider does (Ray counts what follows as
        a preemption, not a failure), `notice_s` seconds before the node goes.

        Ray Train ends a run's workers on a drained node when the drain's deadline passes, and restarts the run
        from its checkpoint. The node is taken away once they have gone, as a provider's reclaim lands a moment
        after the deadline it announced: were it to vanish first, a surviving worker's broken all-reduce could
        reach Ray's controller before the news of the lost node, and be counted as a failure (a race inside
        Ray 2.60 that a slow CI machine loses)."""
        import time

        import ray
        from ray.core.generated import autoscaler_pb2

        if preempted:
            gcs = ray._raylet.GcsClient(address=self.cluster.address)
            deadline_ms = int((time.time() + max(notice_s, 1)) * 1000)
            accepted, why = gcs.drain_node(node.node_id, autoscaler_pb2.DrainNodeReason.Value(
                "DRAIN_NODE_REASON_PREEMPTION"), "spot instance reclaimed (test)", deadline_ms)
            assert accepted, why
            time.sleep(notice_s)
            wait_for(lambda: not train_workers_on(node.node_id), 60, "Ray Train to end its workers on the "
                     "drained node after the deadline", every=0.5)
        self.cluster.remove_node(node, allow_graceful=False)
        self.nodes.remove(node)

    def remove_all(self) -> None:
        for node in list(self.nodes):
            self.remove(node, preempted=False)
