"""No one runs code on a cluster of ours without its token: a real `ray start --head` made as docs/cluster.md
says (a token of the cluster's own, then `RAY_AUTH_MODE=token ray start --head`), asked by a stranger, by
someone with another cluster's token, and by the token's holder."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import requests
from ray_heads import RAY, head_env, ray_head

REPO = Path(__file__).resolve().parents[2]


def test_a_cluster_started_as_the_docs_say_refuses_whoever_lacks_its_token(tmp_path):
    head_home = tmp_path / "head-home"  # the head's ~ (its ~/.ray/auth_token), not this machine's
    head_home.mkdir()
    env = head_env(HOME=str(head_home))
    del env["RAY_AUTH_TOKEN"]
    made = subprocess.run([RAY, "get-auth-token", "--generate"], env=env, capture_output=True, text=True, timeout=60)
    token = made.stdout.strip()
    assert made.returncode == 0 and len(token) >= 32, made.stderr
    assert (head_home / ".ray" / "auth_token").read_text().strip() == token

    stranger_home = tmp_path / "stranger-home"
    stranger_home.mkdir()
    stranger = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(stranger_home)}
    wrong = stranger | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex * 2}
    holder = stranger | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}

    with ray_head(env, lambda gcs: ["--num-cpus=1"]) as head:
        # the dashboard's HTTP API (what ShadowRay used): 401 without a token, 403 with another, 200 with its own
        jobs = f"{head.address}/api/jobs/"
        bearer = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
        assert requests.get(jobs, timeout=30).status_code == 401
        assert requests.get(jobs, headers=bearer(uuid.uuid4().hex), timeout=30).status_code == 403
        assert requests.get(jobs, headers=bearer(token), timeout=30).status_code == 200

        # `ray job submit`: refused without the token or with another, run with it
        def submit(who):
            r = subprocess.run([RAY, "job", "submit", "--address", head.address, "--", "python", "-c",
                                "print('the job ran')"], env=who, capture_output=True, text=True, timeout=300)
            return r.returncode, r.stdout + r.stderr

        for who, name in ((stranger, "no token"), (wrong, "another cluster's token")):
            rc, out = submit(who)
            print(f"--- ray job submit with {name}: exit {rc}, last line: {out.strip().splitlines()[-1]}")
            assert rc != 0 and "AuthenticationError" in out and "the job ran" not in out, out[-2000:]
        rc, out = submit(holder)
        print(f"--- ray job submit with the cluster's token: exit {rc}\n{out[-600:]}")
        assert rc == 0 and "the job ran" in out and "succeeded" in out, out[-2000:]

        # where the project itself joins a cluster (`draw-service serve` here): one line that says what to do,
        # and never the token
        for who in (stranger, wrong):
            r = subprocess.run([sys.executable, "-m", "draw_service.cli", "serve", "--checkpoint",
                                str(REPO / "models" / "mnist-attention"), "--port", "1"],
                               env=who | {"RAY_ADDRESS": head.gcs}, capture_output=True, text=True, timeout=300,
                               cwd=REPO)
            lines = [line for line in r.stderr.splitlines() if "error" in line.lower()]
            print("--- draw-service serve:", *lines, sep="\n")
            assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
            assert any(line.startswith("draw-service serve: error: the Ray cluster at RAY_ADDRESS=") and
                       "refused this process: it has token authentication on" in line for line in lines), lines
            assert token not in r.stdout + r.stderr
            assert "RAY_AUTH_TOKEN" not in who or who["RAY_AUTH_TOKEN"] not in r.stdout + r.stderr
    assert os.environ.get("RAY_AUTH_TOKEN") != token  # the test's own process never held it
