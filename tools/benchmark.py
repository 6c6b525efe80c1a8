"""Benchmarks of the data pipeline, the training iteration and the metric.

    python tools/benchmark.py data [--json OUT]     dataset items per second (one process, one thread)
    python tools/benchmark.py loader [--json OUT]   training loader samples/s with 0, 1, 2 workers
    python tools/benchmark.py metric [--json OUT]   CULane metric: ms per image, full-test seconds
    python tools/benchmark.py train [--json OUT]    steady training iteration: data wait, step, cached-batch step
    python tools/benchmark.py versus --baseline DIR training item and step against another checkout
"""
import argparse

from throughput import data, loader, metric, train, versus  # tools/throughput/, next to this script

BENCHMARKS = {"data": data, "loader": loader, "metric": metric, "train": train, "versus": versus}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="name", required=True)
    for name, module in BENCHMARKS.items():
        module.add_arguments(sub.add_parser(name, help=module.__doc__.strip().splitlines()[0]))
    args = parser.parse_args()
    BENCHMARKS[args.name].run(args)


if __name__ == "__main__":
    main()
