"""Dataset sources, binarisation and batch streams."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from draw_service.data.batches import BatchStream, binarize_fixed
from draw_service.data.sources import DatasetError, load_source, read_svhn_mat


def test_real_mnist_loads_with_the_documented_statistics(mnist):
    assert mnist.train.shape == (60000, 1, 28, 28) and mnist.test.shape == (10000, 1, 28, 28)
    assert mnist.train.dtype == np.uint8
    assert abs(mnist.train.mean() / 255 - 0.13066) < 1e-4
    assert set(np.unique(mnist.train_labels)) == set(range(10))


def test_unknown_names_and_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'.*mnist, fashion_mnist, svhn, cifar10"):
        load_source("imagenet")
    with pytest.raises(DatasetError, match="does not exist"):
        load_source(str(tmp_path / "nope.npz"))
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DatasetError, match=r"lacks .*x_train"):
        load_source(str(tmp_path / "bad.npz"))
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_source(str(tmp_path / "garbage.npz"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_source(str(tmp_path / "empty"))


def test_keras_npz_channels_last_becomes_nchw(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 8, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", x_train=x, y_train=np.arange(10)[:, None], x_test=x[:3], y_test=np.arange(3))
    a = load_source(str(tmp_path / "rgb.npz"))
    assert a.train.shape == (10, 3, 8, 6) and a.test.shape == (3, 3, 8, 6)
    assert np.array_equal(a.train[4, 2], x[4, :, :, 2])
    assert a.train_labels.tolist() == list(range(10))


def test_svhn_mat_layout_is_read_with_ten_meaning_zero(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": X, "y": np.array([[10], [1], [2], [10], [9]], dtype=np.uint8)})
    images, labels = read_svhn_mat(tmp_path / "train_32x32.mat")
    assert images.shape == (5, 3, 32, 32)
    assert np.array_equal(images[2, 1], X[:, :, 1, 2])
    assert labels.tolist() == [0, 1, 2, 0, 9]


def test_svhn_by_name_reads_mat_files_under_the_data_root(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    (tmp_path / "svhn").mkdir()
    for split, n in (("train", 6), ("test", 2)):
        savemat(tmp_path / "svhn" / f"{split}_32x32.mat",
                {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8), "y": np.ones((n, 1), np.uint8)})
    monkeypatch.setenv("DRAW_DATA_ROOT", str(tmp_path))
    a = load_source("svhn")
    assert a.name == "svhn" and a.train.shape == (6, 3, 32, 32) and a.test.shape == (2, 3, 32, 32)


def test_image_folder_with_class_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    a = load_source(str(tmp_path))
    assert a.train.shape == (18, 3, 9, 7) and a.test.shape == (2, 3, 9, 7)
    assert sorted(set(a.train_labels) | set(a.test_labels)) == [0, 1]
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "cats" / "small.png")
    with pytest.raises(DatasetError, match="different sizes"):
        load_source(str(tmp_path))
    a = load_source(str(tmp_path), image_size=(16, 16))
    assert a.image_shape == (3, 16, 16)


def test_fixed_binarisation_is_seeded_and_follows_intensity():
    x = np.full((2000, 1, 4, 4), 64, np.uint8)
    b1, b2 = binarize_fixed(x), binarize_fixed(x)
    assert np.array_equal(b1, b2) and set(np.unique(b1)) == {0, 255}
    assert abs((b1 == 255).mean() - 64 / 255) < 0.01
    assert not np.array_equal(b1, binarize_fixed(x, seed=1))


def test_batch_stream_is_a_function_of_the_step():
    images = np.random.default_rng(0).integers(0, 256, (103, 1, 4, 4), dtype=np.uint8)
    s = BatchStream(images, 10, seed=5, binarize=True)
    assert s.steps_per_epoch == 10
    first = [s.batch(i) for i in range(25)]
    fresh = BatchStream(images, 10, seed=5, binarize=True)
    assert torch.equal(fresh.batch(17), first[17])  # a resumed stream continues identically
    assert set(torch.unique(first[0]).tolist()) <= {0.0, 1.0}
    # one epoch visits 100 distinct images; the next epoch reshuffles (and draws new binary pixels)
    assert not torch.equal(first[0], first[10])
    cont = BatchStream(images, 10, seed=5, binarize=False)
    seen = torch.cat([cont.batch(i) for i in range(10)]).flatten(1)
    assert len(torch.unique(seen, dim=0)) == 100


def test_manifests_that_lie_are_refused_before_anything_is_read(tmp_path):
    import json

    from draw_service.data import shards

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8)).save(folder / f"{i}.png")
    dest = tmp_path / "ds"
    shards.prepare_source(str(folder), str(dest), progress=False)
    good = json.loads((dest / "manifest.json").read_text())
    shards.read_manifest(str(dest))
    (tmp_path / "secret.parquet").write_bytes(b"outside the dataset")
    for broken, message in (({k: v for k, v in good.items() if k != "splits"}, "'splits' is a required property"),
                            ({**good, "image_shape": [1, 6]}, "image_shape"),
                            ({**good, "splits": {**good["splits"], "train": {**good["splits"]["train"], "shards": [
                                {**good["splits"]["train"]["shards"][0], "path": "../secret.parquet"}]}}},
                             "splits/train/shards/0/path")):
        (dest / "manifest.json").write_text(json.dumps(broken))
        with pytest.raises(DatasetError, match=message):
            shards.read_manifest(str(dest))
