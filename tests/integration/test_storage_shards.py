"""Storage URIs and Parquet shards against a real S3 server (SeaweedFS) and a local folder."""

import json
import os

import numpy as np
import pytest

from draw_service import storage
from draw_service.cli import main
from draw_service.data import shards
from draw_service.data.batches import binarize_fixed
from draw_service.data.config import DataConfig
from draw_service.data.sources import DatasetError, load_source
from draw_service.data.worker import load_worker_data


def test_bytes_round_trip_on_s3_and_locally(s3, tmp_path):
    for base in ("s3://draw/roundtrip", str(tmp_path / "store")):
        storage.write_bytes(f"{base}/a/b.bin", b"x" * 3_000_000)
        assert storage.read_bytes(f"{base}/a/b.bin") == b"x" * 3_000_000
        assert storage.list_dir(f"{base}/a") == ["b.bin"]
        assert not storage.exists(f"{base}/nothing")


def test_prepare_writes_shards_and_manifest_and_is_safe_to_rerun(s3, capsys):
    dest = "s3://draw/datasets/mnist-prep"
    assert main(["prepare", "--dataset", "mnist", "--dest", dest, "--train-limit", "1200", "--test-limit", "300",
                 "--shard-size", "500", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"dataset": dest, "name": "mnist", "image_shape": [1, 28, 28], "train_count": 1200,
                   "test_count": 300}
    keys = [o["Key"] for o in storage.boto3_client().list_objects_v2(Bucket="draw", Prefix="datasets/mnist-prep/")
            ["Contents"]]
    assert sorted(k.split("mnist-prep/")[1] for k in keys if not k.endswith("/")) == [
        "manifest.json", "test/part-00000.parquet", "train/part-00000.parquet", "train/part-00001.parquet",
        "train/part-00002.parquet"]
    manifest = shards.read_manifest(dest)
    assert manifest["binarize"] is True
    assert [s["count"] for s in manifest["splits"]["train"]["shards"]] == [500, 500, 200]
    # a second run verifies and keeps the intact copy
    before = storage.read_bytes(f"{dest}/manifest.json")
    assert main(["prepare", "--dataset", "mnist", "--dest", dest, "--train-limit", "1200", "--test-limit", "300",
                 "--shard-size", "500", "--quiet"]) == 0
    assert storage.read_bytes(f"{dest}/manifest.json") == before


def test_workers_read_their_own_shards_and_together_see_everything(mnist_s3, mnist):
    parts = [load_worker_data(DataConfig(dataset=mnist_s3), rank, 2) for rank in range(2)]
    assert [len(p.train) for p in parts] == [1000, 1000] and parts[0].train_total == 2000
    both = np.concatenate([p.train for p in parts])
    assert sorted(map(bytes, both)) == sorted(map(bytes, mnist.train[:2000]))
    assert len(parts[0].eval) + len(parts[1].eval) == 500 and set(np.unique(parts[0].eval)) == {0, 255}
    assert parts[0].eval_split == "test"


@pytest.mark.parametrize("source", ["shards", "in-memory"])
def test_validation_split_is_held_out_and_the_same_for_any_number_of_workers(mnist_s3, source):
    dataset = mnist_s3 if source == "shards" else "mnist"
    cfg = DataConfig(dataset=dataset, validation_stride=10, train_limit=2000)
    one = load_worker_data(cfg)
    two = [load_worker_data(cfg, r, 2) for r in range(2)]
    assert one.eval_split == "validation" and one.eval_total == 200 and one.train_total == 1800
    assert len(one.train) == 1800 and sum(len(p.train) for p in two) == 1800
    key = lambda a: sorted(map(bytes, a))  # noqa: E731
    # the same binarised validation images, however the workers split them
    assert key(one.eval) == key(np.concatenate([p.eval for p in two]))
    assert not set(key(one.eval)) & set(key(binarize_fixed(one.train)))  # held out of training


def test_a_half_written_dataset_is_never_read_as_whole(s3):
    storage.write_bytes("s3://draw/datasets/half/train/part-00000.parquet", b"partial")
    assert not shards.is_prepared("s3://draw/datasets/half")
    with pytest.raises(DatasetError, match="manifest.json is missing"):
        shards.read_manifest("s3://draw/datasets/half")


def test_corrupt_and_missing_shards_are_named(s3, tmp_path):
    arrays = load_source("mnist")
    arrays.train, arrays.train_labels = arrays.train[:600], arrays.train_labels[:600]
    arrays.test, arrays.test_labels = arrays.test[:100], arrays.test_labels[:100]
    for dest in ("s3://draw/datasets/broken", str(tmp_path / "broken")):
        shards.prepare(arrays, dest, shard_size=300, progress=False)
        shard = f"{dest}/train/part-00001.parquet"
        data = bytearray(storage.read_bytes(shard))
        data[len(data) // 2] ^= 0xFF
        storage.write_bytes(shard, bytes(data))
        with pytest.raises(DatasetError, match=r"shard .*train/part-00001.parquet is corrupt"):
            load_worker_data(DataConfig(dataset=dest))
        storage.delete(shard)
        with pytest.raises(DatasetError, match=r"shard .*train/part-00001.parquet listed in the manifest is missing"):
            load_worker_data(DataConfig(dataset=dest))


def test_storage_errors_name_the_uri_and_the_cause(s3, capsys):
    with pytest.raises(storage.StorageError, match="bucket 'no-such-bucket' of s3://no-such-bucket/x does not exist"):
        storage.check_access("s3://no-such-bucket/x")
    saved = os.environ["AWS_SECRET_ACCESS_KEY"]
    os.environ["AWS_SECRET_ACCESS_KEY"] = "wrong"
    try:
        with pytest.raises(storage.StorageError, match="access to s3://draw/x was refused"):
            storage.check_access("s3://draw/x")
        assert main(["prepare", "--dataset", "mnist", "--dest", "s3://draw/denied", "--quiet"]) == 2
        assert "refused" in capsys.readouterr().err
    finally:
        os.environ["AWS_SECRET_ACCESS_KEY"] = saved
    saved = os.environ["AWS_ENDPOINT_URL"]
    os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  # discard port: nothing listens
    try:
        with pytest.raises(storage.StorageError, match="cannot reach the S3 endpoint http://127.0.0.1:9"):
            storage.check_access("s3://draw/x")
    finally:
        os.environ["AWS_ENDPOINT_URL"] = saved
    with pytest.raises(storage.StorageError, match="unsupported storage URI"):
        storage.resolve("gs://bucket/x")


def test_storage_that_goes_away_and_comes_back_loses_nothing(monkeypatch):
    """A server of its own, killed and restarted: a write meanwhile waits for it; one that cannot reach it
    at all fails after its retries with one clear line."""
    import logging

    from devtools.s3_server import SeaweedS3

    with SeaweedS3(bucket="flaky") as server:
        for k, v in server.env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setattr(storage, "BACKOFF_S", 0.5)
        storage.write_bytes("s3://flaky/ckpt/a.bin", b"before")
        server.kill()
        events = []  # what happened, in order (not how long it took: that is the machine's)

        class ComeBackAfterTheFirstFailure(logging.Handler):
            """The server comes back while the write waits to retry, however slow or fast either is."""

            def emit(self, record):
                if "retrying" in record.getMessage() and "restarted" not in events:
                    events.append("a write failed")
                    server.start()
                    events.append("restarted")

        handler = ComeBackAfterTheFirstFailure()
        logging.getLogger(storage.__name__).addHandler(handler)
        try:
            storage.write_bytes("s3://flaky/ckpt/b.bin", b"during" * 1000)  # retried until the server is back
        finally:
            logging.getLogger(storage.__name__).removeHandler(handler)
        events.append("written")
        assert events == ["a write failed", "restarted", "written"]
        assert storage.read_bytes("s3://flaky/ckpt/b.bin") == b"during" * 1000
        assert storage.read_bytes("s3://flaky/ckpt/a.bin") == b"before"
        server.kill()
        with pytest.raises(storage.StorageError, match=r"writing s3://flaky/ckpt/c.bin failed \(after 4 attempts\)"):
            storage.write_bytes("s3://flaky/ckpt/c.bin", b"lost")


def test_a_local_run_names_what_is_wrong_with_an_s3_dataset(s3, mnist_s3, tmp_path, capsys, monkeypatch):
    common = ["--out", str(tmp_path / "r"), "--steps", "1", "--no-wandb", "--quiet", "--T", "2", "--enc-size", "8",
              "--dec-size", "8", "--z-size", "2"]
    assert main(["train", "--dataset", "s3://no-such-bucket/mnist", *common]) == 2
    assert "bucket 'no-such-bucket'" in capsys.readouterr().err
    assert main(["train", "--dataset", "s3://draw/datasets/mnist-smal", *common]) == 2  # a typo
    err = capsys.readouterr().err
    assert "no prepared dataset at s3://draw/datasets/mnist-smal" in err and "Traceback" not in err
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "a-wrong-secret")
    assert main(["train", "--dataset", mnist_s3, *common]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "AWS_SECRET_ACCESS_KEY" in err and len(err.strip().splitlines()) == 1
