"""Starting Ray, or joining the cluster this process belongs to: the one place that calls `ray.init`.

Every process of the cluster — Ray's own actors included — is told which cluster is its own. Ray's state
API, which Ray Train's placement-group cleaner calls from inside an actor, otherwise looks for "the"
cluster on the machine: with a second Ray instance up it fails ("Found multiple active Ray instances"),
and after a `ray start` cluster died without `ray stop` it reads the dead address that cluster left in
Ray's temp folder and times out waiting for its GCS. Either way finished trials never free their
resources and a search waits forever. So the cluster's processes get `RAY_API_SERVER_ADDRESS`, the
address of this cluster's dashboard (which serves the state API), in the job's runtime environment.
"""

from __future__ import annotations

import logging
import os
import socket

from .errors import UserError

log = logging.getLogger(__name__)

API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"  # read by Ray's state API before anything else

# Ray Serve's high-throughput mode (Ray >= 2.55), opt-in: HAProxy as each node's HTTP ingress instead of
# Serve's Python proxy, and direct gRPC from it to the replicas. Serve reads these when its controller
# starts, so they belong in the environment of the cluster's nodes (or of the shell that starts a local
# cluster). Measured on the paper's model it more than doubles the images/s served at 32 concurrent
# requests; it is not the default because HAProxy buffers request bodies itself (a 64 MiB announced body
# is waited for instead of refused) and turns a replica's dropped connection into a 500, which the
# hostile-client guarantees of `serve/guard.py` do not allow (README, "HTTP API").
SERVE_HIGH_THROUGHPUT_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


class ClusterRefused(UserError):
    """The cluster has token authentication on (every cluster this project describes has) and this process
    has no token, or another cluster's. Said in one line, without Ray's 30-line traceback, and without the
    token."""

    def __init__(self, address: str) -> None:
        given = "the token this process has is not the cluster's" if _token_given() else "this process has no token"
        super().__init__(
            f"the Ray cluster at RAY_ADDRESS={address} refused this process: it has token authentication on and "
            f"{given}; set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token "
            f"(docs/cluster.md, \"Credentials\", says where each kind of cluster keeps it)")


def _token_given() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or os.path.exists(os.path.expanduser("~/.ray/auth_token")))


def _refused(err: BaseException) -> bool:
    """Whether `err`, or anything in its chain, is the cluster refusing a missing or wrong token."""
    from ray.exceptions import AuthenticationError

    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, AuthenticationError) or "InvalidAuthToken" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def resource_pairs(text: str | None, option: str) -> dict[str, float]:
    """`NAME=AMOUNT,...` (custom Ray resources a node offers, such as a GPU type or a test's node pool) as
    Ray's dict; CPU and GPU have options of their own."""
    found: dict[str, float] = {}
    for pair in filter(None, (p.strip() for p in (text or "").split(","))):
        name, _, amount = (part.strip() for part in pair.partition("="))
        try:
            value = float(amount)
        except ValueError:
            value = 0.0
        if not name or value <= 0 or name in ("CPU", "GPU"):
            raise ValueError(f"{option} must be NAME=AMOUNT pairs (amounts > 0, not CPU or GPU: those have their "
                             f"own options) separated by commas, got {text!r}")
        found[name] = value
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """Join the cluster in RAY_ADDRESS (`auto` finds one started on this machine), or start a local one.
    `log_to_driver=False` keeps the workers' and Ray's own log lines off this process's terminal."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        from ray.dashboard.utils import get_address_for_submission_client

        try:
            api = get_address_for_submission_client(address)
            ray.init(runtime_env={"env_vars": {API_SERVER_ENV: api}}, log_to_driver=log_to_driver)
        except Exception as err:  # noqa: BLE001 - sorted below: a refusal, or a cluster out of reach
            if _refused(err):
                raise ClusterRefused(address) from None
            if ray.is_initialized():
                raise
            raise ConnectionError(f"cannot reach the Ray cluster at RAY_ADDRESS={address}: {err}") from err
        return
    port = _free_port()
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_port=port,
             runtime_env={"env_vars": {API_SERVER_ENV: f"http://127.0.0.1:{port}"}}, log_to_driver=log_to_driver)
