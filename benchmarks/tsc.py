"""Ours (``drnn train --data`` with no other flag) beside 1-NN DTW and MiniRocket on archive sets, side by side.

    python benchmarks/tsc.py --sets GunPoint,ECG200 --ucr-dir DIR --seeds 1,2,3 -o benchmarks/results/tsc.json

``--ucr-dir``: a folder of the UCR 2018 archive's NAME_TRAIN.tsv / NAME_TEST.tsv (sets sktime bundles need
none). The JSON (and its .md table beside it) is rewritten after every result; run again to resume.
"""

import argparse
import sys
from pathlib import Path

from dilated_rnn.tools.tsc import ENSEMBLE, ENSEMBLE_SIZE, METHODS, run_panel

PANEL = ("ACSF1,ArrowHead,BasicMotions,GunPoint,ItalyPowerDemand,JapaneseVowels,OSULeaf,PLAID,Adiac,Beef,BeetleFly,"
         "CBF,Car,CricketX,DistalPhalanxOutlineCorrect,ECG200,ECG5000,Earthquakes,FiftyWords,Fish")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default=PANEL, help="comma-separated set names (default: the twenty of the panel)")
    p.add_argument("--ucr-dir", type=Path, default=None, help="folder of NAME_TRAIN.tsv / NAME_TEST.tsv files")
    p.add_argument("--seeds", default="1,2,3", help="seeds of our runs, comma-separated")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="comma-separated: " + ", ".join(METHODS) + f", {ENSEMBLE} (ours, --members members)")
    p.add_argument("--members", type=int, default=ENSEMBLE_SIZE,
                   help=f"members of the ensemble (seeds --seeds' first and on; default {ENSEMBLE_SIZE})")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads of our runs")
    p.add_argument("-o", "--out", type=Path, required=True, help="the JSON to write (and resume from)")
    args = p.parse_args(argv)
    run_panel([s for s in args.sets.split(",") if s], args.out, args.ucr_dir,
              tuple(int(s) for s in args.seeds.split(",")), tuple(args.methods.split(",")), args.threads,
              say=lambda line: print(line, flush=True), members=args.members)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
