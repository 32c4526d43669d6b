"""Typed settings: a dataclass read from TOML or JSON, ``key=value`` overrides, and command-line flags generated from
the same fields, so each setting's default and help text are written once.

A field declared with :func:`option` and a ``help`` text gets a flag (``--max-length`` for ``max_length``; a bool
that defaults to true gets ``--no-NAME``); one without help is set in the file or by an override only. Unknown keys,
wrong types and missing settings are one-line errors naming the file (or the override) and the key. Torch-free: the
command line builds every parser, the onnxruntime server's included.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tomllib
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, TypeVar

from .fileio import read_text

FLAG = "flag"  # the metadata key holding a field's command-line spelling
T = TypeVar("T")


class RecipeConfigError(ValueError):
    """A config that cannot be used; the message names the file (or the override) and the key."""


def option(default: Any = MISSING, help: str | None = None, *, flag: str | None = None,
           choices: tuple[str, ...] | None = None, default_factory: Any = MISSING) -> Any:
    """A dataclass field; with ``help``, also a command-line flag (``flag`` names it when the field's name would not:
    ``--out`` for ``output_dir``). ``choices`` are checked on the command line; the dataclass checks files too."""
    metadata = {FLAG: {"help": help, "flag": flag, "choices": choices}} if help is not None else {}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


# ---------------------------------------------------------------------------------------------- reading


def read_table(path: str | Path) -> dict[str, Any]:
    """The top-level table of a ``.toml`` or ``.json`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(read_text(path))
        elif path.suffix == ".json":
            data = json.loads(read_text(path))
        else:
            raise RecipeConfigError(f"{path}: config must be .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise RecipeConfigError(f"{path}: not valid {path.suffix[1:].upper()} ({e})") from None
    except RecursionError:
        raise RecipeConfigError(f"{path}: nested too deeply to read") from None
    if not isinstance(data, dict):
        raise RecipeConfigError(f"{path}: the top level must be a table/object")
    return data


def build(cls: type[T], data: dict[str, Any], where: str) -> T:
    """``cls`` from a table, every value checked against its field's type."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    missing = [f.name + (f" ({_flag_name(f)})" if FLAG in f.metadata else "") for f in fields(cls)
               if f.name not in data and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise RecipeConfigError(f"{where}: missing setting(s) {', '.join(missing)}")
    return cls(**{name: coerce(value, hints[name], f"{where}: {name}") for name, value in data.items()})


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check a value read from a file (or parsed from an override) against a field's type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return coerce(value, _not_none(hint), where)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise RecipeConfigError(f"{where} must be a table, got {value!r}")
        return build(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise RecipeConfigError(f"{where} must be a list, got {value!r}")
        return [coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeConfigError(f"{where} must be a table, got {value!r}")
        return dict(value)
    if hint is bool and not isinstance(value, bool):
        raise RecipeConfigError(f"{where} must be true or false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise RecipeConfigError(f"{where} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str and isinstance(value, os.PathLike):  # a path given in Python
        return os.fspath(value)
    if hint is str and not isinstance(value, str):
        raise RecipeConfigError(f"{where} must be a string, got {value!r}")
    return value


def _not_none(hint: Any) -> Any:
    """``X`` of ``X | None``."""
    return [a for a in typing.get_args(hint) if a is not type(None)][0]


def parse_text(text: str, hint: Any) -> Any:
    """An override's text -> a value of the field's type (JSON where it parses, else the plain string)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null"):
            return None
        hint = _not_none(hint)
        origin = typing.get_origin(hint)
    if hint is str:
        return text
    if hint is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        return text  # rejected with a clear message by coerce
    if origin is list and not text.startswith("["):
        return [t for t in text.split(",") if t]
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):  # not JSON (or absurdly nested): the string, checked by coerce
        return text


def split_override(item: str) -> tuple[str, str]:
    """``key=value`` -> (key, value text)."""
    if "=" not in item:
        raise RecipeConfigError(f"override {item!r}: expected key=value")
    key, text = item.split("=", 1)
    return key.strip(), text


def load(cls: type[T], path: str | Path | None = None, overrides: typing.Sequence[str] = (),
         given: dict[str, Any] | None = None) -> T:
    """``cls`` from its defaults, then the file at ``path``, then ``given`` (flags, keyword arguments), then
    ``key=value`` overrides (``table.key=value`` sets one entry of a table field)."""
    data = read_table(path) if path is not None else {}
    data |= given or {}
    hints = typing.get_type_hints(cls)
    for item in overrides:
        key, text = split_override(item)
        name, _, entry = key.partition(".")
        if name not in hints or (entry and typing.get_origin(hints[name]) is not dict):
            tables = [f"{n}.<key>" for n, h in hints.items() if typing.get_origin(h) is dict]
            raise RecipeConfigError(f"override {key}: unknown key; known: {', '.join(sorted(hints) + tables)}")
        if entry:  # a free-form table (checked by its reader)
            data[name] = {**data.get(name, {}), entry: parse_text(text, Any)}
        else:
            data[name] = coerce(parse_text(text, hints[name]), hints[name], f"override {key}")
    return build(cls, data, str(path) if path is not None else "arguments")


# ---------------------------------------------------------------------------------------------- the command line


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """A flag for every field of ``cls`` declared with help: the required ones first, then each class's own from the
    most specific class down. Flags left out of a command line are absent from its namespace, so a config file's
    values stand unless a flag is given."""
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in fields(cls)}
    declared = [name for klass in cls.__mro__ for name in vars(klass).get("__annotations__", {})]
    order = list(dict.fromkeys(name for name in declared if name in by_name))
    order.sort(key=lambda name: by_name[name].default is not MISSING or by_name[name].default_factory is not MISSING)
    for name in order:
        spec = by_name[name].metadata.get(FLAG)
        if spec is not None:
            _add_flag(parser, by_name[name], hints[name], spec)


def _flag_name(f: dataclasses.Field) -> str:
    spec = f.metadata[FLAG]
    if spec["flag"]:
        return spec["flag"]
    negated = f.default is True  # a bool flag sets the opposite of its default
    return ("--no-" if negated else "--") + f.name.replace("_", "-")


def _add_flag(parser: argparse.ArgumentParser, f: dataclasses.Field, hint: Any, spec: dict[str, Any]) -> None:
    kind = _not_none(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else hint
    name = _flag_name(f)
    if kind is bool:
        parser.add_argument(name, action="store_false" if f.default else "store_true", help=spec["help"],
                            dest=f.name, default=argparse.SUPPRESS)
        return
    metavar = None if spec["choices"] else name[2:].upper().replace("-", "_")  # named after the flag: --out OUT
    parser.add_argument(name, type=kind, choices=spec["choices"], help=_help(spec["help"], f), dest=f.name,
                        default=argparse.SUPPRESS, metavar=metavar)


def _help(text: str, f: dataclasses.Field) -> str:
    if f.default is MISSING:
        return f"{text} (required)"
    if f.default is None or "default" in text:
        return text
    default = f"{f.default:g}".replace("e-0", "e-") if isinstance(f.default, float) else f.default
    return f"{text} (default {default})"


def add_config_args(parser: argparse.ArgumentParser, example: str) -> None:
    """``--config FILE`` and trailing ``key=value`` overrides."""
    parser.add_argument("--config", help="a .toml or .json file of these settings (flags and overrides win)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help=f"settings by their config names, e.g. {example}")


def from_args(cls: type[T], args: argparse.Namespace) -> T:
    """``cls`` from a parsed command line: ``--config``, then the flags given, then the ``key=value`` overrides."""
    flags = {f.name: getattr(args, f.name) for f in fields(cls) if FLAG in f.metadata and hasattr(args, f.name)}
    return load(cls, getattr(args, "config", None), getattr(args, "overrides", ()), flags)


__all__ = ["RecipeConfigError", "add_config_args", "add_flags", "build", "coerce", "from_args", "load", "option",
           "parse_text", "read_table", "split_override"]
