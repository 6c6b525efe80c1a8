"""The ending the command-line scripts share: errors a user can fix print as one line, never a
traceback; the exit status says whether everything went through. And the arguments the tools
that run a trained network share."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from srlane.config import ConfigError
from srlane.data.records import DataFormatError
from srlane.models.weights import CheckpointError

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, DataFormatError, CheckpointError, OSError)


def run_cli(main: Callable[[], Any], *errors: type[BaseException],
            failed: Callable[[Any], bool] = lambda result: False) -> NoReturn:
    """Run ``main`` and exit: 1 when ``failed(its result)`` (e.g. some inputs were unreadable),
    else 0. ``USER_ERRORS`` and ``errors`` print as ``error: <message>`` and exit 1."""
    try:
        result = main()
    except (*USER_ERRORS, *errors) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    sys.exit(1 if failed(result) else 0)


def checkpoint_tool_parser(description: str) -> argparse.ArgumentParser:
    """A tool's parser with what every tool running a trained network takes: the experiment
    config, ``--load-from CKPT`` (required) and ``--set KEY=VALUE ...`` config overrides."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment config file (see configs/)")
    parser.add_argument("--load-from", "--load_from", dest="load_from", required=True, metavar="CKPT",
                        help="network weights (a run's .pth: its moving average when it has one)")
    parser.add_argument("--set", nargs="+", default=[], action="extend", metavar="KEY=VALUE",
                        help="config overrides (e.g. dataset.data_root=...)")
    return parser
