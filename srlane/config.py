"""Python config files: ``_base_`` inheritance, deep merge and attribute access.

A config file is a Python file whose top-level names (not starting with ``_``, not modules,
functions or classes) become the config's keys. ``_base_`` is a path or list of paths, relative
to the file, merged first; the file's own values are merged on top (dicts deep-merged).
"""
from __future__ import annotations

import copy
import os
import runpy
import types
from typing import Any


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

    def __deepcopy__(self, memo: dict) -> "Config":
        return Config({k: copy.deepcopy(v, memo) for k, v in self.items()})

    def to_dict(self) -> dict:
        """Plain nested dicts and lists, e.g. for dumping or checkpoints."""
        return {k: _unwrap(v) for k, v in self.items()}

    @classmethod
    def fromfile(cls, path: str | os.PathLike) -> "Config":
        """Load a Python config file, resolving ``_base_`` files first."""
        return cls(_load_file(os.path.abspath(os.fspath(path)), chain=()))


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


def _load_file(path: str, chain: tuple[str, ...]) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    if path in chain:
        raise ValueError(f"config _base_ cycle: {' -> '.join(chain + (path,))}")
    namespace = runpy.run_path(path)
    bases = namespace.get("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    for base in bases:
        base_path = os.path.normpath(os.path.join(os.path.dirname(path), base))
        merged = merge(merged, _load_file(base_path, chain + (path,)))
    own = {
        key: value
        for key, value in namespace.items()
        if not key.startswith("_")
        and not isinstance(value, (types.ModuleType, types.FunctionType, type))
    }
    return merge(merged, own)
