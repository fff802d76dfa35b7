"""A clumsy user's commands: each mistake is one line naming it (exit code 2) before any work starts,
nothing is left behind, and no Ray is started for a mistake the command line can see."""

from pathlib import Path

import pytest

from draw_service.cli import main

MODEL = "models/mnist-attention"  # a shipped model: loads in a second on a CPU


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if " INFO " not in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("argv,message", [
    (["sample", "--checkpoint", MODEL, "-n", "100000"], "n must be <= 1024, got 100000"),
    (["sample", "--checkpoint", MODEL, "-n", "300", "--gif", "a.gif"], "n must be <= 256 with --gif"),
    (["serve", "--checkpoint", MODEL, "--port", "99999"], "port must be <= 65535, got 99999"),
    (["demo", "--port", "0"], "port must be >= 1"),
    (["serve", "--checkpoint", MODEL, "--models", "Big Model=x"], "model name 'Big Model': use lower-case letters"),
    (["serve", "--checkpoint", MODEL, "--models", "mnist-attention=elsewhere"],
     "two models are named 'mnist-attention'"),
    (["train", "--dataset", "mnst", "--num-workers", "2", "--steps", "1"],
     "unknown dataset 'mnst' (did you mean mnist?)"),
    (["train", "--dataset", "nodata", "--steps", "1", "--out", "runs/nodata"], "unknown dataset 'nodata'"),
    (["tune", "--dataset", "fashion-mnst", "--steps", "1"],
     "unknown dataset 'fashion-mnst' (did you mean fashion_mnist?)"),
])
def test_a_bad_value_is_one_line_before_anything_starts(argv, message, capsys, tmp_path, monkeypatch):
    import ray

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    argv = [a if a != MODEL else str(Path(__file__).resolve().parents[2] / MODEL) for a in argv]
    connected = ray.is_initialized()  # (the suite's own cluster, when integration tests ran first)
    assert main(argv) == 2
    assert message in one_line(capsys)
    assert ray.is_initialized() == connected  # said before a cluster was started or joined
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_output_files_are_checked_before_the_model_draws(tmp_path, capsys):
    model = str(Path(__file__).resolve().parents[2] / MODEL)
    cases = [
        (["--out", str(tmp_path)], f"--out {tmp_path} is a folder; give a file name in it"),
        (["--out", str(tmp_path / "grid.png"), "--gif", str(tmp_path / "x.txt")], "must end in .gif"),
        (["--out", str(tmp_path / "grid.txt")], "must end in .png"),
        (["--out", str(tmp_path / "no" / "such" / "a.png")], f"the folder {tmp_path / 'no' / 'such'} does not exist"),
    ]
    for argv, message in cases:
        assert main(["sample", "--checkpoint", model, "-n", "4", *argv]) == 2
        assert message in one_line(capsys), argv
    assert list(tmp_path.iterdir()) == []  # no folder made for a typo, no file under a wrong name
    assert main(["sample", "--checkpoint", model, "-n", "4", "--out", str(tmp_path / "grid.jpg")]) == 0
    assert (tmp_path / "grid.jpg").read_bytes()[:2] == b"\xff\xd8"  # a JPEG, as its name says


@pytest.mark.parametrize("argv,message", [
    (["train", "--epoch", "3"], "draw-service train: error: unrecognized argument '--epoch'; did you mean --epochs?"),
    (["sample", "--checkpoint", "x", "--gifs", "a.gif"], "unrecognized argument '--gifs'; did you mean --gif?"),
    (["serve", "--max-replica", "3"], "unrecognized argument '--max-replica'; did you mean --max-replicas?"),
    (["train", "extra"], "draw-service train: error: unrecognized argument 'extra'"),
])
def test_no_abbreviations_and_an_unknown_word_named_by_its_command(argv, message, capsys):
    with pytest.raises(SystemExit) as ended:
        main(argv)
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith(f"usage: draw-service {argv[0]} ")  # the command's usage, not the top level's


def test_evaluating_on_images_the_model_trained_on_says_so(capsys, caplog):
    model = str(Path(__file__).resolve().parents[2] / MODEL)  # trained on every training image
    import json

    assert main(["evaluate", "--checkpoint", model, "--split", "validation", "--limit", "20", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["held_out"] is False
    assert any("holds images it has seen; --split test is held out" in r.getMessage() for r in caplog.records)
    assert main(["evaluate", "--checkpoint", model, "--split", "test", "--limit", "20", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["held_out"] is True
