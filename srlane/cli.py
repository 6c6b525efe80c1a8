"""What the command-line scripts share: their ending (errors a user can fix print as one line,
never a traceback; the exit status says whether everything went through) and one vocabulary of
arguments: the experiment config with ``--set`` overrides, ``--load-from``, the device, batch
and reading processes of a prediction run, and the inference options' flags."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import torch

from srlane.config import Config, ConfigError
from srlane.data.records import DataFormatError
from srlane.models.inference import ALLOWED, AUTO_FIELDS, InferenceOptions
from srlane.models.weights import CheckpointError

# srlane.engine (Lightning, TensorBoard: seconds to import) is imported by the functions that
# read a config or pick a device, so that scripts needing only run_cli (evaluate.py) start fast

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


def note(line: str) -> None:
    """A remark that needs no action (``note: ...`` on stderr)."""
    print(f"note: {line}", file=sys.stderr)


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer not below ``minimum`` (argparse names the flag)."""
    def integer(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    integer.__name__ = "int"  # argparse's "invalid int value: 'x'"
    return integer


def tool_parser(description: str) -> argparse.ArgumentParser:
    """A tool's parser with the experiment config and ``--set KEY=VALUE ...`` overrides, as
    main.py takes them (``config_from_args`` reads them)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment config file (see configs/)")
    add_set_argument(parser)
    return parser


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE ...``: config overrides, as main.py takes them."""
    parser.add_argument("--set", nargs="+", default=[], action="extend", metavar="KEY=VALUE",
                        help="override config keys, dotted for nested ones; values are Python literals "
                             "(e.g. test_parameters.conf_threshold=0.3)")


def add_report_argument(parser: argparse.ArgumentParser) -> None:
    """``--report``: after the evaluation, the report folder (``report/report.html``: the metric
    table, the threshold and IoU curves, the worst images; srlane.report)."""
    parser.add_argument("--report", action="store_true",
                        help="also write <work dir>/report/report.html (and the raw outputs to <work dir>/raw)")


def add_checkpoint_argument(parser: Any, required: bool = True) -> None:
    """``--load-from CKPT`` on ``parser`` (a parser or one of its groups): the weights of a
    trained network."""
    parser.add_argument("--load-from", "--load_from", dest="load_from", required=required, metavar="CKPT",
                        help="network weights (a run's .pth: its moving average when it has one)")


def checkpoint_tool_parser(description: str) -> argparse.ArgumentParser:
    """``tool_parser`` with ``--load-from CKPT`` (required): a tool running a trained network."""
    parser = tool_parser(description)
    add_checkpoint_argument(parser)
    return parser


def add_prediction_arguments(parser: argparse.ArgumentParser) -> None:
    """What a run over images takes: ``--accelerator`` (``--device``), ``--batch``,
    ``--workers`` and ``--conf-threshold``."""
    from srlane.engine.fabric import ACCELERATORS

    parser.add_argument("--accelerator", "--device", dest="accelerator", choices=ACCELERATORS,
                        help="auto: CUDA when present, else CPU (default: the config's accelerator, 'auto')")
    parser.add_argument("--batch", type=at_least(1), default=8, metavar="B",
                        help="images or frames per forward pass (default: 8)")
    parser.add_argument("--workers", type=at_least(0), default=2, metavar="N",
                        help="image reading processes (default: 2)")
    parser.add_argument("--conf-threshold", type=float, metavar="T",
                        help="lane score threshold (default: the config's test_parameters.conf_threshold)")


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """``--precision``, ``--[no-]fold-bn``, ``--[no-]channels-last``, ``--compile``: each left
    unset (None) unless given, so that the config's ``inference`` values stand."""
    group = parser.add_argument_group("inference", "how the network runs (default: the config's inference dict)")
    for field in dataclasses.fields(InferenceOptions):
        flag = "--" + field.name.replace("_", "-")
        if field.name in AUTO_FIELDS:  # on or off; unset: the config's value ("auto" by default)
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                               help=field.metadata["help"])
        else:
            group.add_argument(flag, choices=ALLOWED[field.name], default=None, help=field.metadata["help"])


def inference_options_from_args(args: argparse.Namespace,
                                base: InferenceOptions = InferenceOptions()) -> InferenceOptions:
    """``base`` (e.g. ``build_inference_options(cfg)``) with the flags that were given."""
    given = {field.name: getattr(args, field.name) for field in dataclasses.fields(InferenceOptions)}
    return dataclasses.replace(base, **{name: value for name, value in given.items() if value is not None})


def config_from_args(args: argparse.Namespace) -> Config:
    """The experiment config ``args.config`` with the ``--set`` overrides."""
    from srlane.engine.defaults import load_experiment

    return load_experiment(args.config, args.set)


def device_from_args(args: argparse.Namespace, cfg: Config) -> torch.device:
    """``--accelerator``, else the config's ``accelerator``, as a device; ConfigError (one line)
    when CUDA is asked for and absent."""
    from srlane.engine.fabric import resolve_accelerator

    return torch.device(resolve_accelerator(args.accelerator or cfg.accelerator))
