"""Write the synthetic road set (procedural scenes) in the CULane, TuSimple, CurveLanes or OpenLane layout.

    python tools/make_synthetic.py --out datasets/synthetic --format culane --train 1000 --test 300 --seed 0
    python tools/make_synthetic.py --out datasets/synthetic_curvelanes --format curvelanes --workers 2
    python tools/make_synthetic.py --out datasets/synthetic_openlane --format openlane --train 600 --test 200

The same arguments always give byte-identical files. A `.complete` marker holding the parameters
is written last; the trainer regenerates a set whose marker is missing or differs. The CurveLanes
variant mixes 2560x1440, 1570x660 and 1280x720 images and writes the test scenes as `valid`.
The OpenLane variant (1920x1280, splits `training` and `validation`) draws every kind of line
(white or yellow; solid, dashed, double, mixed) and labels the road edges as curbs. Every format
writes each lane's OpenLane category (CULane: a `.lines.categories.txt` sidecar per image).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from srlane.synthetic import LAYOUTS, generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (the data root)")
    parser.add_argument("--format", default="culane", choices=sorted(LAYOUTS), help="dataset layout")
    parser.add_argument("--train", type=int, default=1000, help="number of training scenes")
    parser.add_argument("--test", type=int, default=300, help="number of test scenes (>= 20 fills every category)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (>= 0)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args()
    summary = generate(args.out, fmt=args.format, n_train=args.train, n_test=args.test, seed=args.seed,
                       progress=not args.quiet, workers=args.workers)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
