"""`draw-service`: the command line, generated from each command's settings (`settings.py`); parsing only.

Each command is a settings dataclass and a function that takes it and returns what to print (JSON on
stdout; progress and messages go to stderr). The options, their help and their defaults all come from
the dataclasses, so a new setting appears here without a line of this file changing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from dataclasses import dataclass

from .settings import add_options, read_options


@dataclass(frozen=True)
class Command:
    help: str
    settings: str  # "module:Class" of its settings
    run: str  # "module:function" taking those settings


COMMANDS = {
    "prepare": Command("convert a dataset into Parquet shards in storage (local or s3://)",
                       "draw_service.data.config:PrepareConfig", "draw_service.data.shards:prepare_command"),
    "train": Command("train DRAW, in this process or on Ray Train with --num-workers",
                     "draw_service.train.config:TrainConfig", "draw_service.train.run:train_command"),
    "tune": Command("search hyperparameters with Ray Tune (one Ray Train run per trial)",
                    "draw_service.tune.config:SearchConfig", "draw_service.tune.search:tune_command"),
    "serve": Command("serve batched sampling over HTTP with Ray Serve",
                     "draw_service.serve.config:ServeConfig", "draw_service.serve.launch:serve_command"),
    "demo": Command("the whole pipeline on one machine: prepare, search, serve, pictures",
                    "draw_service.demo:DemoConfig", "draw_service.demo:demo_command"),
    "evaluate": Command("NLL bound (and IWAE bound) of a checkpoint on a dataset split",
                        "draw_service.train.evaluate:EvaluateConfig", "draw_service.train.evaluate:evaluate_command"),
    "sample": Command("a grid of samples and an animation of the drawing",
                      "draw_service.sample:SampleConfig", "draw_service.sample:sample_command"),
    "export": Command("a checkpoint as a shippable model folder: weights only, with its card",
                      "draw_service.export:ExportConfig", "draw_service.export:export_command"),
}


def _load(ref: str):
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="draw-service", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        add_options(p, _load(command.settings)())
    return parser


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .data.sources import DatasetError
    from .storage import StorageError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    command = COMMANDS[args.command]
    try:
        settings = read_options(_load(command.settings)(), args)
        result = _load(command.run)(settings)
    except (DatasetError, StorageError, CheckpointError, ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"draw-service {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if result is not None:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
