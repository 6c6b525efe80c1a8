"""Python config files: ``_base_`` inheritance, deep merge, attribute access, overrides,
validation against a schema of known keys, and a dump of the final config.

A config file is a Python file whose top-level names (not starting with ``_``, not modules,
functions or classes) become the config's keys. ``_base_`` is a path or list of paths, relative
to the file, merged first; the file's own values are merged on top (dicts deep-merged).
"""
from __future__ import annotations

import ast
import copy
import difflib
import os
import pprint
import runpy
import traceback
import types
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from srlane.fileio import atomic_write_text


class ConfigError(ValueError):
    """A config that cannot be used: unknown key, wrong type or malformed override."""


class Config(dict):
    """A dict whose keys are also attributes; nested dicts are Configs too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for key, value in self.items():
            super().__setitem__(key, _wrap(value))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, _wrap(value))

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __deepcopy__(self, memo: dict) -> "Config":
        return Config({k: copy.deepcopy(v, memo) for k, v in self.items()})

    def to_dict(self) -> dict:
        """Plain nested dicts and lists, e.g. for dumping or checkpoints."""
        return {k: _unwrap(v) for k, v in self.items()}

    @classmethod
    def fromfile(cls, path: str | os.PathLike) -> "Config":
        """Load a Python config file, resolving ``_base_`` files first."""
        return cls(_load_file(os.path.abspath(os.fspath(path)), chain=()))

    def dump(self, path: str | os.PathLike) -> None:
        """Write the config as a Python file that ``Config.fromfile`` reads back (atomic)."""
        lines = ['"""Final config of this run, written by srlane (all bases merged)."""', ""]
        for key, value in self.to_dict().items():
            lines.append(f"{key} = {pprint.pformat(value, sort_dicts=False)}")
        text = "\n".join(lines) + "\n"
        ast.parse(text)
        atomic_write_text(path, text)


def _wrap(value: Any) -> Any:
    if isinstance(value, Config):
        return value
    if isinstance(value, dict):
        return Config(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def merge(base: dict, override: dict) -> dict:
    """Deep-merge ``override`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _run_file(path: str) -> dict:
    """The top-level names of a config file; ConfigError naming the file and line when it does
    not parse or fails to run."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        return runpy.run_path(path)
    except SyntaxError as err:
        raise ConfigError(f"{path}:{err.lineno}: not valid Python: {err.msg}") from None
    except Exception as err:  # the file's own code failed (a NameError, a bad import, ...)
        line = next((frame.lineno for frame in reversed(traceback.extract_tb(err.__traceback__))
                     if os.path.abspath(frame.filename) == path), None)
        raise ConfigError(f"{path}:{line}: {type(err).__name__}: {err}") from None


def _base_paths(path: str, namespace: dict) -> list[str]:
    bases = namespace.get("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    return [os.path.normpath(os.path.join(os.path.dirname(path), base)) for base in bases]


def _load_file(path: str, chain: tuple[str, ...]) -> dict:
    if path in chain:
        raise ValueError(f"config _base_ cycle: {' -> '.join(chain + (path,))}")
    namespace = _run_file(path)
    merged: dict = {}
    for base_path in _base_paths(path, namespace):
        merged = merge(merged, _load_file(base_path, chain + (path,)))
    own = {
        key: value
        for key, value in namespace.items()
        if not key.startswith("_")
        and not isinstance(value, (types.ModuleType, types.FunctionType, type))
    }
    return merge(merged, own)


def load_bases(path: str | os.PathLike) -> dict:
    """The merged ``_base_`` files of a config file, without the file's own values."""
    path = os.path.abspath(os.fspath(path))
    merged: dict = {}
    for base_path in _base_paths(path, _run_file(path)):
        merged = merge(merged, _load_file(base_path, chain=(path,)))
    return merged


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=3"`` -> ``("a.b", 3)``; the value is a Python literal if it parses as one, else a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. total_iter=100)")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()
    return key, value


def apply_overrides(cfg: Config, overrides: Iterable[str]) -> Config:
    """Return a copy of ``cfg`` with each ``key=value`` override applied (dotted keys go into dicts)."""
    out = copy.deepcopy(cfg)
    for text in overrides:
        key, value = parse_override(text)
        *parents, leaf = key.split(".")
        node = out
        for depth, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = Config()
                node[part] = child
            if not isinstance(child, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(f"override {text!r}: {where!r} holds {child!r}, not a dict")
            node = child
        node[leaf] = value
    return out


def validate(cfg: dict, schema: dict, open_keys: Sequence[str] = ()) -> None:
    """Check every key of ``cfg`` exists in ``schema`` with a compatible type.

    Raises ``ConfigError`` naming the first unknown key (with the closest known key) or the
    first value whose type differs from the schema's. A schema value of ``None`` accepts any
    value; ``None`` in the config is accepted anywhere (it switches an option off); a schema
    value of ``"auto"`` (a choice made by measurement) accepts a bool too (a forced choice;
    the owner of the key checks the value). Keys listed
    in ``open_keys`` (dotted) are dicts whose own keys are free (e.g. optimizer arguments).
    """
    _validate(cfg, schema, prefix="", open_keys=set(open_keys))


def _validate(cfg: dict, schema: dict, prefix: str, open_keys: set[str]) -> None:
    for key, value in cfg.items():
        name = prefix + key
        if key not in schema:
            close = difflib.get_close_matches(key, [str(k) for k in schema], n=1, cutoff=0.6)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else ""
            raise ConfigError(f"unknown config key {name!r}{hint}")
        expected = schema[key]
        if value is None or expected is None:
            continue
        if not _same_kind(value, expected):
            raise ConfigError(
                f"config key {name!r} should be {_kind_name(expected)} like {expected!r}, "
                f"got {type(value).__name__} {value!r}"
            )
        if isinstance(value, dict) and name not in open_keys:
            _validate(value, expected, prefix=name + ".", open_keys=open_keys)


def _same_kind(value: Any, expected: Any) -> bool:
    if expected == "auto" and isinstance(value, bool):
        return True
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(expected, bool)
    if isinstance(expected, float):
        return isinstance(value, (int, float))
    if isinstance(expected, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(expected))


def _kind_name(expected: Any) -> str:
    if isinstance(expected, (list, tuple)):
        return "a list or tuple"
    if isinstance(expected, dict):
        return "a dict"
    name = type(expected).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def load_config(
    path: str | os.PathLike,
    overrides: Iterable[str] = (),
    defaults: dict | None = None,
    known: Iterable[str | os.PathLike] = (),
    open_keys: Sequence[str] = (),
) -> Config:
    """Load ``path`` on top of ``defaults``, apply ``key=value`` overrides, and validate.

    The schema of known keys is ``defaults`` merged with the file's ``_base_`` files and the
    ``known`` config files (e.g. every model and dataset config of the project).
    """
    defaults = defaults or {}
    schema = merge(defaults, load_bases(path))
    for known_path in known:
        schema = merge(schema, _load_file(os.path.abspath(os.fspath(known_path)), chain=()))
    cfg = Config(merge(defaults, Config.fromfile(path)))
    try:
        validate(cfg, schema, open_keys)
    except ConfigError as err:
        raise ConfigError(f"{os.fspath(path)}: {err}") from None
    cfg = apply_overrides(cfg, overrides)
    try:
        validate(cfg, schema, open_keys)
    except ConfigError as err:
        raise ConfigError(f"--set: {err}") from None
    return cfg


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys (``{"model": {"neck": {"out_channels": 64}}}`` ->
    ``{"model.neck.out_channels": 64}``); other values stay as they are."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def check_choice(key: str, value: Any, allowed: Sequence[Any]) -> None:
    """ConfigError (one line: the allowed values and, for a string, the closest one) unless
    ``value`` is one of ``allowed`` (and of its type: 1 is not True)."""
    if isinstance(value, Hashable) and value in allowed and type(value) is type(allowed[allowed.index(value)]):
        return
    names = [a for a in allowed if isinstance(a, str)]
    close = difflib.get_close_matches(value, names, n=1, cutoff=0.0) if isinstance(value, str) else []
    hint = f"; closest: {close[0]!r}" if close else ""
    raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}, got {value!r}{hint}")
