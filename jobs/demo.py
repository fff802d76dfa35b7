"""The end-to-end demo (`make demo`): prepare MNIST, search, serve the best model, fetch pictures.

    python jobs/demo.py [--keep-serving] [--out demo-out] [--trials 4] [--steps 1500]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, from a clone or a working_dir

from draw_service.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
