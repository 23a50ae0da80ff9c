"""``drnn``: the command line, a thin layer over the library.

Each command parses flags, calls one library function and prints its result.
Errors in user input end with a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .errors import UserError

DEFAULT_DILATIONS = "1,2,4,8,16,32,64,128,256"


def _int_list(flag: str):
    def parse(text: str) -> tuple[int, ...]:
        try:
            return tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: expected comma-separated integers, got {text!r}") from None

    return parse


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None,
                   help="MNIST IDX files (raw or .gz); fetched there if absent "
                        "(default: $DRNN_DATA or ~/.cache/dilated-rnn/mnist)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's choice)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drnn", description="Dilated RNNs for sequential MNIST.", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    t = sub.add_parser("train", help="train a classifier on pixel MNIST", formatter_class=fmt, allow_abbrev=False)
    t.add_argument("--run-dir", type=Path, default=None, help="output directory (default: runs/<cell>[-permuted])")
    t.add_argument("--resume", type=Path, metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last.pt, with its stored config")
    t.add_argument("--cell", "-type", type=str.lower, default="lstm", choices=("rnn", "lstm", "gru"), help="cell")
    t.add_argument("--steps", "-epoch", type=int, default=30000, help="training steps (the reference's -epoch)")
    t.add_argument("--batch-size", "-batch_size", type=int, default=128, help="batch size")
    t.add_argument("--lr", "-lr", type=float, default=1e-3, help="learning rate")
    t.add_argument("--optimizer", choices=("rmsprop", "adam"), default="rmsprop",
                   help="rmsprop is TensorFlow's (decay 0.9, mean square starting at 1)")
    t.add_argument("--momentum", type=float, default=0.0, help="RMSProp momentum")
    t.add_argument("--clip", type=float, default=0.0, help="max gradient norm (0: no clipping)")
    t.add_argument("--schedule", choices=("constant", "cosine"), default="constant", help="learning-rate schedule")
    t.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    t.add_argument("--permute", action="store_true", help="permuted MNIST (fixed pixel permutation from --seed)")
    t.add_argument("--hidden-sizes", type=_int_list("--hidden-sizes"), default=(20,),
                   help="units per layer, comma-separated; one value is used for every layer")
    t.add_argument("--dilations", type=_int_list("--dilations"), default=DEFAULT_DILATIONS,
                   help="dilation per layer, comma-separated")
    t.add_argument("--seed", type=int, default=92916, help="seed of initialisation, batch order and permutation")
    t.add_argument("--eval-every", type=int, default=1000, help="validate every N steps")
    t.add_argument("--log-every", type=int, default=100, help="log the training loss every N steps")
    t.add_argument("--eval-batch-size", type=int, default=1000, help="batch size of evaluation")
    t.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    t.add_argument("--val-limit", type=int, default=None, help="use only the first N validation images")
    t.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_data_flags(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint", formatter_class=fmt, allow_abbrev=False)
    e.add_argument("checkpoint", type=Path, help="a .pt checkpoint written by drnn train")
    e.add_argument("--split", choices=("test", "val"), default="test", help="which split")
    e.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    e.add_argument("--limit", type=int, default=None, help="use only the first N images of the split")
    e.add_argument("-o", "--output", type=Path, default=None,
                   help="JSON report path (default: <checkpoint dir>/eval-<split>.json)")
    _add_data_flags(e)
    e.set_defaults(func=cmd_evaluate)
    return parser


def _model_and_train_config(args):
    from .model import ModelConfig
    from .train import TrainConfig

    hidden = args.hidden_sizes * len(args.dilations) if len(args.hidden_sizes) == 1 else args.hidden_sizes
    try:
        model_config = ModelConfig(hidden_sizes=hidden, dilations=args.dilations, cell=args.cell)
    except ValueError as e:
        raise UserError(f"--hidden-sizes/--dilations/--cell: {e}") from None
    try:
        cfg = TrainConfig(
            steps=args.steps, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
            momentum=args.momentum, clip=args.clip, schedule=args.schedule, warmup=args.warmup,
            permute=args.permute, seed=args.seed, eval_every=args.eval_every, log_every=args.log_every,
            eval_batch_size=args.eval_batch_size,
        )
    except ValueError as e:
        raise UserError(f"training flags: {e}") from None
    return model_config, cfg


def _limited(splits, train=None, val=None, test=None):
    for name, limit in (("train", train), ("val", val), ("test", test)):
        if limit is not None and limit < 1:
            raise UserError(f"--{name}-limit must be positive, got {limit}")
    return {"train": splits["train"].subset(train), "val": splits["val"].subset(val), "test": splits["test"].subset(test)}


def cmd_train(args) -> int:
    from .data import load_mnist
    from .evaluate import format_report
    from .train import train

    if args.resume is not None:
        run_dir, model_config, cfg = args.resume, None, None
    else:
        model_config, cfg = _model_and_train_config(args)
        run_dir = args.run_dir or Path("runs") / (model_config.cell + ("-permuted" if cfg.permute else ""))
    splits = _limited(load_mnist(args.data_dir), args.train_limit, args.val_limit, args.test_limit)
    try:
        result = train(run_dir, splits, model_config, cfg, args.device, resume=args.resume is not None,
                       progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted; state saved in {run_dir / 'last.pt'} (continue with --resume {run_dir})", file=sys.stderr)
        return 130
    best = result["best"]
    print(format_report(result["test"], f"test set, best checkpoint (step {best['step']}, "
                                        f"validation {100 * best['val_accuracy']:.2f}%)"))
    print(f"wrote {Path(run_dir) / 'test.json'}")
    return 0


def cmd_evaluate(args) -> int:
    from .checkpoint import load_checkpoint, model_from_checkpoint, permutation_from_checkpoint
    from .data import load_mnist
    from .evaluate import evaluate, format_report
    from .files import write_json
    from .train import resolve_device

    ckpt = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(ckpt, args.checkpoint)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be positive, got {args.limit}")
    split = load_mnist(args.data_dir)[args.split].subset(args.limit)
    dev = resolve_device(args.device)
    report = evaluate(model.to(dev), split, permutation_from_checkpoint(ckpt, args.checkpoint), args.batch_size, dev)
    report = {"checkpoint": str(args.checkpoint), "split": args.split, "model_config": ckpt["model_config"],
              "permuted": ckpt["permutation"] is not None, **report}
    out = args.output or Path(args.checkpoint).parent / f"eval-{args.split}.json"
    write_json(out, report)
    print(format_report(report, f"{args.checkpoint}: {args.split} split"))
    print(f"wrote {out}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            parser.error(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except UserError as e:
        print(f"drnn {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
