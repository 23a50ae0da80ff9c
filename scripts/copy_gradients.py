"""How much of the copy task's recall gradient reaches the symbols at initialisation, per cell and init.

    python scripts/copy_gradients.py --delay 500      # 9 x 10 units, dilations 1..256 or all 1, float64

For each cell, initialisation and stack (dilated or not), the geometric mean over ``--seeds`` models of
``copy_task.recall_gradients``: the norm of the recall loss's gradient at the ten symbol steps and at the
ten steps before the delimiter.
"""

import argparse
import statistics
import sys

import torch

from dilated_rnn.config import INITS
from dilated_rnn.data.copy_task import CLASSES, TOKENS
from dilated_rnn.model import DilatedRNNClassifier
from dilated_rnn.tools.analysis import recall_gradients

LAYERS, UNITS = 9, 10


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--delay", type=int, default=500, help="the copy task's T")
    p.add_argument("--seeds", type=int, default=4, help="models drawn per row")
    p.add_argument("--count", type=int, default=64, help="sequences per model")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print("| cell | dilations | init | symbols | recent |\n|---|---|---|---|---|")
    for dilated in (True, False):
        dilations = [2**i if dilated else 1 for i in range(LAYERS)]
        for init in INITS:
            for cell in ("rnn", "lstm", "gru"):
                reach = []
                for seed in range(args.seeds):
                    torch.manual_seed(seed)
                    model = DilatedRNNClassifier(TOKENS, [UNITS] * LAYERS, dilations, cell, len(CLASSES), init=init,
                                                 readout="every").double()
                    reach.append(recall_gradients(model, args.delay, args.count))
                means = [statistics.geometric_mean(r[k] for r in reach) for k in ("symbols", "recent")]
                print(f"| {cell} | {'1..' + str(dilations[-1]) if dilated else '1'} | {init} | {means[0]:.2e} | "
                      f"{means[1]:.2e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
