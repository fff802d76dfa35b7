"""The one configuration tree: the CLI generated from it, validation in one place, dict round trips."""

import argparse
import json
from dataclasses import dataclass

import pytest

from draw_service.cli import COMMANDS, build_parser, main
from draw_service.model import DRAWConfig
from draw_service.settings import Settings, add_options, option, read_options, section, to_argv
from draw_service.train.config import TrainConfig
from draw_service.tune.config import SearchConfig


def parse(command, *argv):
    args = build_parser().parse_args([command, *argv])
    return read_options(COMMANDS[command].settings(), args)


def test_every_field_of_every_command_is_on_its_command_line_with_its_default():
    parser = build_parser()  # no flag clashes between a command's sections
    for name, command in COMMANDS.items():
        defaults = command.settings()
        sub = parser._subparsers._group_actions[0].choices[name]
        dests = {a.dest for a in sub._actions}

        assert set(cli_fields(defaults)) <= dests, name


def cli_fields(s, prefix="", retold=None):
    for f in s.__dataclass_fields__.values():
        if not f.metadata.get("cli", True) or (retold or {}).get(f.name, "") is None:
            continue
        if f.metadata.get("section"):
            yield from cli_fields(getattr(s, f.name), prefix + f.name + ".", f.metadata.get("retold"))
        else:
            yield prefix + f.name


def test_a_section_is_told_in_its_commands_words(capsys):
    """A search's --out is the search's folder, and a search has no --resume (its --out resumes it)."""
    sub = build_parser()._subparsers._group_actions[0].choices
    tune = {a.option_strings[0]: a.help for a in sub["tune"]._actions if a.option_strings}
    train = {a.option_strings[0]: a.help for a in sub["train"]._actions if a.option_strings}
    assert tune["--out"].startswith("the search's folder") and train["--out"].startswith("the run's folder")
    assert "--resume" in train and "--resume" not in tune
    with pytest.raises(SystemExit):
        main(["tune", "--resume"])
    assert "unrecognized argument '--resume'" in capsys.readouterr().err


def test_train_options_land_in_the_tree():
    cfg = parse("train", "--T", "16", "--no-attention", "--z-size", "7", "--dataset", "cifar10", "--image-size",
                "32x24", "--num-workers", "2", "--gpus-per-worker", "0.25", "--lr-schedule", "cosine", "--time-limit",
                "1.5", "--no-wandb", "--quiet")
    assert cfg.model == DRAWConfig(T=16, attention=False, z_size=7, likelihood="auto")
    assert cfg.data.dataset == "cifar10" and cfg.data.image_size == (32, 24)
    assert cfg.ray.num_workers == 2 and cfg.ray.gpus_per_worker == 0.25 and cfg.ray.use_gpu
    assert cfg.lr_schedule == "cosine" and cfg.time_limit == 1.5 and not cfg.tracking.wandb and cfg.quiet
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # through JSON (tuples too)


def test_a_command_takes_its_defaults_from_its_settings_object():
    # A search's trials train on a validation split with one worker each: the search's own defaults.
    cfg = parse("tune", "--steps", "10")
    assert cfg.base.data.validation_stride == 10 and cfg.base.ray.num_workers == 1
    assert parse("train").data.validation_stride == 0 and parse("train").ray.num_workers == 0
    with pytest.raises(ValueError, match="--num-workers must be >= 1"):
        SearchConfig(base=TrainConfig())


@pytest.mark.parametrize("argv,message", [
    (["--batch-size", "0"], "batch_size must be >= 1"),
    (["--lr", "-1"], "lr must be > 0"),
    (["--T", "0"], "T must be >= 1 (a positive integer)"),
    (["--epochs", "0"], "epochs must be > 0"),
    (["--device", "cpu", "--cuda-graphs"], "cuda_graphs needs a GPU"),
])
def test_bad_values_are_refused_in_one_place_with_one_line(argv, message, capsys):
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_keys_and_wrong_types_are_named():
    with pytest.raises(ValueError, match=r"unknown training option\(s\) \['batchsize'\]"):
        TrainConfig.from_dict({"batchsize": 3})
    with pytest.raises(ValueError, match="batch_size must be an integer, got '100'"):
        TrainConfig.from_dict({"batch_size": "100"})
    with pytest.raises(ValueError, match="unknown data option"):
        TrainConfig.from_dict({"data": {"datset": "mnist"}})


def test_a_new_setting_is_one_line():
    @dataclass(frozen=True)
    class Inner(Settings):
        component = "inner"
        width: int = option(3, min=1, help="how wide")

    @dataclass(frozen=True)
    class Outer(Settings):
        component = "outer"
        inner: Inner = section(Inner, title="inner things")
        name: str = option("x", choices=("x", "y"), help="which")

    parser = argparse.ArgumentParser()
    add_options(parser, Outer())
    got = read_options(Outer(), parser.parse_args(["--width", "5", "--name", "y"]))
    assert got == Outer(inner=Inner(width=5), name="y")
    assert "how wide (default 3)" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--name", "z"])


def test_a_configuration_gives_back_the_command_that_makes_it():
    argv = ["--T", "16", "--no-attention", "--image-size", "32x24", "--lr", "0.002", "--no-wandb", "--epochs", "15"]
    cfg = parse("train", *argv)
    assert sorted(to_argv(cfg)) == sorted(argv)
    assert parse("train", *to_argv(cfg)) == cfg


def test_the_learning_rate_schedule_warms_up_decays_to_its_floor_and_is_a_function_of_the_step():
    cfg = parse("train", "--lr", "2e-3", "--lr-schedule", "cosine", "--warmup-steps", "10", "--lr-final", "0.1")
    assert cfg.lr_final == 0.1
    assert cfg.lr_at(0, 110) == pytest.approx(2e-4) and cfg.lr_at(9, 110) == pytest.approx(2e-3)
    assert cfg.lr_at(60, 110) == pytest.approx(2e-3 * (0.1 + 0.9 * 0.5))  # half way through the decay
    assert cfg.lr_at(110, 110) == pytest.approx(2e-4) and cfg.lr_at(500, 110) == pytest.approx(2e-4)
    assert parse("train", "--lr-schedule", "cosine").lr_at(100, 100) == 0.0  # the default floor: zero
    with pytest.raises(ValueError, match="lr_final is a fraction of the peak rate"):
        TrainConfig(lr_final=1.5)


def test_the_kl_warm_up_rises_to_one_and_is_a_function_of_the_step():
    cfg = parse("train", "--kl-warmup-steps", "4")
    assert [cfg.kl_weight_at(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert parse("train").kl_weight_at(0) == 1.0  # off by default: the paper's objective from the first step
    with pytest.raises(ValueError, match="kl_warmup_steps must be >= 0"):
        parse("train", "--kl-warmup-steps", "-1")


def test_a_run_sent_to_ray_keeps_its_local_paths_as_meant_where_they_were_typed(tmp_path, monkeypatch):
    from draw_service.data.config import DataConfig

    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(out="runs/x", data=DataConfig(dataset="shards/mnist")).with_absolute_paths()
    assert (cfg.out, cfg.data.dataset) == (str(tmp_path / "runs/x"), str(tmp_path / "shards/mnist"))
    kept = TrainConfig(out="s3://bucket/runs/x", data=DataConfig(dataset="cifar10")).with_absolute_paths()
    assert (kept.out, kept.data.dataset) == ("s3://bucket/runs/x", "cifar10")  # URIs and dataset names stay


def test_two_fields_that_claim_one_flag_are_refused_at_start_up_naming_both():
    @dataclass(frozen=True)
    class Limits(Settings):
        component = "limits"
        train_limit: int | None = option(None, help="one")

    @dataclass(frozen=True)
    class Nested(Settings):
        component = "nested"
        data: Limits = section(Limits)
        train_limit: int | None = option(None, help="two")

    @dataclass(frozen=True)
    class Switches(Settings):
        component = "switches"
        verbose: bool = option(False, help="a switch")
        no_verbose: int = option(0, help="clashes with --verbose's own --no-verbose")

    with pytest.raises(ValueError, match=r"flag --train-limit twice \(data.train_limit and train_limit\)"):
        add_options(argparse.ArgumentParser(), Nested())
    with pytest.raises(ValueError, match=r"flag --no-verbose twice \(verbose and no_verbose\)"):
        add_options(argparse.ArgumentParser(), Switches())
    for command in COMMANDS.values():  # and the product's own commands have none
        add_options(argparse.ArgumentParser(), command.settings())

    @dataclass(frozen=True)
    class Namespaced(Settings):  # the mend: the section's flags get its prefix
        component = "namespaced"
        data: Limits = section(Limits, flag_prefix="data")
        train_limit: int | None = option(None, help="two")

    parser = argparse.ArgumentParser()
    add_options(parser, Namespaced())
    cfg = read_options(Namespaced(), parser.parse_args(["--data-train-limit", "3", "--train-limit", "4"]))
    assert (cfg.data.train_limit, cfg.train_limit) == (3, 4)
    assert to_argv(cfg) == ["--data-train-limit", "3", "--train-limit", "4"]


def test_every_settings_class_is_frozen_and_refuses_assignment():
    import dataclasses

    from draw_service.cli import COMMANDS
    from draw_service.settings import Settings

    seen, todo = set(), [c.settings() for c in COMMANDS.values()]
    while todo:
        s = todo.pop()
        if type(s) in seen:
            continue
        seen.add(type(s))
        with pytest.raises(dataclasses.FrozenInstanceError):
            s.quiet = True  # any field: none can change after its checks ran
        todo += [getattr(s, f.name) for f in dataclasses.fields(s) if isinstance(getattr(s, f.name), Settings)]
    assert len(seen) >= 12

    @dataclasses.dataclass
    class Loose(Settings):  # not frozen
        x: int = option(1, help="x")

    with pytest.raises(TypeError, match="must be declared @dataclass"):
        Loose()


def test_num_workers_takes_a_count_or_an_elastic_range_and_the_batch_must_split_over_every_size():
    from draw_service.cli import build_parser
    from draw_service.train.config import RayConfig, TrainConfig

    args = build_parser().parse_args(["train", "--num-workers", "1-4", "--batch-size", "120"])
    cfg = read_options(TrainConfig(), args)
    assert cfg.ray.num_workers == (1, 4) and cfg.ray.elastic and cfg.ray.max_workers == 4
    assert to_argv(cfg)[to_argv(cfg).index("--num-workers") + 1] == "1-4"  # the card's command says it back
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # JSON's list comes back as the range
    with pytest.raises(ValueError, match=r"batch size 100 does not split evenly over 3 workers .*divisible by 12"):
        TrainConfig(ray=RayConfig(num_workers=(1, 4)))
    with pytest.raises(ValueError, match="1 <= MIN <= MAX, got 3-2"):
        RayConfig(num_workers=(3, 2))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--num-workers", "two"])
    assert RayConfig(worker_resources="spot=1, pool_a=0.5").extra_resources() == {"spot": 1.0, "pool_a": 0.5}
    for bad in ("spot", "spot=0", "CPU=2", "=1"):
        with pytest.raises(ValueError, match="NAME=AMOUNT"):
            RayConfig(worker_resources=bad)


def test_a_preset_sets_the_defaults_and_options_beside_it_override_them(capsys):
    from draw_service.cli import defaults

    def read(*argv):
        args = build_parser(["train", *argv]).parse_args(["train", *argv])
        return read_options(defaults(COMMANDS["train"], args.preset), args)

    quick = read("--preset", "quick")
    assert (quick.model.T, quick.model.enc_size, quick.batch_size, quick.time_limit) == (10, 128, 64, 2.8)
    assert quick.model.read_n == 2 and quick.data.dataset == "mnist"  # what it leaves alone stays the default
    mine = read("--preset=quick", "--T", "12", "--time-limit", "5")
    assert (mine.model.T, mine.time_limit, mine.model.enc_size) == (12, 5.0, 128)
    assert read("--preset", "paper") == read() == TrainConfig()
    with pytest.raises(SystemExit):
        build_parser(["train", "--preset", "slow"]).parse_args(["train", "--preset", "slow"])
    assert "invalid choice: 'slow'" in capsys.readouterr().err
    # the demo search starts from the quick preset's shape: one place for it
    from draw_service.tune.space import starting_point

    assert starting_point("mnist-demo") == {"read_n": 2, "write_n": 5, "z_size": 10, "hidden": 128, "T": 10,
                                            "lr": quick.lr}
