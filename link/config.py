"""Typed configuration from TOML: dataclasses filled from tables, unknown keys rejected.

Every role (edge, cloud, gateway) keeps one dataclass per concern and loads it through
``load_config``; errors name the file and the dotted key so a typo in a device's config is
found at start-up, not at the first frame. This lives in ``link`` because it is the ground
layer both sides already depend on; it needs only the standard library.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # JetPack 6 ships Python 3.10
    import tomli as tomllib

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or value is wrong; the message names the file and key."""

    def __init__(self, message: str, source: str | None = None, key: str | None = None) -> None:
        self.source, self.key = source, key
        where = ", ".join(x for x in (source, f"key {key!r}" if key else None) if x)
        super().__init__(f"{where}: {message}" if where else message)


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("file not found", str(path)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # tomllib decodes UTF-8 itself
        raise ConfigError(f"not valid TOML ({exc})", str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read ({exc.strerror})", str(path)) from None


def _convert(tp: Any, value: Any, key: str, source: str | None) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{value!r} fits none of {tp}", source, key)
    if origin is typing.Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{value!r} is not one of {', '.join(map(repr, choices))}", source, key)
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {type(value).__name__}", source, key)
        return from_dict(tp, value, source, prefix=key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a list, got {type(value).__name__}", source, key)
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"expected {len(args)} items, got {len(value)}", source, key)
            return tuple(_convert(a, v, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value, strict=False)))
        inner = args[0] if args else Any
        items = [_convert(inner, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {type(value).__name__}", source, key)
        _, vt = get_args(tp) or (str, Any)
        return {str(k): _convert(vt, v, f"{key}.{k}", source) for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", source, key)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", source, key)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", source, key)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", source, key)
        return value
    if tp is Path:
        if not isinstance(value, str):
            raise ConfigError(f"expected a path string, got {value!r}", source, key)
        return Path(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], source: str | None = None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a table, got {type(data).__name__}", source, prefix or None)
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"unknown key; valid keys here are {', '.join(sorted(fields))}", source, key)
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _convert(hints[name], value, key, source)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(str(exc), source, prefix or None) from None
    except ValueError as exc:  # __post_init__ validation
        if isinstance(exc, ConfigError):
            raise ConfigError(str(exc), source, exc.key or prefix or None) from None
        raise ConfigError(str(exc), source, prefix or None) from None
    return obj


def load_config(cls: type[T], path: str | Path) -> T:
    """Read ``path`` and build ``cls`` from it, naming the file in every error."""
    return from_dict(cls, read_toml(path), str(path))


def resolve_path(base: Path, path: Path) -> Path:
    """A path from a config file, taken relative to that file's folder unless absolute (or empty)."""
    return path if path.is_absolute() or not str(path) else base / path
