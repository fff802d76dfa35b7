"""One typed configuration tree: dataclasses whose fields carry their help text and limits.

Every component's settings are a dataclass deriving from `Settings`, its fields declared with
`option(...)` (a value) or `section(...)` (a nested component). From that one declaration come:

- the command line: `add_options` turns a settings object into argparse groups, one per section,
  with its current values as the defaults; `read_options` turns the parsed arguments back into one;
- validation, in one place: `Settings.__post_init__` checks types, limits and choices from the
  fields' declarations, then the class's own `check()` for rules between fields. Every settings class is
  frozen, so every value ever held passed those checks: a changed copy is made with `.replace(...)`;
- plain dicts for checkpoints, Ray and JSON: `to_dict()` and `from_dict()`, which names unknown keys.

A new setting is one line in its dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

S = TypeVar("S", bound="Settings")


def option(default: Any = dataclasses.MISSING, *, help: str, flag: str | tuple[str, ...] | None = None,
           choices: tuple | None = None, min: float | None = None, above: float | None = None,
           max: float | None = None, parse: Callable[[str], Any] | None = None,
           show: Callable[[Any], str] | None = None, metavar: str | None = None, cli: bool = True,
           required: bool = False, factory: Callable[[], Any] | None = None) -> Any:
    """A setting: its default, its help text, and what values are valid.

    `min` (>=), `above` (>) and `max` (<=) bound numbers, `choices` lists the allowed values, `flag` overrides the
    generated `--field-name`, `parse` reads a command-line string (`show` writes one back), `cli=False` keeps
    it off the CLI and
    `required` makes the command line insist on it (its default is then None until it is given).
    """
    meta = {"help": help, "flag": flag, "choices": choices, "min": min, "above": above, "max": max, "parse": parse,
            "show": show, "metavar": metavar, "cli": cli, "required": required}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def section(factory: Callable[[], Settings], *, title: str | None = None, cli: bool = True,
            flag_prefix: str = "", retold: dict[str, str | None] | None = None) -> Any:
    """A nested component's settings; on the command line, an argument group headed `title`. With
    `flag_prefix` its flags are namespaced: `flag_prefix="prepare"` turns `train_limit` into
    `--prepare-train-limit` (for a section whose names would clash with another's). `retold` gives some of
    its fields the help they have in this context (a search's `--out` is the search's folder, not a run's),
    or, with None, keeps them off this command line (they keep their defaults)."""
    return dataclasses.field(default_factory=factory, metadata={"title": title, "cli": cli, "section": True,
                                                                "flag_prefix": flag_prefix, "retold": retold or {}})


def _cli_fields(settings: Settings, retold: typing.Mapping[str, str | None]) -> list[tuple[dataclasses.Field, str]]:
    """The fields of `settings` on the command line, each with its help text there."""
    return [(f, retold.get(f.name, f.metadata.get("help"))) for f in dataclasses.fields(settings)  # type: ignore[arg-type]
            if f.metadata.get("cli", True) and not (f.name in retold and retold[f.name] is None)]


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(the type inside `X | None`, whether None is allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _allows_tuple(tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_allows_tuple(a) for a in typing.get_args(tp))
    return typing.get_origin(tp) is tuple


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple:
        args = typing.get_args(tp)
        return (isinstance(value, tuple) and len(value) == len(args)
                and all(_type_ok(v, a) for v, a in zip(value, args)))
    return True


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(map(_type_name, typing.get_args(tp)))
    if typing.get_origin(tp) is tuple:
        return "a pair of integers" if typing.get_args(tp) == (int, int) else "a tuple"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


class Settings:
    """Base of every settings dataclass: validation on construction, dict round trips."""

    component: ClassVar[str] = "settings"  # how messages name this component

    def __post_init__(self) -> None:
        if not type(self).__dataclass_params__.frozen:  # type: ignore[attr-defined]
            # a setting changed after construction would skip the checks below: change one with .replace
            raise TypeError(f"{type(self).__name__} must be declared @dataclass(frozen=True)")
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            if f.metadata.get("section"):
                continue
            _check_value(f.name, getattr(self, f.name), hints[f.name], f.metadata)
        self.check()

    def check(self) -> None:
        """Rules that tie several fields together; override where there are any."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[S], d: dict[str, Any] | S) -> S:
        if isinstance(d, cls):
            return d
        if not isinstance(d, dict):
            raise ValueError(f"{cls.component} settings must be a mapping, got {type(d).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown {cls.component} option(s) {unknown}; known options are {sorted(names)}")
        hints = _hints(cls)
        values = {}
        for name, value in d.items():
            tp, _ = _unwrap_optional(hints[name])
            if names[name].metadata.get("section"):
                value = tp.from_dict(value)
            elif isinstance(value, list) and _allows_tuple(tp):
                value = tuple(value)  # JSON has no tuples
            values[name] = value
        return cls(**values)

    def replace(self: S, **changes: Any) -> S:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _check_value(name: str, value: Any, hint: Any, meta: typing.Mapping[str, Any]) -> None:
    tp, optional = _unwrap_optional(hint)
    if value is None:
        if optional:
            return
        raise ValueError(f"{name} must be {_type_name(tp)}, got None")
    if not _type_ok(value, tp):
        raise ValueError(f"{name} must be {_type_name(tp)}, got {value!r}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    low, above = meta.get("min"), meta.get("above")
    if low is not None and value < low:
        kind = " (a positive integer)" if tp is int and low == 1 else ""
        raise ValueError(f"{name} must be >= {low}{kind}, got {value!r}")
    if above is not None and not value > above:
        raise ValueError(f"{name} must be > {above}, got {value!r}")
    high = meta.get("max")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")


# --- the command line --------------------------------------------------------------------------------

def flags_of(f: dataclasses.Field, prefix: str = "") -> tuple[str, ...]:
    """A field's flags: its own `flag=`, else `--<prefix>-<field-name>` (the prefix of the sections above it)."""
    flag = f.metadata.get("flag")
    if flag is None:
        return ("--" + prefix + f.name.replace("_", "-"),)
    return (flag,) if isinstance(flag, str) else tuple(flag)


def _flag_prefix(section_field: dataclasses.Field, outer: str) -> str:
    inner = section_field.metadata.get("flag_prefix") or ""
    return outer + (inner + "-" if inner else "")


def flag_owners(settings: Settings, _prefix: str = "", _flags: str = "",
                _retold: typing.Mapping[str, str | None] | None = None) -> dict[str, list[str]]:
    """Every command-line flag of `settings` and its sections → the fields (dotted paths) that declare it."""
    owners: dict[str, list[str]] = {}
    for f, _ in _cli_fields(settings, _retold or {}):
        if f.metadata.get("section"):
            for flag, names in flag_owners(getattr(settings, f.name), _prefix + f.name + ".",
                                           _flag_prefix(f, _flags), f.metadata["retold"]).items():
                owners.setdefault(flag, []).extend(names)
            continue
        flags = list(flags_of(f, _flags))
        if _unwrap_optional(_hints(type(settings))[f.name])[0] is bool:  # BooleanOptionalAction's --no- twin
            flags += ["--no-" + flag[2:] for flag in flags]
        for flag in flags:
            owners.setdefault(flag, []).append(_prefix + f.name)
    return owners


def check_flags(settings: Settings) -> None:
    """Flags stay flat (`--T`, `--train-limit`), as every command in the docs, cards and manifests spells
    them; so two fields of one command must never claim the same flag. Said at start-up, naming both."""
    clashes = {flag: names for flag, names in flag_owners(settings).items() if len(names) > 1}
    if clashes:
        flag, names = sorted(clashes.items())[0]
        raise ValueError(f"{settings.component} settings declare the flag {flag} twice ({' and '.join(names)}): give "
                         f"one of them its own flag=... in its option(...), or its section a flag_prefix")


def add_options(parser: argparse.ArgumentParser, settings: Settings, title: str | None = None,
                _prefix: str = "", _flags: str = "", _retold: typing.Mapping[str, str | None] | None = None) -> None:
    """Arguments for every CLI field of `settings` and its sections, with its values as defaults."""
    if not _prefix:
        check_flags(settings)
    group = parser.add_argument_group(title) if title else parser
    hints = _hints(type(settings))
    shown = _cli_fields(settings, _retold or {})
    for f, help_text in shown:  # this component's own options first, then its sections' groups
        if f.metadata.get("section"):
            continue
        value = getattr(settings, f.name)
        tp, optional = _unwrap_optional(hints[f.name])
        kw: dict[str, Any] = {"dest": _prefix + f.name, "default": value}
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = f.metadata.get("parse") or tp
            if f.metadata.get("choices") is not None:
                kw["choices"] = f.metadata["choices"]
            if f.metadata.get("choices") is None:  # argparse shows the choices themselves otherwise
                kw["metavar"] = f.metadata.get("metavar") or f.name.upper()
            if f.metadata.get("required"):
                kw["required"] = True
            elif value is not None:
                help_text += f" (default {_as_text(value, f.metadata)})"
        kw["help"] = help_text.replace("%", "%%")
        group.add_argument(*flags_of(f, _flags), **kw)
    for f, _ in shown:
        if f.metadata.get("section"):
            add_options(parser, getattr(settings, f.name), f.metadata.get("title") or f.name, _prefix + f.name + ".",
                        _flag_prefix(f, _flags), f.metadata["retold"])


def read_options(settings: S, args: argparse.Namespace, _prefix: str = "",
                 _retold: typing.Mapping[str, str | None] | None = None) -> S:
    """`settings` with every CLI field taken from parsed `args` (built by `add_options`); validated."""
    changes = {}
    for f, _ in _cli_fields(settings, _retold or {}):
        dest = _prefix + f.name
        if f.metadata.get("section"):
            changes[f.name] = read_options(getattr(settings, f.name), args, dest + ".", f.metadata["retold"])
        else:
            changes[f.name] = getattr(args, dest)
    return dataclasses.replace(settings, **changes)  # type: ignore[type-var]


def to_argv(settings: Settings, defaults: Settings | None = None, _flags: str = "",
            _retold: typing.Mapping[str, str | None] | None = None) -> list[str]:
    """The command-line options that turn `defaults` (default: a fresh instance) into `settings`: the exact
    command behind a configuration, for model cards and logs."""
    defaults = defaults if defaults is not None else type(settings)()
    argv: list[str] = []
    for f, _ in _cli_fields(settings, _retold or {}):
        value, default = getattr(settings, f.name), getattr(defaults, f.name)
        if f.metadata.get("section"):
            argv += to_argv(value, default, _flag_prefix(f, _flags), f.metadata["retold"])
        elif value != default:
            flag = flags_of(f, _flags)[0]
            if isinstance(value, bool):
                argv.append(flag if value else "--no-" + flag.lstrip("-"))
            elif value is not None:
                argv += [flag, _as_text(value, f.metadata)]
    return argv


def _as_text(value: Any, meta: typing.Mapping[str, Any]) -> str:
    if meta.get("show") is not None:
        return meta["show"](value)
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def require(settings: Settings, *names: str) -> None:
    """Settings the command line insists on, for callers that build `settings` in Python."""
    missing = [n for n in names if getattr(settings, n) in (None, "")]
    if missing:
        raise ValueError(f"{settings.component} needs {', '.join(missing)}")


def size_hw(text: str) -> tuple[int, int]:
    """`HxW` (e.g. 32x32) → (height, width), for the command line."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        return h, w
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 32x32, got {text!r}") from None
