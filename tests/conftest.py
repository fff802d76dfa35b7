"""Shared fixtures. The S3 server and the Ray cluster are real and start once per test session."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

# The offline datasets beside the clone (as on CI machines), when nobody said otherwise; the Makefile does the same.
_SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
if "DRAW_DATA_ROOT" not in os.environ and _SHARED.is_dir():
    os.environ["DRAW_DATA_ROOT"] = str(_SHARED)
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
# Ray Train's controller looks at its workers every 2 s and for drained nodes every 5 s: a run of a few
# seconds would spend most of its time waiting to be noticed. (Ray passes these on to its controllers.)
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
os.environ.setdefault("RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S", "1")
# Ray Serve gives a starting HTTP proxy 5 s to say it is ready (then 10, 15, ...) and kills it each time it
# is late: on a slow or busy CPU (half a core: `devtools/slow-ci`) no proxy ever comes up in time. These
# are hang guards, not speed targets.
os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "120")
os.environ.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "120")


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST from DRAW_DATA_ROOT (CI points it at ../shared/datasets)."""
    from draw_service.data.sources import load_source

    return load_source("mnist")


@pytest.fixture(scope="session")
def s3():
    """A SeaweedFS S3 server on free loopback ports, with bucket `draw`; its settings are in os.environ
    (before Ray starts, so Ray's workers inherit the credentials as they would from a node's environment)."""
    from devtools.s3_server import SeaweedS3

    server = SeaweedS3(bucket="draw").start()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    yield server
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


SERVE_TOKEN = f"draw-serve-token-{uuid.uuid4().hex}"  # distinctive: no file the suite leaves may hold it


@pytest.fixture(scope="session")
def serve_token():
    return SERVE_TOKEN


_NODES: dict = {}  # the session cluster's ray.cluster_utils.Cluster, for tests that add and remove nodes


@pytest.fixture(scope="session")
def ray_cluster(s3):
    """One local Ray cluster for the whole session: a head node of 4 logical CPUs and a small object store,
    started with `ray.cluster_utils.Cluster` so that tests about nodes can add and remove real raylets
    (the `node_pool` fixture). Its processes have the S3 credentials and a Serve bearer token in their
    environment, as a cluster's nodes have them from a Secret."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ.pop("RAY_ADDRESS", None)
    os.environ["DRAW_SERVE_TOKEN"] = SERVE_TOKEN
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 4, "object_store_memory": 200 * 1024**2, "include_dashboard": True})
    ray.init(address=cluster.address, log_to_driver=False)
    point_ray_address_file_here()
    _NODES["cluster"] = cluster
    yield ray
    ray.shutdown()
    cluster.shutdown()
    from ray._private.utils import get_ray_address_file

    Path(get_ray_address_file(None)).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def cluster_nodes(ray_cluster):
    """The session cluster as `ray.cluster_utils.Cluster`: `add_node`, `remove_node`."""
    return _NODES["cluster"]


@pytest.fixture
def node_pool(cluster_nodes):
    """Nodes the test adds (`.add()`) and takes away (`.remove(node)`); whatever is left is removed after."""
    from ray_runs import NodePool

    pool = NodePool(cluster_nodes)
    yield pool
    pool.remove_all()
    point_ray_address_file_here()


def point_ray_address_file_here() -> None:
    """Ray's state API, used inside Ray Train's own actors, finds "the" cluster through a file that
    `ray start` writes (and a killed head leaves behind); point it at this session's cluster, as Ray's
    own test utilities (ray.cluster_utils) do."""
    import ray
    from ray._private.utils import write_ray_address

    if ray.is_initialized():
        write_ray_address(ray.get_runtime_context().gcs_address)


@pytest.fixture(scope="session")
def mnist_s3(s3, tmp_path_factory):
    """A slice of real MNIST prepared into the S3 server: 2,000 train and 500 test images."""
    from draw_service.data import shards

    uri = "s3://draw/datasets/mnist-small"
    shards.prepare_source("mnist", uri, train_limit=2000, test_limit=500, shard_size=500, progress=False)
    return uri


@pytest.fixture(scope="session")
def svhn_root(tmp_path_factory, mnist):
    """SVHN as its .mat files (SVHN itself cannot be had here: MNIST digits in SVHN's format)."""
    from svhn_files import write_svhn_mat

    return write_svhn_mat(tmp_path_factory.mktemp("svhn-root"), mnist)


def pytest_collection_modifyitems(items):
    """Everything under tests/integration/ is an integration test: `pytest -m "not integration"` runs the
    fast unit tests alone. Tests marked `last` run after all others (they check what the others left)."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
