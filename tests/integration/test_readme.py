"""The README's first commands, "A model of your own in three minutes", run as written in a fresh folder:
train a quick model, sample from its run folder, serve it beside the shipped models until Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image
from readme import readme_lines

from devtools.s3_server import free_port_pairs

FEW_STEPS = ["--steps", "30", "--test-limit", "200"]  # the suite's only change: the whole run takes 3 minutes


def test_the_readmes_quick_start_runs_as_written(tmp_path):
    lines = readme_lines("A model of your own in three minutes")
    assert lines[0] == "source .venv/bin/activate" and lines[1].startswith("draw-service train --preset quick")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])  # the clone's venv, where the README is run
    # a machine as a newcomer has it: no cluster to join (it starts one), no serving token set
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "DRAW_SERVE_TOKEN")}
    first = [lines[0], lines[1] + " " + " ".join(FEW_STEPS), *lines[2:-1]]
    run = subprocess.run(["bash", "-ec", "\n".join(first)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "runs/quick is a run folder: using its newest checkpoint" in run.stderr  # said in one line
    trained = json.loads(run.stdout[:run.stdout.index("}\n") + 1])
    assert trained["step"] == 30 and np.isfinite(trained["nll_bound"])
    assert Image.open(tmp_path / "digits.png").size[0] > 8 * 28 and (tmp_path / "drawing.gif").stat().st_size > 0

    serve = lines[-1]
    assert serve.startswith("draw-service serve --checkpoint runs/quick")
    port = free_port_pairs(1)[0]  # not 8000: this machine may serve something there
    server = subprocess.Popen(["bash", "-c", f"{lines[0]} && exec {serve} --port {port}"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              start_new_session=True)
    try:
        url = json.loads(server.stdout.readline())["url"]  # printed once it serves
        answer = requests.get(f"{url}/models", timeout=30)
        assert answer.status_code == 200, answer.text[:300]
        offered = answer.json()
        assert offered["default"] == "quick" and "mnist-attention" in [m["name"] for m in offered["models"]]
        grid = requests.post(f"{url}/sample", json={"n": 4, "seed": 1}, timeout=60)
        assert grid.status_code == 200 and np.asarray(grid.json()["images"]).shape == (4, 1, 28, 28)
        assert "draw-service" in requests.get(url + "/", timeout=30).text  # the page
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C
        assert server.wait(timeout=120) == 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        time.sleep(1)
        try:
            os.killpg(server.pid, signal.SIGKILL)  # whatever of its local Ray cluster is left
        except ProcessLookupError:
            pass
