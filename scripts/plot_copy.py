"""Plot the copy-memory task's training loss against steps for several runs, with the memoryless baseline.

    python scripts/plot_copy.py runs/copy/lstm-dilated runs/copy/lstm-plain ... -o results/copy/copy-500.png
"""

import argparse
import json
import sys
from pathlib import Path

from dilated_rnn.copy_task import PREFIX, memoryless_loss, parse_delay
from dilated_rnn.plotting import pyplot, save_png

COLORS = {"rnn": "tab:blue", "lstm": "tab:green", "gru": "tab:purple"}  # a cell's two runs share a colour


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories of drnn train --data copy:T")
    p.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    args = p.parse_args(argv)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    delays = set()
    for run in args.runs:
        config = json.loads((run / "config.json").read_text())
        spec, model = config["train"]["data"], config["model"]
        if not spec.startswith(PREFIX):
            p.error(f"{run}: trained on {spec}, not the copy task")
        delays.add(parse_delay(spec))
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        dilated = max(model["dilations"]) > 1
        ax.plot([r["step"] for r in records], [r["train_loss"] for r in records], ls="-" if dilated else "--",
                color=COLORS[model["cell"]], label=f"{model['cell'].upper()}, {'dilated' if dilated else 'not dilated'} "
                                                  f"({len(model['dilations'])} x {model['hidden_sizes'][0]})")
    if len(delays) != 1:
        p.error("the runs have different delays T")
    delay = delays.pop()
    ax.axhline(memoryless_loss(delay), color="black", lw=1, ls=":", label=f"memoryless baseline 10 log 8 / {delay + 20}")
    ax.set_yscale("log")
    ax.set_xlabel("training step (batch 128)")
    ax.set_ylabel("cross-entropy per step (training batch)")
    ax.set_title(f"copy memory, T = {delay}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
