"""Replicas that follow the load, on several nodes: `draw-service serve --min-replicas 1 --max-replicas 2` on
the session cluster with two 1-CPU worker nodes added (real raylets), loaded until Serve scales up, then left
idle until it scales down. Proven from what Serve and Ray recorded (the deployment's replica counts over
time, the nodes its replicas ran on), never from how long anything took."""

import threading
import time

import requests
import torch
from ray_runs import POOL_RESOURCE, wait_for
from tiny import tiny

from devtools.s3_server import free_port_pairs
from draw_service import checkpoint
from draw_service.model import DRAW
from draw_service.serve.config import ServeConfig, ServeSettings
from draw_service.serve.launch import deploy, shutdown

APP = "scaling"


class Recorder(threading.Thread):
    """Serve's own view of the deployment, read again and again: (reading, running replicas, their nodes)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.readings: list[tuple[int, int, frozenset]] = []
        self.stop = threading.Event()

    def run(self):
        from ray import serve
        from ray.util.state import list_actors

        while not self.stop.is_set():
            status = serve.status().applications.get(APP)
            states = status.deployments["DRAWService"].replica_states if status else {}
            actors = list_actors(filters=[("class_name", "=", f"ServeReplica:{APP}:DRAWService"),
                                          ("state", "=", "ALIVE")], raise_on_missing_output=False)
            self.readings.append((len(self.readings), states.get("RUNNING", 0),
                                  frozenset(a["node_id"] for a in actors)))
            time.sleep(0.5)

    def running(self) -> int:
        return self.readings[-1][1] if self.readings else 0


def test_replicas_follow_the_load_onto_a_second_node_and_back(node_pool, serve_token, tmp_path):
    from ray import serve

    nodes = {node_pool.add().node_id, node_pool.add().node_id}
    torch.manual_seed(0)
    ckpt = checkpoint.save(checkpoint.build_state(DRAW(tiny(T=4), (1, 8, 8)), None, 1, {}, {}),
                           str(tmp_path / "checkpoint_0000001"))
    url = deploy(ServeConfig(checkpoint=ckpt, port=free_port_pairs(1)[0], min_replicas=1, max_replicas=2,
                             target_ongoing_requests=2, upscale_delay_s=0, downscale_delay_s=2,
                             replica_resources=f"{POOL_RESOURCE}=1", app_name=APP, max_ongoing_requests=8,
                             settings=ServeSettings(max_batch_size=4, batch_wait_timeout_s=0.05)))
    recorder = Recorder()
    recorder.start()
    answered, failed, stop = [], [], threading.Event()

    def client():
        with requests.Session() as http:
            http.headers["Authorization"] = f"Bearer {serve_token}"
            while not stop.is_set():
                r = http.post(f"{url}/sample", json={"n": 4, "seed": 1}, timeout=120)
                (answered if r.status_code == 200 else failed).append(r.status_code)

    clients = [threading.Thread(target=client, daemon=True) for _ in range(12)]
    try:
        for c in clients:
            c.start()
        wait_for(lambda: recorder.running() == 2, 300, "Serve to run a second replica under load", every=0.5)
        at_peak = len(recorder.readings)
        stop.set()
        for c in clients:
            c.join(timeout=180)
        wait_for(lambda: recorder.running() == 1, 300, "Serve to go back to one replica once idle", every=0.5)
    finally:
        stop.set()
        recorder.stop.set()
        recorder.join(timeout=30)
        shutdown(APP)
        serve.shutdown()
    counts = [running for _, running, _ in recorder.readings]
    changes = [counts[0]] + [b for a, b in zip(counts, counts[1:]) if b != a]
    print(f"\nreplicas over time ({len(counts)} readings, every 0.5 s): changes {changes}; "
          f"{len(answered)} requests answered, {len(failed)} failed")
    assert failed == [], failed[:10]
    assert 1 in counts[:at_peak] and max(counts) == 2 and counts[-1] == 1
    assert changes.index(2) < len(changes) - 1 - changes[::-1].index(1)  # up to 2, then back to 1
    # the two replicas ran on the two pool nodes, one each (none on the head)
    spread = [placed for _, running, placed in recorder.readings if running == 2 and len(placed) == 2]
    assert spread and spread[0] == nodes, (spread[:1], nodes)
