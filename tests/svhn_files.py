"""Small files in SVHN's .mat layout, made from real MNIST digits: X (32, 32, 3, N) uint8, y (N, 1)
with labels 1..10 where 10 is the digit 0. They exercise the real SVHN reading path."""

from pathlib import Path

import numpy as np
from scipy.io import savemat


def write_svhn_mat(folder: Path, mnist, n_train: int = 2000, n_test: int = 300) -> Path:
    folder = Path(folder) / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, images, labels, n in (("train", mnist.train, mnist.train_labels, n_train),
                                     ("test", mnist.test, mnist.test_labels, n_test)):
        digits = np.pad(images[:n, 0], ((0, 0), (2, 2), (2, 2))).astype(np.float32) / 255  # (n, 32, 32)
        ink, paper = rng.random((n, 1, 1, 3)), rng.random((n, 1, 1, 3))
        rgb = (digits[..., None] * ink + (1 - digits[..., None]) * paper) * 255  # (n, 32, 32, 3)
        X = rgb.astype(np.uint8).transpose(1, 2, 3, 0)  # (32, 32, 3, n)
        y = np.where(labels[:n] == 0, 10, labels[:n]).astype(np.uint8)[:, None]
        savemat(folder / f"{split}_32x32.mat", {"X": X, "y": y})
    return folder.parent
