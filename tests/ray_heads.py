"""A Ray cluster of a test's own, started as a user starts one (`ray start --head` on free ports, with a
token of its own) and stopped by its process group: never `ray stop`, which would end every Ray on the machine,
this test session's included."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from conftest import point_ray_address_file_here

from devtools.s3_server import free_port_pairs

RAY = str(Path(sys.executable).parent / "ray")


@dataclass
class Head:
    address: str  # the dashboard's, for `ray job submit --address` and the state API
    gcs: str  # host:port of its GCS
    env: dict[str, str]  # what a process talking to it needs (its token above all)
    pid: int


def head_env(**extra: str) -> dict[str, str]:
    """This process's environment with token authentication of its own (a machine without ~/.ray/auth_token
    has none to find) and no pointer to another cluster."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


@contextmanager
def ray_head(env: dict[str, str], args: Callable[[str], list[str]] = lambda gcs: [],
             timeout: float = 90) -> Iterator[Head]:
    """`ray start --head --block` with `args(gcs_address)` added; the head is up (its job API answers) when
    this yields, and its whole process group (raylet, GCS, autoscaler and the nodes it started) ends after."""
    ports = free_port_pairs(8)
    gcs = f"127.0.0.1:{ports[0]}"
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={ports[0]}", f"--dashboard-port={ports[1]}",
         f"--ray-client-server-port={ports[2]}", f"--dashboard-agent-listen-port={ports[3]}",
         f"--dashboard-agent-grpc-port={ports[4]}", f"--runtime-env-agent-port={ports[5]}",
         f"--metrics-export-port={ports[6]}", f"--min-worker-port={ports[7]}", f"--max-worker-port={ports[7] + 200}",
         "--include-dashboard=true", "--disable-usage-stats", *args(gcs)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{ports[1]}"
    try:
        deadline = time.monotonic() + timeout
        while subprocess.run([RAY, "job", "list", "--address", address], env=env,
                             capture_output=True).returncode != 0:
            assert time.monotonic() < deadline and head.poll() is None, "the Ray head did not come up"
            time.sleep(1)
        yield Head(address, gcs, env, head.pid)
    finally:
        try:
            os.killpg(head.pid, signal.SIGTERM)
        except ProcessLookupError:  # it ended by itself (a head that did not come up)
            pass
        try:
            head.wait(15)
        except subprocess.TimeoutExpired:
            pass
        try:  # what ignored the TERM (a raylet the autoscaler started, say) goes now
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait()
        # `ray start` pointed Ray's address file at this head: point it back at the session's cluster
        from ray._private.utils import get_ray_address_file

        Path(get_ray_address_file(None)).unlink(missing_ok=True)
        point_ray_address_file_here()


def job_info(head: Head, job: str) -> dict:
    """A submitted job's details from the job API, as `ray job status` asks them (status, driver_info...);
    {} while the head is too busy to say (a loaded 2-core machine takes tens of seconds)."""
    try:
        answer = requests.get(f"{head.address}/api/jobs/{job}", timeout=30,
                              headers={"Authorization": f"Bearer {head.env['RAY_AUTH_TOKEN']}"})
        return answer.json() if answer.ok else {}
    except (requests.RequestException, ValueError):
        return {}


def job_status(head: Head, job: str) -> str:
    """PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED; "" while unknown."""
    return job_info(head, job).get("status") or ""


def job_logs(head: Head, job: str) -> str:
    return subprocess.run([RAY, "job", "logs", "--address", head.address, job], env=head.env,
                          capture_output=True, text=True, timeout=60).stdout


def autoscaler_status(head: Head) -> str:
    """`ray status -v`: the autoscaler's nodes, pending launches and what is asked of it."""
    try:
        status = subprocess.run([RAY, "status", "-v", "--address", head.gcs], env=head.env, capture_output=True,
                                text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "(ray status did not answer within 60 s)"
    return status.stdout + status.stderr[-500:]


def cluster_report(head: Head, job: str | None = None) -> str:
    """What a person would look at when a run on this head hangs: `ray status`, every actor with its node and
    state, and the job's last log lines."""
    actors = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom ray.util.state import list_actors\n"
         "for a in list_actors(address=sys.argv[1], limit=1000, raise_on_missing_output=False):\n"
         "    print(a.state, a.class_name, a.node_id and a.node_id[:8], a.name or '')", head.address],
        env=head.env, capture_output=True, text=True, timeout=60)
    logs = job_logs(head, job)[-4000:] if job else ""
    return (f"--- ray status\n{autoscaler_status(head)[-3500:]}\n--- actors\n{actors.stdout}"
            f"{actors.stderr[-500:]}\n--- job log\n{logs}")
