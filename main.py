"""Train or evaluate SRLane with one config file.

examples:
  python main.py configs/srlane_r18_synthetic.py                    # quickstart on CPU
  python main.py configs/srlane_r18_culane.py --gpus 0 1            # train (dp over two GPUs)
  python main.py configs/srlane_r18_culane.py --resume              # continue the latest run
  python main.py configs/srlane_r18_culane.py --validate-only --load-from best.pth --view
  python main.py configs/srlane_r18_culane.py --validate-only --load-from work_dirs/srlane_r18_culane/RUN  # its best.pth
  python main.py configs/srlane_r18_culane.py --validate-only --load-from RUN --report  # <work dir>/report/report.html
  python main.py configs/srlane_r18_culane.py --resume work_dirs/srlane_r18_culane/RUN/iter_8000  # or RUN (its last.pth)
  python main.py configs/srlane_r18_culane.py --set total_iter=1000 optimizer.lr=3e-4
  python main.py configs/srlane_r18_synthetic.py --accelerator cpu   # CPU on a GPU machine
  torchrun --nnodes 2 --node-rank R --nproc-per-node 8 --master-addr HOST main.py configs/srlane_r18_culane.py \\
      --gpus 0 1 2 3 4 5 6 7 --set strategy=ddp num_nodes=2        # on each of 2 machines, R = 0, 1
"""
from __future__ import annotations

import argparse
import glob
import os

from srlane.config import ConfigError
from srlane.engine.checkpoint import resolve_checkpoint
from srlane.engine.defaults import load_experiment
from srlane.engine.distributed import RankFailure
from srlane.engine.fabric import ACCELERATORS
from srlane.engine.build import build_runner
from srlane.engine.recorder import default_work_dir
from srlane.engine.reporting import write_validation_report
from srlane.engine.results import validate_once
from srlane.synthetic import preparation
from srlane.cli import add_report_argument, run_cli


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment config file (see configs/)")
    parser.add_argument("--gpus", nargs="+", type=int, default=[0],
                        help="GPU ids; on a machine without CUDA, one CPU process per id (default: 0)")
    parser.add_argument("--accelerator", choices=ACCELERATORS,
                        help="auto: CUDA when present, else CPU (default: the config's accelerator, 'auto')")
    parser.add_argument("--validate-only", "--validate", dest="validate_only", action="store_true",
                        help="evaluate the validation split, print the metric table and write results.json in the "
                             "run folder, no training")
    parser.add_argument("--view", action="store_true",
                        help="write one picture per validated image to <work dir>/visualization")
    add_report_argument(parser)
    parser.add_argument("--load-from", "--load_from", dest="load_from", metavar="CKPT",
                        help="start from these network weights: a .pth file (a run's or a released one), a run "
                             "folder (its best.pth) or RUN/NAME without .pth (RUN/best, RUN/last, RUN/iter_1000)")
    parser.add_argument("--resume", nargs="?", const="latest", metavar="CKPT",
                        help="continue a run from CKPT: a .pth file, a run folder (its last.pth) or RUN/NAME without "
                             ".pth (RUN/iter_1000) (default: the newest last.pth of this config)")
    parser.add_argument("--work-dir", "--work_dirs", dest="work_dir", metavar="DIR",
                        help="run folder (default: <work_dirs>/<config name>/<timestamp>; with --resume, the checkpoint's folder)")
    parser.add_argument("--seed", type=int, help="same as --set seed=N")
    parser.add_argument("--set", nargs="+", default=[], action="extend", metavar="KEY=VALUE",
                        help="override config keys, dotted for nested ones; values are Python literals")
    args = parser.parse_args(argv)
    if args.report and not args.validate_only:
        parser.error("--report goes with --validate-only (a training run: --set report.tensorboard=True)")
    return args


def latest_checkpoint(work_dirs: str, config_path: str) -> str:
    """The newest ``last.pth`` under ``<work_dirs>/<config name>/``."""
    name = os.path.splitext(os.path.basename(config_path))[0]
    found = glob.glob(os.path.join(work_dirs, name, "*", "last.pth"))
    if not found:
        raise FileNotFoundError(f"--resume: no last.pth under {os.path.join(work_dirs, name)}; give the checkpoint path")
    return max(found, key=os.path.getmtime)


def check_work_dir(path: str) -> None:
    """ConfigError when a folder on the way to ``path`` is a file."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"--work-dir {path}: {existing} is a file, not a folder")


def main(argv: list[str] | None = None) -> dict | None:
    """Run the command line ``argv``; returns the metrics of ``--validate-only``."""
    args = parse_args(argv)
    overrides = args.set + ([f"seed={args.seed}"] if args.seed is not None else [])
    overrides += [f"accelerator={args.accelerator!r}"] if args.accelerator else []
    cfg = load_experiment(args.config, overrides)
    if args.resume == "latest":
        resume = latest_checkpoint(cfg.work_dirs, args.config)
    else:
        resume = args.resume and resolve_checkpoint(args.resume, "last.pth", "--resume")
    load_from = args.load_from and resolve_checkpoint(args.load_from, "best.pth", "--load-from")
    work_dir = args.work_dir or (os.path.dirname(os.path.abspath(resume)) if resume
                                 else default_work_dir(cfg.work_dirs, args.config))
    check_work_dir(work_dir)

    runner = build_runner(cfg, work_dir, gpus=args.gpus, view=args.view, prepare=preparation(cfg.dataset, int(cfg.workers)),
                          load_from=load_from, resume=None if args.validate_only else resume,
                          report=args.report and args.validate_only)
    if args.validate_only:
        def report() -> None:
            facts = [("checkpoint", os.path.abspath(load_from) if load_from else "the initial weights"),
                     ("config", os.path.abspath(args.config)), ("split", str(cfg.dataset.val_split))]
            path = write_validation_report(cfg, args.config, runner.validate, runner.recorder.work_dir, facts,
                                           run_dir=os.path.dirname(os.path.abspath(load_from)) if load_from else None)
            if path:
                runner.recorder.info(f"wrote the report {path}")

        return validate_once(runner, cfg.get("test_parameters") or {}, load_from, report if args.report else None)
    runner.train()
    return None


if __name__ == "__main__":
    run_cli(main, FloatingPointError, RankFailure)
