"""Summarise finished runs of one recipe trained from different seeds: test accuracy mean ± std.

    python scripts/seed_spread.py runs/spread/rnn-pmnist-seed1 runs/spread/rnn-pmnist-seed2 ...

Each run directory needs the `test.json` that `drnn train` writes at the end. The standard deviation is
the sample one (n - 1), as in the README's UCR/UEA table.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories of finished drnn train runs")
    args = p.parse_args(argv)
    if len(args.runs) < 2:
        p.error("need at least two runs for a spread")
    test, val = [], []
    for run in args.runs:
        try:
            report = json.loads((run / "test.json").read_text())
            seed = json.loads((run / "config.json").read_text())["train"]["seed"]
        except (OSError, ValueError, KeyError) as e:
            print(f"error: {run}: expected a finished run directory with test.json and config.json ({e})",
                  file=sys.stderr)
            return 2
        test.append(100 * report["test"]["accuracy"])
        val.append(100 * report["best"]["val_accuracy"])
        print(f"{run}: seed {seed}, best step {report['best']['step']}, validation {val[-1]:.2f} %, "
              f"test {test[-1]:.2f} %, {report['train_seconds'] / 60:.0f} min")
    print(f"test {statistics.mean(test):.2f} ± {statistics.stdev(test):.2f} %, "
          f"validation {statistics.mean(val):.2f} ± {statistics.stdev(val):.2f} % ({len(test)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
