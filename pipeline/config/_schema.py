"""The generic, strict parser behind every params section: dataclass fields, types, tagged unions."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from pipeline.errors import UserError

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A params file or value that does not match the schema; the message names the key."""


# --------------------------------------------------------------------------- generic parsing


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _parse_value(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not valid (choose one of: {', '.join(map(str, args))})")
        return value
    if origin in (Union, types.UnionType):
        return _parse_union(args, value, where)
    if dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, where)
    if origin in (list, tuple):
        # A tuple too: checkpoints store ModelConfig via dataclasses.asdict, which keeps tuple fields (cutoffs).
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        inner = args[0] if args else Any
        return tuple(_parse_value(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        inner = args[1] if args else Any
        return {str(k): _parse_value(inner, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # programming error


def _parse_union(args: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)]
    classes = [a for a in options if dataclasses.is_dataclass(a)]
    if len(classes) == 1 and len(options) == 1:  # an optional section: X | None
        return parse_dataclass(classes[0], value, where)
    if classes and len(classes) == len(options) and isinstance(value, dict):
        # Tagged union of dataclasses: the ``type`` field picks the class.
        tags = {typing.get_args(typing.get_type_hints(c)["type"])[0]: c for c in classes}
        tag = value.get("type")
        if tag not in tags:
            raise ConfigError(f"{where}.type: {tag!r} is not valid (choose one of: {', '.join(tags)})")
        return parse_dataclass(tags[tag], value, where)
    for option in options:
        try:
            return _parse_value(option, value, where)
        except ConfigError:
            continue
    raise ConfigError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")


def parse_dataclass(cls: type, data: Any, where: str) -> Any:
    """Build ``cls`` from a mapping, rejecting unknown and missing keys by name; an instance of ``cls`` (a value
    parsed before, e.g. a run's overrides) is taken as it is."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    valid = ", ".join(fields)
    for key in data:
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r} (valid: {valid})")
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _parse_value(hints[name], data[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing key {name!r} (required: {_required(cls)})")
    try:
        return cls(**kwargs)
    except ValueError as e:  # __post_init__ validation
        raise ConfigError(f"{where}: {e}") from e


def parse_overrides(cls: type, overrides: Mapping[str, Any], where: str = "overrides") -> dict[str, Any]:
    """``overrides`` checked against the fields of ``cls`` and parsed as their types, in a new mapping; an
    unknown key is named with the valid ones."""
    hints = typing.get_type_hints(cls)
    valid = ", ".join(f.name for f in dataclasses.fields(cls))
    parsed = {}
    for key, value in overrides.items():
        if key not in hints:
            raise ConfigError(f"{where}: unknown key {key!r} (valid: {valid})")
        parsed[key] = _parse_value(hints[key], value, f"{where}.{key}")
    return parsed


def apply_overrides(shared: T, overrides: Mapping[str, Any], where: str = "overrides") -> T:
    """The settings ``shared`` with some fields replaced by ``overrides`` (a run's or a task's own values):
    every merge of overrides into shared settings goes through here.  Strict as the parser: an unknown key,
    a value of the wrong type, or a combination the settings refuse raises :class:`ConfigError` at ``where``."""
    parsed = parse_overrides(type(shared), overrides, where)
    try:
        return dataclasses.replace(shared, **parsed)
    except ValueError as e:  # __post_init__ validation of the merged settings
        raise ConfigError(f"{where}: {e}") from e


def _required(cls: type) -> str:
    return ", ".join(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
