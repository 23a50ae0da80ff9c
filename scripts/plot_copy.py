"""Plot copy-memory runs against training steps: the training loss with the memoryless baseline, and the
symbols recalled on validation (at least: ``copy_task.recalled_at_least``). Prints a table per run, with
the symbols its best checkpoint recalls on the test split (``copy_task.recalled``, from test.json).

    python scripts/plot_copy.py runs/copy/lstm-dilated runs/copy/lstm-plain ... -o results/copy/copy-500.png
"""

import argparse
import sys
from pathlib import Path

from dilated_rnn.data.copy_task import (
    CATEGORIES,
    PREFIX,
    memoryless_loss,
    parse_delay,
    recalled,
    recalled_at_least,
)
from dilated_rnn.errors import UserError
from dilated_rnn.tools.plotting import pyplot, save_png
from dilated_rnn.tools.report import read_run

COLORS = {"rnn": "tab:blue", "lstm": "tab:green", "gru": "tab:purple"}  # a cell's two runs share a colour
LAST = 500  # the table's training loss is the mean over this many last steps


def copy_run(run: Path, error) -> dict:
    try:
        config, records, test = read_run(run)
    except UserError as e:
        error(str(e))
    spec, model = config["train"]["data"], config["model"]
    if not spec.startswith(PREFIX):
        error(f"{run}: trained on {spec}, not the copy task")
    dilated = max(model["dilations"]) > 1
    label = f"{model['cell'].upper()}, {'dilated' if dilated else 'not dilated'} " \
            f"({len(model['dilations'])} x {model['hidden_sizes'][0]})"
    return {"run": run, "delay": parse_delay(spec), "cell": model["cell"], "dilated": dilated, "label": label,
            "records": records, "test": test}


def table_row(r: dict) -> str:
    records, end = r["records"], r["records"][-1]["step"]
    recent = [x["train_loss"] for x in records if x["step"] > end - LAST]
    val = [x for x in records if "val_loss" in x][-1]
    test = r["test"]
    recall = f"{100 * recalled(test['test']['confusion_matrix']):5.1f} % (step {test['best']['step']:,})" if test else "-"
    return f"| {r['label']} | {end:,} | {sum(recent) / len(recent):.4f} | {val['val_loss']:.4f} | {recall} |"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories of drnn train --data copy:T")
    p.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    args = p.parse_args(argv)
    runs = [copy_run(run, p.error) for run in args.runs]
    delays = {r["delay"] for r in runs}
    if len(delays) != 1:
        p.error("the runs have different delays T")
    delay = delays.pop()
    plt = pyplot()
    fig, (loss_ax, recall_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for r in runs:
        style = {"ls": "-" if r["dilated"] else "--", "color": COLORS[r["cell"]], "label": r["label"]}
        loss_ax.plot([x["step"] for x in r["records"]], [x["train_loss"] for x in r["records"]], **style)
        evals = [x for x in r["records"] if "val_accuracy" in x]
        recall_ax.plot([x["step"] for x in evals], [100 * recalled_at_least(x["val_accuracy"], delay) for x in evals],
                       **style)
    loss_ax.axhline(memoryless_loss(delay), color="black", lw=1, ls=":",
                    label=f"memoryless baseline 10 log 8 / {delay + 20}")
    recall_ax.axhline(100 / CATEGORIES, color="black", lw=1, ls=":", label="a guess: 1 in 8")
    loss_ax.set_yscale("log")
    loss_ax.set_ylabel("cross-entropy per step (training batch)")
    recall_ax.set_ylabel("symbols recalled, validation (%, at least)")
    recall_ax.set_ylim(0, 100)
    for ax in (loss_ax, recall_ax):
        ax.set_xlabel("training step (batch 128)")
        ax.grid(alpha=0.3, which="both")
    loss_ax.legend(fontsize=8)
    recall_ax.legend(fontsize=8, handles=recall_ax.get_lines()[-1:])
    fig.suptitle(f"copy memory, T = {delay}")
    fig.tight_layout()
    save_png(fig, args.output)
    print(f"| run | steps | training loss, last {LAST} steps | validation loss, end | recalled on test (best) |")
    print("|---|---|---|---|---|")
    for r in runs:
        print(table_row(r))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
