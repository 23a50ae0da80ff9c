"""Plot accuracy against the share of each sequence seen, from the JSON summaries ``drnn stream --labels`` writes.

    python scripts/plot_anytime.py "lstm-mnist=runs/anytime/lstm-mnist.json" \
        "JapaneseVowels=runs/anytime/jv.json" -o results/anytime.png
"""

import argparse
import json
import sys
from pathlib import Path

from dilated_rnn.tools.plotting import plot_anytime


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("curves", nargs="+", help="LABEL=SUMMARY.json, one per line of the plot")
    p.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    args = p.parse_args(argv)
    curves = {}
    for item in args.curves:
        label, _, path = item.partition("=")
        summary = json.loads(Path(path).read_text())
        if "anytime" not in summary:
            p.error(f"{path}: no anytime curve; run drnn stream with --labels")
        curves[label] = summary["anytime"]
    plot_anytime(curves, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
