"""Distributed DRAW training, for `ray job submit --working-dir . -- python jobs/train.py ...`.

Takes the same options as `draw-service train`; defaults to 2 Ray Train workers.
Example:
    ray job submit --working-dir . -- python jobs/train.py \\
        --dataset s3://my-bucket/datasets/mnist --out s3://my-bucket/runs/mnist-att --num-workers 8 --gpus-per-worker 1
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, from a clone or a working_dir

from draw_service.cli import main  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--num-workers" not in args:
        args += ["--num-workers", "2"]
    sys.exit(main(["train", *args]))
