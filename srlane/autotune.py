"""Choices made by measurement, once per machine (think of cuDNN's benchmark mode): each
candidate is timed a few times, alternating, and the one with the lowest median wins; the result
is cached in a JSON file keyed by the machine (CPU model and flags or CUDA device name, torch
version, thread count) and the shapes measured, so that a later run on the same machine pays
nothing. A forced choice (a config value or a flag) is taken as it is, without timing.

The cache lives in ``$SRLANE_CACHE_DIR/autotune.json``, else ``$XDG_CACHE_HOME/srlane/``, else
``~/.cache/srlane/``; an unreadable cache is one warning line and is measured again. Every
process with the same key gets the same choice: the first measures and writes it (atomically,
under a lock file), the others read it, so validation, predict.py, embed.py and speed.py run the
same path on the same machine and shapes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import torch

try:
    import fcntl
except ImportError:  # Windows: no flock, the cache is written unlocked
    fcntl = None

from srlane.fileio import atomic_write_text

CACHE_NAME = "autotune.json"


def cache_path() -> Path:
    """Where the choices are cached (see the module's docstring)."""
    folder = os.environ.get("SRLANE_CACHE_DIR")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "srlane")
    return Path(folder) / CACHE_NAME


def _cpu_description() -> str:
    """The CPU's model name and flags (Linux's /proc/cpuinfo), else what ``platform`` says."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "flags", "Features") and key not in fields:
                    fields[key] = value.strip()
    except OSError:
        pass
    return " | ".join(fields.values()) or f"{platform.machine()} {platform.processor()}"


def machine_key(name: str, device: torch.device | str, shapes: Sequence[Sequence[int]]) -> str:
    """A hash of what makes a measurement valid: the choice's ``name``, the device (the CPU
    model and flags, or the CUDA device's name), torch's version, the thread count and the
    ``shapes`` measured."""
    device = torch.device(device)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_description()
    text = json.dumps([name, device.type, hardware, torch.__version__, torch.get_num_threads(),
                       [list(map(int, shape)) for shape in shapes]])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class ChoiceCache:
    """The cached choices: ``{key: {"choice": name, "ms": {candidate: median ms}}}`` in one JSON
    file, read when first asked (again under :meth:`locked`), written atomically after each new
    choice. One choice per key for every process: :func:`choose` looks up, measures and writes
    under the lock, so a process that comes while another measures the same key waits and reads
    its choice instead of measuring again."""

    def __init__(self, path: str | os.PathLike | None = None, warn: Callable[[str], None] = print) -> None:
        self.path = Path(path) if path is not None else cache_path()
        self.warn = warn
        self._entries: dict | None = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cache's lock file (``<cache>.lock``, an exclusive ``flock``; released when the
        block ends or the process dies) and read the cache afresh. Where the folder cannot be
        written (or on a system without ``fcntl``) the block runs unlocked."""
        self._entries = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path.with_name(self.path.name + ".lock"), "a")
        except OSError:
            handle = None
        with handle or contextlib.nullcontext():
            if handle is not None and fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _load(self) -> dict:
        if self._entries is None:
            self._entries = {}
            if self.path.exists():
                try:
                    entries = json.loads(self.path.read_text(encoding="utf-8"))
                    if not isinstance(entries, dict):
                        raise ValueError("not a JSON object")
                    self._entries = entries
                except (OSError, ValueError) as e:
                    self.warn(f"autotune: ignoring the unreadable cache {self.path} ({e}); measuring again")
        return self._entries

    def get(self, key: str) -> dict | None:
        """The entry for ``key``, or None (none cached, or not a well-formed entry)."""
        entry = self._load().get(key)
        if isinstance(entry, dict) and isinstance(entry.get("choice"), str) and isinstance(entry.get("ms"), dict):
            return entry
        return None

    def put(self, key: str, choice: str, ms: Mapping[str, float]) -> dict:
        """Keep ``choice`` and its times under ``key`` and return the entry read back from the
        file: what every process with this key uses (where another process's write came last
        without the lock, its entry). A cache that cannot be written is one warning line, and
        this run's entry holds for this run."""
        entry = {"choice": choice, "ms": dict(ms)}
        entries = self._load()
        entries[key] = entry
        try:
            atomic_write_text(self.path, json.dumps(entries, indent=1, sort_keys=True))
        except OSError as e:
            self.warn(f"autotune: cannot write the cache {self.path} ({e})")
            return entry
        self._entries = None
        return self.get(key) or entry


def _times(ms: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {value:.1f} ms" for name, value in ms.items())


def choose(name: str, candidates: Mapping[str, Callable[[], object]], key: str, cache: ChoiceCache,
           log: Callable[[str], None], forced: str | None = None, repeats: int = 3,
           clock: Callable[[], float] = time.perf_counter, sync: Callable[[], None] | None = None) -> str:
    """The name of the fastest of ``candidates`` (each a callable running one timed step):
    ``forced`` when given (nothing timed), else the choice cached under ``key`` when it is one
    of the candidates, else each candidate run once untimed (warm-up) and then ``repeats`` times,
    alternating, the lowest median kept and cached. One ``log`` line says what was chosen and the
    times that decided it. ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each clock
    reading, so that asynchronous work is counted. Lookup, measurement and write hold the
    cache's lock (:meth:`ChoiceCache.locked`): processes with the same key run the same choice."""
    if forced is not None:
        if forced not in candidates:
            raise ValueError(f"autotune {name}: forced choice {forced!r} is not one of {', '.join(candidates)}")
        log(f"autotune {name}: {forced} (forced)")
        return forced
    with cache.locked():
        entry = cache.get(key)
        if entry is not None and entry["choice"] in candidates:
            log(f"autotune {name}: chose {entry['choice']} ({_times(entry['ms'])}; cached in {cache.path})")
            return entry["choice"]
        ms = _measure(candidates, repeats, clock, sync or (lambda: None))
        entry = cache.put(key, min(ms, key=ms.__getitem__), ms)
    log(f"autotune {name}: chose {entry['choice']} ({_times(entry['ms'])}; measured, saved in {cache.path})")
    return entry["choice"]


def _measure(candidates: Mapping[str, Callable[[], object]], repeats: int, clock: Callable[[], float],
             sync: Callable[[], None]) -> dict[str, float]:
    """Each candidate's median ms: one untimed warm-up each, then ``repeats`` timed runs, alternating."""
    samples: dict[str, list[float]] = {candidate: [] for candidate in candidates}
    for run in candidates.values():
        run()
    for _ in range(repeats):
        for candidate, run in candidates.items():
            sync()
            start = clock()
            run()
            sync()
            samples[candidate].append((clock() - start) * 1000.0)
    return {candidate: round(statistics.median(values), 3) for candidate, values in samples.items()}
