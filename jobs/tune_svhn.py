"""Hyperparameter search on SVHN: `ray job submit --working-dir . -- python jobs/tune_svhn.py [--smoke]`.

Searches patch sizes, latent size, hidden size, T and learning rate around the paper's SVHN model with
Ray Tune (ASHA + Optuna), one Ray Train run per trial, and writes the best record to
<storage>/<name>/best.json. SVHN is prepared into <storage>/datasets/svhn the first time.

Storage defaults to $DRAW_STORAGE, else ~/draw-service (a local folder); on a cluster pass an
s3:// URI. Every option of `draw-service tune` is accepted; `--smoke` picks a tiny CPU-sized search,
named with the time it starts so that every smoke run searches afresh. Submitting the same (named)
search again resumes it; submitting a finished one says so and trains nothing.

SVHN comes from $DRAW_DATA_ROOT/svhn (downloaded there when the machine has internet). Where it cannot
be had, `--source mnist` (or cifar10, fashion_mnist) runs the same search on another dataset that
DRAW_DATA_ROOT holds, named for what it searches (tune-mnist-smoke-..., datasets/mnist-smoke).
"""

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, from a clone or a working_dir

from draw_service.cli import main  # noqa: E402

SMOKE = ["--space", "smoke", "--trials", "2", "--steps", "40", "--eval-every", "10", "--batch-size", "32",
         "--train-limit", "2000", "--test-limit", "100", "--eval-batch-size", "100", "--max-concurrent", "2",
         "--prepare-train-limit", "2000", "--prepare-test-limit", "200", "--media-every", "40"]
FULL = ["--space", "svhn", "--trials", "16", "--steps", "10000", "--eval-every", "1000", "--batch-size", "100"]

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", default=os.environ.get("DRAW_STORAGE", os.path.expanduser("~/draw-service")))
    p.add_argument("--smoke", action="store_true", help="a tiny CPU search that ends in a couple of minutes")
    p.add_argument("--name", default=None, help="search name (default tune-svhn, or tune-svhn-smoke-<start time>)")
    p.add_argument("--source", default="svhn", choices=("svhn", "cifar10", "mnist", "fashion_mnist"),
                   help="the dataset searched (default svhn; another where SVHN cannot be had)")
    p.add_argument("--dataset", default=None, help="prepared dataset URI (default <storage>/datasets/<source>)")
    known, rest = p.parse_known_args()
    kind = known.source + ("-smoke" if known.smoke else "")
    name = known.name or (f"tune-{kind}-{dt.datetime.now():%Y%m%d-%H%M%S}" if known.smoke else f"tune-{kind}")
    dataset = known.dataset or f"{known.storage.rstrip('/')}/datasets/{kind}"
    args = ["tune", "--dataset", dataset, "--prepare-from", known.source,
            "--out", f"{known.storage.rstrip('/')}/{name}",
            *(SMOKE if known.smoke else FULL), *rest]  # later options win: the user's override the presets
    code = main(args)
    if code == 2 and known.source == "svhn":
        print("jobs/tune_svhn.py: where SVHN cannot be had, --source mnist (or cifar10) runs the same search on a "
              "dataset under DRAW_DATA_ROOT", file=sys.stderr)
    sys.exit(code)
