"""Copy a run's best checkpoint into the package as a pretrained model (safetensors + JSON card).

    python scripts/ship_pretrained.py results/h100-2026-11-25/lstm lstm-mnist --trained-on "one NVIDIA H100"
"""

import argparse
import json
import sys
from pathlib import Path

from dilated_rnn.trained import WEIGHTS_DIR, TrainedModel, save_pretrained
from dilated_rnn.training.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    transform_from_checkpoint,
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a run directory with best.pt and test.json")
    p.add_argument("name", help="the pretrained name, e.g. lstm-mnist")
    p.add_argument("--trained-on", required=True, help="the machine, for the card")
    args = p.parse_args(argv)
    ckpt = load_checkpoint(args.run_dir / "best.pt")
    test = json.loads((args.run_dir / "test.json").read_text())
    card = {
        "test_accuracy": test["test"]["accuracy"],
        "test_examples": test["test"]["num_examples"],
        "best_step": test["best"]["step"],
        "val_accuracy": test["best"]["val_accuracy"],
        "train_config": ckpt["train_config"],
        "train_seconds": test["train_seconds"],
        "trained_on": args.trained_on,
        "source": str(args.run_dir),
        "data": ckpt.get("data"),
    }
    save_pretrained(TrainedModel(model_from_checkpoint(ckpt), transform_from_checkpoint(ckpt)), card, WEIGHTS_DIR, args.name)
    print(f"wrote {WEIGHTS_DIR / args.name}.safetensors and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
