"""Reading W&B's transaction log while W&B may still be writing it (a run's report must be on disk before
its file is copied into storage: `tracking.py`)."""

from pathlib import Path

import pytest
import wandb
from ray_runs import wait_for

from draw_service import wandb_file


@pytest.fixture(scope="module")
def run_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wandb")
    run = wandb.init(project="draw-service-test", dir=str(folder), mode="offline",
                     settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))
    for step in (10, 20, 30):
        run.log({"nll_bound": 100.0 - step, "padding": "x" * 20_000}, step=step)  # rows across 32 KiB blocks
    run.finish()
    path = Path(run.settings.sync_file)
    # finish() returns once W&B's service has the rows, not always once it has written the last one out
    # (CI saw {10, 20}): wait as `Tracker.finish` does, for the run's end to be in the file.
    wait_for(lambda: wandb_file.ended(path), 30, "W&B to write the run's end", every=0.1)
    return path


def test_a_finished_run_file_holds_every_row(run_file):
    assert wandb_file.history_steps(run_file) == {10, 20, 30}
    assert run_file.stat().st_size > 2 * wandb_file.BLOCK  # the rows span blocks: chunks FIRST/MIDDLE/LAST


def test_a_file_cut_anywhere_reads_as_the_rows_written_so_far(run_file, tmp_path):
    data = run_file.read_bytes()
    cut = tmp_path / "cut.wandb"
    seen = []
    for size in range(7, len(data), 997):
        cut.write_bytes(data[:size])
        steps = wandb_file.history_steps(cut)
        assert steps <= {10, 20, 30}, size
        assert not wandb_file.ended(cut) or steps == {10, 20, 30}, size  # the end comes after every row
        seen.append(steps)
    assert seen[0] == set() and seen[-1] >= {10, 20}
    assert all(a <= b for a, b in zip(seen, seen[1:]))  # a longer prefix never loses a row


def test_a_missing_file_has_no_rows_and_another_file_is_a_clear_error(tmp_path):
    assert wandb_file.history_steps(tmp_path / "not-yet.wandb") == set()
    other = tmp_path / "other.wandb"
    other.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(ValueError, match="is not a W&B run file"):
        wandb_file.history_steps(other)
