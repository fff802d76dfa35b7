"""A search's state is resumed only when this product signed it: a planted tuner.pkl never runs."""

import pickle

import pytest

from draw_service.run_dir import RunDir
from draw_service.tune import signature


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(signature.KEY_ENV, "draw-state-key-for-the-tests")


def test_signed_state_passes_and_any_change_or_stranger_is_refused(key, tmp_path):
    search = RunDir(str(tmp_path / "search"))
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "tuner.pkl").write_bytes(b"tuner state")
    (tmp_path / "search" / "experiment_state-1.json").write_bytes(b"{}")
    (tmp_path / "search" / "best.json").write_text("{}")  # plain JSON Tune never reads: not signed
    signature.sign_stored(search, ["tuner.pkl", "experiment_state-1.json"])
    signature.verify(search)

    # The file as it was one save ago stays good while Tune uploads the new one; older ones do not.
    for n in range(signature.KEPT):
        (tmp_path / "search" / "experiment_state-1.json").write_bytes(b'{"n": %d}' % n)
        signature.sign_stored(search, ["experiment_state-1.json"])
    (tmp_path / "search" / "experiment_state-1.json").write_bytes(b"{}")
    with pytest.raises(signature.StateError, match="experiment_state-1.json does not match its signature"):
        signature.verify(search)
    (tmp_path / "search" / "experiment_state-1.json").write_bytes(b'{"n": 0}')
    signature.verify(search)

    (tmp_path / "search" / "searcher-state-x.pkl").write_bytes(b"planted")
    with pytest.raises(signature.StateError, match="searcher-state-x.pkl is not signed"):
        signature.verify(search)


def test_another_key_is_refused(tmp_path, monkeypatch):
    search = RunDir(str(tmp_path))
    (tmp_path / "tuner.pkl").write_bytes(b"tuner state")
    monkeypatch.setenv(signature.KEY_ENV, "one key")
    signature.sign_stored(search, ["tuner.pkl"])
    monkeypatch.setenv(signature.KEY_ENV, "another key")
    with pytest.raises(signature.StateError, match="signed with another DRAW_STATE_KEY"):
        signature.verify(search)


def test_without_a_key_one_is_made_once_for_the_user_and_kept_private(tmp_path, monkeypatch):
    monkeypatch.delenv(signature.KEY_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    first = signature.state_key()
    path = tmp_path / ".config" / "draw-service" / "state.key"
    assert path.stat().st_mode & 0o777 == 0o600 and len(first) == 64
    assert signature.state_key() == first


class Planted:
    def __reduce__(self):  # unpickling this runs code of the planter's choosing
        import os

        return (os.system, (f"touch {MARKER}",))


MARKER = "/nonexistent"


def test_a_planted_tuner_pickle_is_refused_in_one_line_before_ray_starts(key, tmp_path, capsys, monkeypatch):
    global MARKER
    from draw_service import ray_cluster
    from draw_service.cli import main
    from draw_service.data import shards

    def no_ray(*args, **kwargs):
        raise AssertionError("the search connected to Ray before checking its state")

    monkeypatch.setattr(ray_cluster, "connect", no_ray)
    MARKER = str(tmp_path / "pwned")
    data = str(tmp_path / "mnist")
    shards.prepare_source("mnist", data, train_limit=200, test_limit=50, progress=False)
    search = tmp_path / "search"
    search.mkdir()
    (search / "tuner.pkl").write_bytes(pickle.dumps(Planted()))
    code = main(["tune", "--dataset", data, "--out", str(search), "--space", "smoke", "--trials", "1",
                 "--steps", "2", "--no-wandb", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    print(err[-1])
    assert code == 2 and err[-1].startswith("draw-service tune: error: refusing to resume the search ")
    assert "tuner.pkl is not signed" in err[-1] and not any("Traceback" in line for line in err)
    assert not (tmp_path / "pwned").exists()


def test_the_signer_tune_pickles_into_tuner_pkl_unpickles_in_a_new_process(tmp_path):
    """A search resumed by a new driver (a resubmitted job) unpickles its callbacks from tuner.pkl before
    anything of this package has made the Signer class."""
    import subprocess
    import sys

    import ray.cloudpickle as cloudpickle

    path = tmp_path / "signer.pkl"
    path.write_bytes(cloudpickle.dumps(signature.make_signer(RunDir(str(tmp_path / "search")))))
    code = f"import ray.cloudpickle as c; s = c.loads(open({str(path)!r}, 'rb').read()); print(s.search_uri)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(tmp_path / "search")
