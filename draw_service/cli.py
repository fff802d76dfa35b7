"""draw-service: DRAW (Gregor et al., 2015) image models, trained, searched and served on Ray.

The command line is generated from each command's settings (`settings.py`); this file only parses. Each
command is a settings dataclass and a function that takes it and returns what to print (JSON on stdout;
progress and messages go to stderr). The options, their help and their defaults all come from the
dataclasses, so a new setting appears here without a line of this file changing.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .data.config import PrepareConfig
from .data.shards import prepare_command
from .demo import DemoConfig, demo_command
from .errors import USER_ERRORS
from .export import ExportConfig, export_command
from .sample import SampleConfig, sample_command
from .serve.config import ServeConfig
from .serve.launch import serve_command
from .settings import Settings, add_options, read_options
from .train.config import PRESETS, TrainConfig
from .train.evaluate import EvaluateConfig, evaluate_command
from .train.run import train_command
from .tune.config import SearchConfig
from .tune.search import tune_command


@dataclass(frozen=True)
class Command:
    help: str
    settings: type[Settings]
    run: Callable[[Any], Any]  # takes those settings; returns what to print
    presets: dict[str, tuple[str, dict]] | None = None  # `--preset NAME`: (what it is, the settings it changes)


COMMANDS = {
    "prepare": Command("convert a dataset into Parquet shards in storage (local or s3://)", PrepareConfig,
                       prepare_command),
    "train": Command("train DRAW, in this process or on Ray Train with --num-workers", TrainConfig, train_command,
                     PRESETS),
    "tune": Command("search hyperparameters with Ray Tune (one Ray Train run per trial)", SearchConfig, tune_command),
    "serve": Command("serve batched sampling over HTTP with Ray Serve", ServeConfig, serve_command),
    "demo": Command("the whole pipeline on one machine: prepare, search, serve, pictures", DemoConfig, demo_command),
    "evaluate": Command("NLL bound (and IWAE bound) of a checkpoint on a dataset split", EvaluateConfig,
                        evaluate_command),
    "sample": Command("a grid of samples and an animation of the drawing", SampleConfig, sample_command),
    "export": Command("a checkpoint as a shippable model folder: weights only, with its card", ExportConfig,
                      export_command),
}


class Parser(argparse.ArgumentParser):
    """argparse without its surprises: no abbreviations (`--epoch 3` is not `--epochs 3`), and a word a
    command does not know is named by that command's own usage, with the closest option it has."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001 - argparse's own signature
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None:  # a command's parser: it knows every option there is
            word = extras[0].split("=", 1)[0]
            known = [s for action in self._actions for s in action.option_strings]
            close = difflib.get_close_matches(word, known, n=1, cutoff=0.6) if word.startswith("-") else []
            self.error(f"unrecognized argument {word!r}" + (f"; did you mean {close[0]}?" if close else ""))
        return parsed, extras


def preset_in(argv: list[str]) -> str | None:
    """The `--preset NAME` among the arguments, read before the parser is built (its defaults come from it)."""
    for i, word in enumerate(argv):
        if word == "--preset" and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith("--preset="):
            return word.split("=", 1)[1]
    return None


def defaults(command: Command, preset: str | None) -> Settings:
    """A command's settings before its options: its defaults, with the preset's laid over them."""
    settings = command.settings()
    if preset and command.presets and preset in command.presets:
        settings = settings.with_preset(preset)
    return settings


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    preset = preset_in(argv or [])
    parser = Parser(prog="draw-service", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if command.presets:
            listed = "; ".join(f"{k}: {text}" for k, (text, _) in command.presets.items())
            p.add_argument("--preset", choices=tuple(command.presets), default=None,
                           help=f"start from a preset, any of whose settings an option given beside it overrides "
                                f"({listed})")
        add_options(p, defaults(command, preset))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    command = COMMANDS[args.command]
    try:
        settings = read_options(defaults(command, getattr(args, "preset", None)), args)
        result = command.run(settings)
    except USER_ERRORS as err:
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
