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
from .presets import PRESETS

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


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): `drnn train: error: ...`, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_model_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="a .pt checkpoint written by drnn train, or pretrained:NAME")
    p.add_argument("--pretrained", metavar="NAME", default=None, help="a shipped model instead (drnn pretrained)")


def _source(args) -> str:
    """The model argument: a checkpoint path or pretrained:NAME."""
    from .pretrained import PREFIX

    if (args.checkpoint is None) == (args.pretrained is None):
        raise UserError("give a checkpoint path or --pretrained NAME (one of them)")
    return args.checkpoint if args.pretrained is None else PREFIX + args.pretrained


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="drnn", description="Dilated RNNs for sequential MNIST.", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    t = sub.add_parser("train", help="train a classifier on pixel MNIST", formatter_class=fmt, allow_abbrev=False)
    t.add_argument("--run-dir", type=Path, default=None, help="output directory (default: runs/<preset>, or runs/<cell>[-permuted])")
    t.add_argument("--resume", type=Path, metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last.pt, with its stored config")
    t.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a named recipe: cell, task, optimizer, lr, schedule, clipping; flags given explicitly win")
    t.add_argument("--cell", "-type", type=str.lower, default=None, choices=("rnn", "lstm", "gru"),
                   help="cell (default: lstm)")
    t.add_argument("--steps", "-epoch", type=int, default=30000, help="training steps (the reference's -epoch)")
    t.add_argument("--batch-size", "-batch_size", type=int, default=128, help="batch size")
    t.add_argument("--lr", "-lr", type=float, default=None, help="learning rate (default: 1e-3)")
    t.add_argument("--optimizer", choices=("rmsprop", "adam"), default=None,
                   help="rmsprop is TensorFlow's (decay 0.9, mean square starting at 1) (default: rmsprop)")
    t.add_argument("--momentum", type=float, default=None, help="RMSProp momentum (default: 0)")
    t.add_argument("--clip", type=float, default=None, help="max gradient norm, 0: no clipping (default: 0)")
    t.add_argument("--weight-decay", type=float, default=None,
                   help="decoupled weight decay on weight matrices (AdamW's rule), 0: none (default: 0)")
    t.add_argument("--weight-decay-start", type=int, default=None,
                   help="first step with weight decay; none before it (default: 0)")
    t.add_argument("--dropout", type=float, default=None,
                   help="dropout on each layer's outputs on their way up, not along the recurrence; "
                        "training only, 0: none (default: 0)")
    t.add_argument("--ema", type=float, default=None,
                   help="decay of an exponential moving average of the weights, which is then what is "
                        "validated, kept as best.pt and tested; 0: none (default: 0)")
    t.add_argument("--label-smoothing", type=float, default=None,
                   help="spread this much of each training target evenly over the classes; "
                        "the training loss only, 0: none (default: 0)")
    t.add_argument("--sam", type=float, default=None,
                   help="sharpness-aware minimisation: radius of the weight perturbation (twice the compute "
                        "per step), 0: none (default: 0)")
    t.add_argument("--sam-start", type=int, default=None,
                   help="first step with sharpness-aware minimisation; none before it (default: 0)")
    t.add_argument("--init", choices=("tf", "orthogonal"), default=None,
                   help="cell initialisation: tf (the paper's code, Glorot-uniform) or orthogonal gate "
                        "blocks (default: tf)")
    t.add_argument("--forget-bias", type=float, default=None,
                   help="initial bias of the LSTM forget gate (default: 1)")
    t.add_argument("--schedule", choices=("constant", "cosine"), default=None,
                   help="learning-rate schedule (default: constant)")
    t.add_argument("--warmup", type=int, default=None, help="linear warm-up steps (default: 0)")
    t.add_argument("--permute", action="store_true", default=None,
                   help="permuted MNIST (fixed pixel permutation from --seed)")
    t.add_argument("--hidden-sizes", type=_int_list("--hidden-sizes"), default=(20,),
                   help="units per layer, comma-separated; one value is used for every layer")
    t.add_argument("--dilations", type=_int_list("--dilations"), default=DEFAULT_DILATIONS,
                   help="dilation per layer, comma-separated")
    t.add_argument("--seed", type=int, default=92916, help="seed of initialisation, batch order and permutation")
    t.add_argument("--eval-every", type=int, default=1000, help="validate every N steps")
    t.add_argument("--log-every", type=int, default=100, help="log the training loss every N steps")
    t.add_argument("--eval-batch-size", type=int, default=1000, help="batch size of evaluation")
    t.add_argument("--train-limit", type=int, default=None, help="use only the first N training images (smoke runs)")
    t.add_argument("--val-limit", type=int, default=None, help="use only the first N validation images")
    t.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_data_flags(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint", formatter_class=fmt, allow_abbrev=False)
    _add_model_source(e)
    e.add_argument("--split", choices=("test", "val"), default="test", help="which split")
    e.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    e.add_argument("--limit", type=int, default=None, help="use only the first N images of the split")
    e.add_argument("-o", "--output", type=Path, default=None,
                   help="JSON report path (default: <checkpoint dir>/eval-<split>.json, "
                        "or ./eval-<name>-<split>.json for --pretrained)")
    _add_data_flags(e)
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="export a checkpoint to ONNX, checked against PyTorch",
                       formatter_class=fmt, allow_abbrev=False)
    _add_model_source(x)
    x.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    x.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32", help="weights and compute")
    x.add_argument("--opset", type=int, default=17, help="ONNX opset; 11 for the Ascend ATC tool")
    x.add_argument("--input-name", default="Placeholder", help="input tensor name")
    x.add_argument("--output-name", default="the_outputs", help="output tensor name")
    x.add_argument("--check-images", type=int, default=512, help="test images used for the parity check")
    _add_data_flags(x)
    x.set_defaults(func=cmd_export)

    b = sub.add_parser("make-bins", help="write a split as one .bin per image plus labels.npy",
                       formatter_class=fmt, allow_abbrev=False)
    b.add_argument("-o", "--output", type=Path, required=True, help="new folder to create")
    b.add_argument("--split", choices=("test", "val", "train"), default="test", help="which split")
    b.add_argument("--limit", type=int, default=None, help="only the first N images")
    _add_data_flags(b)
    b.set_defaults(func=cmd_make_bins)

    i = sub.add_parser("infer", help="run a model over a folder of .bin inputs", formatter_class=fmt,
                       allow_abbrev=False)
    i.add_argument("model", help=".onnx file (ONNX Runtime), or a .pt checkpoint or pretrained:NAME (PyTorch)")
    i.add_argument("input_dir", type=Path, help="folder of NNNNN.bin inputs (784 float32 each)")
    i.add_argument("-o", "--output", type=Path, required=True, help="folder for NNNNN_output_0.bin files")
    i.add_argument("--batch-size", type=int, default=256, help="1 measures per-image latency")
    i.add_argument("--threads", type=int, default=1, help="intra-op threads")
    i.add_argument("--output-dtype", choices=("fp32", "fp16"), default="fp32", help="dtype of the logits files")
    i.add_argument("--no-progress", action="store_true", help="no progress bar")
    i.set_defaults(func=cmd_infer)

    a = sub.add_parser("accuracy", help="accuracy of a folder of outputs against labels.npy",
                       formatter_class=fmt, allow_abbrev=False)
    a.add_argument("output_dir", type=Path, help="folder of NNNNN_output_0.bin files")
    a.add_argument("labels", type=Path, help="labels.npy: class indices or one-hot rows")
    a.add_argument("--dtype", choices=("auto", "fp32", "fp16"), default="auto", help="dtype of the outputs")
    a.add_argument("--num-classes", type=int, default=10, help="logits per output file")
    a.add_argument("-o", "--report", type=Path, default=None, help="JSON path (default: OUTPUT_DIR/accuracy.json)")
    a.set_defaults(func=cmd_accuracy)

    q = sub.add_parser("pipeline", help="export fp32/fp16/int8, make bins, infer, report accuracy and speed",
                       formatter_class=fmt, allow_abbrev=False)
    _add_model_source(q)
    q.add_argument("-o", "--work-dir", type=Path, default=Path("deploy"), help="folder for models, bins, outputs")
    q.add_argument("--limit", type=int, default=None, help="only the first N test images")
    q.add_argument("--batch-size", type=int, default=256, help="batch size of the throughput run")
    q.add_argument("--batch-threads", type=int, default=2, help="threads of the throughput run")
    q.add_argument("--precisions", default="fp32,fp16,int8", help="comma-separated")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.add_argument("--data-dir", type=Path, default=None, help="MNIST IDX files (see drnn train --help)")
    q.set_defaults(func=cmd_pipeline)

    r = sub.add_parser("mrl", help="mean recurrent length of a dilation schedule (the paper's memory measure)",
                       formatter_class=fmt, allow_abbrev=False)
    r.add_argument("--dilations", type=_int_list("--dilations"), default=DEFAULT_DILATIONS, help="per layer")
    r.add_argument("-m", "--cycle-length", type=int, default=None, help="cycle length (default: largest dilation)")
    r.add_argument("--plot", type=Path, default=None, help="write a PNG of the curves against cycle length here")
    r.add_argument("--max-cycle", type=int, default=1024, help="largest cycle length on the plot")
    r.set_defaults(func=cmd_mrl)

    w = sub.add_parser("report", help="PNGs and a Markdown summary of a training run", formatter_class=fmt,
                       allow_abbrev=False)
    w.add_argument("run_dir", type=Path, help="a run directory written by drnn train")
    w.set_defaults(func=cmd_report)

    pl = sub.add_parser("pretrained", help="list the models shipped with the package", allow_abbrev=False)
    pl.set_defaults(func=cmd_pretrained)

    k = sub.add_parser("bench", help="speed: training step (fast vs. full) and inference latency/throughput",
                       formatter_class=fmt, allow_abbrev=False)
    k.add_argument("--what", default="train,infer", help="comma-separated: train, infer")
    k.add_argument("--cells", default="lstm,gru,rnn", help="comma-separated cells")
    k.add_argument("--threads", type=int, default=2, help="threads of training steps and batched inference")
    k.add_argument("--steps", type=int, default=5, help="timed training steps per variant (median reported)")
    k.add_argument("--warmup", type=int, default=2, help="untimed training steps per variant first")
    k.add_argument("--batch-size", type=int, default=128, help="training batch size")
    k.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N (training steps only)")
    k.add_argument("--backends", default="pytorch,onnxruntime", help="inference backends, comma-separated")
    k.add_argument("--latency-images", type=int, default=500, help="batch-1 calls timed (one thread)")
    k.add_argument("--batch-images", type=int, default=10000, help="images in the throughput run")
    k.add_argument("--infer-batch-size", type=int, default=1000, help="batch size of the throughput run")
    k.add_argument("-o", "--out", type=Path, default=None, help="write the results as JSON here")
    k.set_defaults(func=cmd_bench)
    return parser


def _model_and_train_config(args):
    from .model import ModelConfig
    from .presets import DEFAULTS, resolve
    from .train import TrainConfig

    recipe = resolve(args.preset, {k: getattr(args, k) for k in DEFAULTS})
    hidden = args.hidden_sizes * len(args.dilations) if len(args.hidden_sizes) == 1 else args.hidden_sizes
    try:
        model_config = ModelConfig(hidden_sizes=hidden, dilations=args.dilations, cell=recipe.pop("cell"))
    except ValueError as e:
        raise UserError(f"--hidden-sizes/--dilations/--cell: {e}") from None
    try:
        cfg = TrainConfig(
            steps=args.steps, batch_size=args.batch_size, seed=args.seed, eval_every=args.eval_every,
            log_every=args.log_every, eval_batch_size=args.eval_batch_size, train_limit=args.train_limit,
            val_limit=args.val_limit, test_limit=args.test_limit, **recipe,
        )
    except ValueError as e:
        raise UserError(f"training flags: {e}") from None
    return model_config, cfg


def cmd_train(args) -> int:
    from .data import load_mnist
    from .distributed import shutdown
    from .evaluate import format_report
    from .train import train

    if args.resume is not None:
        run_dir, model_config, cfg = args.resume, None, None
    else:
        model_config, cfg = _model_and_train_config(args)
        run_dir = args.run_dir or Path("runs") / (args.preset or model_config.cell + ("-permuted" if cfg.permute else ""))
    splits = load_mnist(args.data_dir)
    try:
        result = train(run_dir, splits, model_config, cfg, args.device, resume=args.resume is not None,
                       progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted; state saved in {run_dir / 'last.pt'} (continue with --resume {run_dir})", file=sys.stderr)
        return 130
    finally:
        shutdown()
    if "test" not in result:  # a rank other than 0 under torchrun
        return 0
    best = result["best"]
    print(format_report(result["test"], f"test set, best checkpoint (step {best['step']}, "
                                        f"validation {100 * best['val_accuracy']:.2f}%)"))
    print(f"wrote {Path(run_dir) / 'test.json'}")
    return 0


def cmd_evaluate(args) -> int:
    from .data import load_mnist
    from .distributed import resolve_device
    from .evaluate import evaluate, format_report
    from .files import write_json
    from .pretrained import load_model

    source = _source(args)
    model, perm = load_model(source)
    split = load_mnist(args.data_dir)[args.split].subset(_positive("--limit", args.limit))
    dev = resolve_device(args.device)
    report = evaluate(model.to(dev), split, perm, args.batch_size, dev)
    report = {"checkpoint": source, "split": args.split, "model_config": model.config.to_dict(),
              "permuted": perm is not None, **report}
    default = (Path(f"eval-{args.pretrained}-{args.split}.json") if args.pretrained
               else Path(args.checkpoint).parent / f"eval-{args.split}.json")
    out = args.output or default
    write_json(out, report)
    print(format_report(report, f"{source}: {args.split} split"))
    print(f"wrote {out}")
    return 0


def _positive(flag: str, value):
    if value is not None and value < 1:
        raise UserError(f"{flag} must be positive, got {value}")
    return value


def cmd_export(args) -> int:
    from .data import load_mnist
    from .export import export_onnx
    from .pretrained import load_model

    model, perm = load_model(_source(args))
    images = load_mnist(args.data_dir)["test"].images[: _positive("--check-images", args.check_images)]
    report = export_onnx(model, perm, args.output, images, args.precision, args.opset, args.input_name,
                         args.output_name)
    p = report["parity"]
    print(f"wrote {report['path']} ({report['precision']}, opset {report['opset']}, {report['bytes'] / 1024:.1f} kB; "
          f"ops: {', '.join(report['ops'])})")
    print(f"parity with PyTorch on {p['images']} test images: max |diff| batch 1 {p['max_abs_diff_batch1']:.2e}, "
          f"batch {p['batch']} {p['max_abs_diff_batched']:.2e}, argmax agreement {100 * p['argmax_agreement']:.2f}%")
    return 0


def cmd_make_bins(args) -> int:
    from .bins import write_bins
    from .data import load_mnist

    split = load_mnist(args.data_dir)[args.split].subset(_positive("--limit", args.limit))
    n = write_bins(split.images, split.labels, args.output)
    print(f"wrote {n} .bin files and labels.npy to {args.output}")
    return 0


def cmd_infer(args) -> int:
    from .infer import infer_folder

    stats = infer_folder(args.model, args.input_dir, args.output, args.batch_size, args.threads,
                         args.output_dtype, progress=not args.no_progress)
    print(f"{stats['images']} images, batch {stats['batch_size']}, {stats['threads']} thread(s), {stats['backend']}: "
          f"{stats['images_per_s']:.0f} images/s; latency per call mean {stats['latency_ms_mean']:.3f} ms, "
          f"p50 {stats['latency_ms_p50']:.3f} ms, p99 {stats['latency_ms_p99']:.3f} ms")
    print(f"wrote {args.output / 'infer.json'}")
    return 0


def cmd_accuracy(args) -> int:
    from .accuracy import accuracy_report, format_accuracy
    from .files import write_json

    report = accuracy_report(args.output_dir, args.labels, args.dtype, _positive("--num-classes", args.num_classes))
    out = args.report or args.output_dir / "accuracy.json"
    write_json(out, report)
    print(format_accuracy(report))
    print(f"wrote {out}")
    return 0


def cmd_pipeline(args) -> int:
    from .data import load_mnist
    from .pipeline import format_table, run_pipeline

    test = load_mnist(args.data_dir)["test"].subset(_positive("--limit", args.limit))
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    result = run_pipeline(_source(args), test, args.work_dir, precisions, args.batch_size, args.batch_threads,
                          progress=not args.no_progress)
    print(format_table(result))
    print(f"wrote {args.work_dir / 'pipeline.json'}")
    return 0


def cmd_pretrained(args) -> int:
    from .pretrained import PREFIX, available

    print(f"{'name':14} {'cell':5} {'task':10} {'test acc':>8}  use as")
    for card in available():
        task = "permuted" if card["permutation"] is not None else "unpermuted"
        print(f"{card['name']:14} {card['model_config']['cell']:5} {task:10} {100 * card['test_accuracy']:7.2f}%  "
              f"{PREFIX}{card['name']}")
    return 0


def cmd_mrl(args) -> int:
    from .analysis import curves, mean_recurrent_length, plot_curves, skip_rnn_mean_recurrent_length

    if not args.dilations or any(d < 1 for d in args.dilations):
        raise UserError(f"--dilations must be positive integers, got {list(args.dilations)}")
    m = _positive("--cycle-length", args.cycle_length) or max(args.dilations)
    skip = max(args.dilations)
    print(f"cycle length m = {m}")
    print(f"  DilatedRNN {','.join(map(str, args.dilations))}: {mean_recurrent_length(args.dilations, m):.4f}")
    print(f"  plain RNN: {mean_recurrent_length([1], m):.4f}")
    print(f"  skip RNN (skip {skip}): {skip_rnn_mean_recurrent_length(skip, m):.4f}")
    if args.plot:
        plot_curves(curves(args.dilations, _positive("--max-cycle", args.max_cycle)), args.plot)
        print(f"wrote {args.plot}")
    return 0


def _choices(flag: str, text: str, allowed) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if not items or bad:
        raise UserError(f"{flag}: expected a comma-separated subset of {','.join(allowed)}, got {text!r}")
    return items


def cmd_bench(args) -> int:
    from .bench import bench_inference, bench_train_step, environment
    from .distributed import resolve_device
    from .files import write_json
    from .pretrained import PREFIX, load_model

    what = _choices("--what", args.what, ("train", "infer"))
    cells = _choices("--cells", args.cells, ("rnn", "lstm", "gru"))
    backends = _choices("--backends", args.backends, ("pytorch", "onnxruntime"))
    for flag in ("steps", "batch_size", "latency_images", "batch_images", "infer_batch_size"):
        _positive("--" + flag.replace("_", "-"), getattr(args, flag))
    device = str(resolve_device(args.device))
    results = {"environment": environment(device), "train": [], "infer": []}
    mb = lambda b: f"{b / 2**20:.1f}" if b is not None else "-"
    if "train" in what:
        print(f"training step, batch {args.batch_size}, {args.threads} threads, median of {args.steps} "
              f"(seconds; ratio to full; peak MB)")
        print(f"{'cell':5} {'fused':>8} {'pruned':>8} {'full':>8} {'fused/full':>10} {'pruned/full':>11} "
              f"{'fused MB':>9} {'full MB':>8}")
        for cell in cells:
            r = bench_train_step(cell, args.batch_size, args.steps, args.warmup, device)
            results["train"].append(r)
            get = lambda key, fmt: format(r[key], fmt) if key in r else "-"
            print(f"{cell:5} {get('fused_s', '8.4f'):>8} {r['pruned_s']:8.4f} {r['full_s']:8.4f} "
                  f"{get('fused_ratio', '10.3f'):>10} {r['pruned_ratio']:11.3f} "
                  f"{mb(r.get('fused_peak_bytes')):>9} {mb(r['full_peak_bytes']):>8}", flush=True)
    if "infer" in what:
        print(f"inference, shipped unpermuted models: batch 1 on 1 thread ({args.latency_images} images); "
              f"{args.batch_images} images in batches of {args.infer_batch_size} on {args.threads} threads")
        print(f"{'cell':5} {'backend':12} {'p50 ms':>7} {'p99 ms':>7} {'batched s':>9} {'images/s':>9}")
        for cell in cells:
            model, permutation = load_model(f"{PREFIX}{cell}-mnist")
            for backend in backends:
                r = bench_inference(model, permutation, backend, args.latency_images, args.batch_images,
                                    args.infer_batch_size, args.threads)
                results["infer"].append(r)
                print(f"{cell:5} {backend:12} {r['latency_ms_p50']:7.3f} {r['latency_ms_p99']:7.3f} "
                      f"{r['batched_s']:9.3f} {r['images_per_s']:9.0f}", flush=True)
    if args.out:
        write_json(args.out, results)
        print(f"wrote {args.out}")
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    for name, path in write_report(args.run_dir).items():
        print(f"wrote {path} ({name})")
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
