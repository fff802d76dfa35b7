"""Real HTTP against the Serve app on the session's local Ray cluster."""

import concurrent.futures as cf
import io
import json

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from devtools.s3_server import free_port_pairs
from draw_service import checkpoint, storage
from draw_service.cli import main
from draw_service.model import DRAW, DRAWConfig

CFG = DRAWConfig(T=5, enc_size=24, dec_size=24, z_size=6, read_n=3, write_n=4)
SHAPE = (3, 12, 16)


@pytest.fixture(scope="module")
def service(ray_cluster, s3, tmp_path_factory):
    """The service, deployed with `draw-service serve --best ... --detach` from a best record in S3."""
    torch.manual_seed(0)
    model = DRAW(CFG, SHAPE)
    ckpt = checkpoint.save(checkpoint.build_state(model, None, 123, {}, {"nll_bound": 321.5}),
                           "s3://draw/serve-test/trial-a/checkpoint_0000123")
    storage.write_bytes("s3://draw/serve-test/best.json", json.dumps(
        {"search": "s3://draw/serve-test", "trial_id": "trial-a", "metric": "nll_bound", "value": 321.5,
         "eval_split": "validation", "checkpoint": ckpt}).encode())
    port = free_port_pairs(1)[0]
    assert main(["serve", "--best", "s3://draw/serve-test/best.json", "--port", str(port), "--max-batch-size", "16",
                 "--batch-wait-timeout-s", "0.1", "--max-n", "32", "--detach"]) == 0
    yield f"http://127.0.0.1:{port}"
    from ray import serve

    serve.shutdown()


def images_of(resp):
    assert resp.status_code == 200, resp.text
    return np.asarray(resp.json()["images"], dtype=np.float32)


def test_health_info_and_docs(service):
    assert requests.get(f"{service}/healthz").json() == {"status": "ok"}
    info = requests.get(f"{service}/info").json()
    assert info["model"] == CFG.to_dict() and info["image_shape"] == list(SHAPE) and info["step"] == 123
    assert info["checkpoint"] == "s3://draw/serve-test/trial-a/checkpoint_0000123"
    assert info["search"]["value"] == 321.5 and info["settings"]["max_batch_size"] == 16
    assert requests.get(f"{service}/docs").status_code == 200
    assert "/sample" in requests.get(f"{service}/openapi.json").json()["paths"]


def test_png_and_json_decode_to_the_right_shapes(service):
    r = requests.post(f"{service}/sample", json={"n": 6, "seed": 3})
    body = r.json()
    assert body["seed"] == 3 and body["shape"] == [6, 3, 12, 16]
    x = images_of(r)
    assert x.shape == (6, 3, 12, 16) and 0 <= x.min() and x.max() <= 1
    r = requests.post(f"{service}/sample", json={"n": 6, "seed": 3}, headers={"Accept": "image/png"})
    assert r.headers["content-type"] == "image/png" and r.headers["x-seed"] == "3"
    grid = Image.open(io.BytesIO(r.content))
    assert grid.mode == "RGB" and grid.size == (2 * (2 + 3 * (16 + 2)), 2 * (2 + 2 * (12 + 2)))  # 3 × 2, scale 2
    gif = Image.open(io.BytesIO(requests.post(f"{service}/animate", json={"n": 4, "seed": 1}).content))
    assert gif.format == "GIF" and gif.n_frames == CFG.T
    unseeded = requests.post(f"{service}/sample", json={"n": 1}).json()
    assert isinstance(unseeded["seed"], int)
    # what `curl -d '{...}'` sends: a form content type (or none) on a JSON body; read as JSON all the same
    for headers in ({"Content-Type": "application/x-www-form-urlencoded"}, {}):
        r = requests.post(f"{service}/sample", data='{"n": 6, "seed": 3}', headers=headers)
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(images_of(r), x)
    r = requests.post(f"{service}/sample", data="{not json", headers={"Content-Type": "text/plain"})
    assert r.status_code == 422 and "JSON decode error" in r.text


def test_concurrent_requests_share_batches_and_seeds_reproduce(service):
    alone = images_of(requests.post(f"{service}/sample", json={"n": 3, "seed": 42, "temperature": 0.8}))
    before = requests.get(f"{service}/info").json()["stats"]

    def call(i):
        body = {"n": 3, "seed": 42, "temperature": 0.8} if i % 8 == 0 else {"n": 1 + i % 5, "seed": 1000 + i}
        return i, requests.post(f"{service}/sample", json=body)

    with cf.ThreadPoolExecutor(32) as pool:
        answers = dict(pool.map(call, range(64)))
    after = requests.get(f"{service}/info").json()["stats"]
    assert after["requests"] - before["requests"] == 64
    assert after["largest_batch"] > 1  # requests of different sizes were decoded together
    assert after["batches"] - before["batches"] < 64
    for i in range(0, 64, 8):  # the same seed gives the same images, batched or alone
        np.testing.assert_allclose(images_of(answers[i]), alone, atol=1e-4)
    assert not np.allclose(images_of(answers[1])[:1], images_of(answers[9])[:1])


@pytest.mark.parametrize("kwargs,status,message", [
    ({"json": {"n": 0}}, 422, "greater than or equal to 1"),
    ({"json": {"n": 33}}, 422, "over this deployment's limit of 32"),
    ({"json": {"n": "many"}}, 422, "valid integer"),
    ({"json": {"n": 2, "temperature": -1}}, 422, "greater than 0"),
    ({"json": {"n": 2, "format": "bmp"}}, 422, "'png' or 'json'"),
    ({"json": {"n": 2, "seed": -5}}, 422, "greater than or equal to 0"),
    ({"json": {"n": 2, "colour": "red"}}, 422, "Extra inputs"),
    ({"data": "{not json", "headers": {"Content-Type": "application/json"}}, 422, "JSON decode error"),
    ({"json": {"n": 2}, "headers": {"Accept": "text/html"}}, 406, "image/png or application/json"),
    ({"data": "1" * 100_000, "headers": {"Content-Type": "application/json"}}, 413, "over 4096 bytes"),
])
def test_bad_requests_get_a_4xx_that_says_why_and_the_replica_keeps_serving(service, kwargs, status, message):
    r = requests.post(f"{service}/sample", **kwargs)
    assert r.status_code == status and message in r.text, r.text
    assert requests.post(f"{service}/sample", json={"n": 2, "seed": 1}).status_code == 200


def test_animation_size_is_bounded(service):
    r = requests.post(f"{service}/animate", json={"n": 17})
    assert r.status_code == 422 and "animation limit of 16" in r.text
