"""``drnn``: the command line, a thin layer over the library.

Each command parses flags, calls one library function and prints its result.
Errors in user input end with a one-line message and exit status 2; a library
error that names a parameter (``ParameterError``) is reported with the flag that
set it. Heavy modules (torch, Numba, ONNX) load inside the commands, so
``drnn --help`` starts fast. Defaults come from the config dataclasses.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .cells import CELL_NAMES
from .config import (ATC_OPSET, DEFAULT_OPSET, FORMATS, INITS, NORMALIZATIONS, OPTIMIZERS, PRECISIONS, SCHEDULES,
                     ModelConfig, TrainConfig)
from .errors import ParameterError, TrainingDiverged, UserError
from .presets import DEFAULTS, MODEL_SETTINGS, PRESETS, resolve

DATA_DIR_HELP = "MNIST IDX files (raw or .gz); fetched there if absent (default: $DRNN_DATA or ~/.cache/dilated-rnn/mnist)"
DATA_HELP = ("the data: mnist, PATH.npz, PATH_TRAIN.ts (with PATH_TEST.ts beside it), ucr:NAME (bundled with "
             "sktime) or copy:T (the copy-memory task)")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): `drnn train: error: ...`, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Help(argparse.HelpFormatter):
    """Appends ``(default: X)`` to a flag's help once, unless the help states it or there is none to show."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


class _Given(argparse.Action):
    """Stores the value and records that the flag was given (``<dest>_given``), whatever the value."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, self.dest + "_given", True)


def _int_list(flag: str):
    def parse(text: str) -> tuple[int, ...]:
        try:
            return tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: expected comma-separated integers, got {text!r}") from None

    return parse


def _csv(values) -> str:
    return ",".join(map(str, values))


def _command(sub, name: str, help: str, func) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, formatter_class=_Help, allow_abbrev=False)
    p.set_defaults(func=func, command_parser=p)
    return p


def _add_data_flags(p, device: bool = True, data: str | None = "the model's") -> None:
    if data is not None:
        p.add_argument("--data", default=None, help=f"{DATA_HELP} (default: {data})")
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    if device:
        p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
        p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's choice)")


def _add_model_source(p) -> None:
    p.add_argument("checkpoint", nargs="?", default=None, help="a .pt checkpoint written by drnn train, or pretrained:NAME")
    p.add_argument("--pretrained", metavar="NAME", default=None, help="a shipped model instead (drnn pretrained)")


def _recipe_flag(p, name: str, *flags: str, help: str, **kwargs) -> None:
    """A setting a preset may fill: parsed as None when not given; its help shows the default without a preset."""
    p.add_argument(*flags, dest=name, default=None, help=f"{help} (default: {DEFAULTS[name]})", **kwargs)


def _add_train(sub) -> None:
    t = _command(sub, "train", "train a classifier (pixel MNIST, or --data)", cmd_train)
    t.add_argument("--run-dir", type=Path, default=None,
                   help="output directory (default: runs/<preset>, or runs/<cell>[-permuted])")
    t.add_argument("--resume", type=Path, metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last.pt, with its stored config (--steps may move its "
                        "end, at a constant learning rate)")
    t.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a named recipe (cell, task, optimizer, schedule, regularisers); explicit flags win")
    _recipe_flag(t, "cell", "--cell", "-type", type=str.lower, choices=CELL_NAMES, help="recurrent cell")
    _recipe_flag(t, "permute", "--permute", action="store_const", const=True,
                 help="permuted MNIST, or any data of one length (fixed step permutation from --seed)")
    _recipe_flag(t, "optimizer", "--optimizer", choices=OPTIMIZERS,
                 help="rmsprop is TensorFlow's (decay 0.9, mean square starting at 1)")
    _recipe_flag(t, "lr", "--lr", "-lr", type=float, help="peak learning rate")
    _recipe_flag(t, "schedule", "--schedule", choices=SCHEDULES, help="learning-rate schedule")
    _recipe_flag(t, "warmup", "--warmup", type=int, help="linear warm-up steps")
    _recipe_flag(t, "momentum", "--momentum", type=float, help="RMSProp momentum")
    _recipe_flag(t, "clip", "--clip", type=float, help="max gradient norm, 0: no clipping")
    _recipe_flag(t, "weight_decay", "--weight-decay", type=float,
                 help="decoupled weight decay on weight matrices (AdamW's rule), 0: none")
    _recipe_flag(t, "weight_decay_start", "--weight-decay-start", type=int, help="first step with weight decay")
    _recipe_flag(t, "dropout", "--dropout", type=float,
                 help="dropout on each layer's outputs on their way up, not along the recurrence; training only")
    _recipe_flag(t, "ema", "--ema", type=float, help="decay of a moving average of the weights, which is then "
                                                     "what is validated, kept as best.pt and tested; 0: none")
    _recipe_flag(t, "label_smoothing", "--label-smoothing", type=float,
                 help="spread this much of each training target evenly over the classes; 0: none")
    _recipe_flag(t, "sam", "--sam", type=float,
                 help="sharpness-aware minimisation: radius of the weight perturbation (twice the compute per step)")
    _recipe_flag(t, "sam_start", "--sam-start", type=int, help="first step with sharpness-aware minimisation")
    _recipe_flag(t, "init", "--init", choices=INITS,
                 help="cell initialisation: tf (the paper's code, Glorot-uniform) or orthogonal gate blocks")
    _recipe_flag(t, "forget_bias", "--forget-bias", type=float, help="initial bias of the LSTM forget gate")
    m, c = ModelConfig, TrainConfig
    t.add_argument("--hidden-sizes", type=_int_list("--hidden-sizes"), default=str(m.hidden_sizes[0]),
                   help="units per layer, comma-separated; one value is used for every layer")
    t.add_argument("--dilations", type=_int_list("--dilations"), default=None,
                   help="dilation per layer, comma-separated (default: 1, 2, 4, ... while the largest is at most "
                        "half the longest training sequence: 1..256 for MNIST)")
    t.add_argument("--steps", "-epoch", type=int, default=c.steps, action=_Given,
                   help="training steps (the reference's -epoch)")
    t.set_defaults(steps_given=False)  # --resume moves a run's end only when --steps is given
    t.add_argument("--batch-size", "-batch_size", type=int, default=c.batch_size, help="batch size")
    t.add_argument("--seed", type=int, default=c.seed,
                   help="seed of initialisation, batch order, permutation and a drawn validation split")
    t.add_argument("--val-fraction", type=float, default=c.val_fraction,
                   help="share of each class held out for validation where the data gives none (not MNIST)")
    t.add_argument("--select-ties", choices=("earliest", "loss"), default=c.select_ties,
                   help="which of the validations tied at the best accuracy keeps best.pt: the earliest, or the "
                        "lowest validation loss (for small validation sets)")
    t.add_argument("--normalize", choices=("auto", *NORMALIZATIONS), default=c.normalize,
                   help="input standardisation: auto (none for MNIST, channel otherwise), none, channel (per-channel "
                        "statistics of the training split) or sequence (each sequence by its own)")
    t.add_argument("--eval-every", type=int, default=c.eval_every, help="validate every N steps")
    t.add_argument("--log-every", type=int, default=c.log_every, help="log the training loss every N steps")
    t.add_argument("--eval-batch-size", type=int, default=c.eval_batch_size, help="batch size of evaluation")
    for split in ("train", "val", "test"):
        t.add_argument(f"--{split}-limit", type=int, default=None,
                       help=f"use only the first N {split} images, for smoke runs (default: all)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_data_flags(t, data=c.data)


def _add_evaluate(sub) -> None:
    e = _command(sub, "evaluate", "evaluate a checkpoint", cmd_evaluate)
    _add_model_source(e)
    e.add_argument("--split", choices=("test", "val"), default="test", help="which split")
    e.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    e.add_argument("--limit", type=int, default=None, help="use only the first N images of the split (default: all)")
    e.add_argument("-o", "--output", type=Path, default=None,
                   help="JSON report path (default: <checkpoint dir>/eval-<split>.json, "
                        "or ./eval-<name>-<split>.json for --pretrained)")
    _add_data_flags(e)


def _add_export(sub) -> None:
    x = _command(sub, "export", "export a checkpoint to ONNX or OpenVINO IR, checked against PyTorch", cmd_export)
    _add_model_source(x)
    x.add_argument("-o", "--output", type=Path, required=True,
                   help="the file to write: NAME.onnx, or NAME.xml for OpenVINO (weights in NAME.bin)")
    x.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (ONNX Runtime, ATC) or openvino (IR)")
    x.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="weights and compute (openvino: fp32, or fp16 weights with fp32 compute)")
    x.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset; {ATC_OPSET} for the Ascend ATC tool")
    x.add_argument("--input-name", default="Placeholder", help="input tensor name")
    x.add_argument("--output-name", default="the_outputs", help="output tensor name")
    x.add_argument("--check-images", type=int, default=None,
                   help="test sequences used for the parity check (default: 512; 16 with --streaming)")
    x.add_argument("--streaming", action="store_true",
                   help="the one-step graph instead: sample, state and position in; logits, state and position out")
    _add_data_flags(x)


def _add_deploy_files(sub) -> None:
    b = _command(sub, "make-bins", "write a split as one .bin per sequence plus labels.npy", cmd_make_bins)
    b.add_argument("-o", "--output", type=Path, required=True, help="new folder to create")
    b.add_argument("--split", choices=("test", "val", "train"), default="test", help="which split")
    b.add_argument("--limit", type=int, default=None, help="only the first N sequences (default: all)")
    b.add_argument("--seed", type=int, default=TrainConfig.seed, help="seed of a drawn validation split")
    b.add_argument("--val-fraction", type=float, default=TrainConfig.val_fraction, help="its share of each class")
    _add_data_flags(b, device=False, data=TrainConfig.data)

    i = _command(sub, "infer", "run a model over a folder of .bin inputs", cmd_infer)
    i.add_argument("model", help=".onnx file (ONNX Runtime), .xml IR (OpenVINO), or a .pt checkpoint or "
                                 "pretrained:NAME (PyTorch)")
    i.add_argument("input_dir", type=Path, help="folder of NNNNN.bin inputs (T x F float32 each; MNIST: 784)")
    i.add_argument("-o", "--output", type=Path, required=True, help="folder for NNNNN_output_0.bin files")
    i.add_argument("--batch-size", type=int, default=256, help="1 measures per-image latency")
    i.add_argument("--threads", type=int, default=1, help="intra-op threads")
    i.add_argument("--output-dtype", choices=("fp32", "fp16"), default="fp32", help="dtype of the logits files")
    i.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = _command(sub, "stream", "run a model over sequences sample by sample: per-step predictions and latency",
                 cmd_stream)
    s.add_argument("model", help="a .pt checkpoint or pretrained:NAME (PyTorch), or a step graph from drnn export "
                                 "--streaming (ONNX Runtime)")
    s.add_argument("input_dir", type=Path, help="folder of NNNNN.bin inputs (T x F float32 each)")
    s.add_argument("-o", "--output", type=Path, required=True,
                   help="the .npz of per-step predictions to write (a .json summary is written beside it)")
    s.add_argument("--labels", type=Path, default=None, help="labels.npy: adds accuracy against the fraction seen")
    s.add_argument("--batch-size", type=int, default=1, help="sequences streamed side by side")
    s.add_argument("--chunk", type=int, default=1, help="samples per call")
    s.add_argument("--threads", type=int, default=1, help="intra-op threads")

    a = _command(sub, "accuracy", "accuracy of a folder of outputs against labels.npy", cmd_accuracy)
    a.add_argument("output_dir", type=Path, help="folder of NNNNN_output_0.bin files")
    a.add_argument("labels", type=Path, help="labels.npy: class indices or one-hot rows")
    a.add_argument("--dtype", choices=("auto", "fp32", "fp16"), default="auto", help="dtype of the outputs")
    a.add_argument("--num-classes", type=int, default=None,
                   help="logits per output file (default: what infer.json says, else 10)")
    a.add_argument("-o", "--report", type=Path, default=None, help="JSON path (default: OUTPUT_DIR/accuracy.json)")

    q = _command(sub, "pipeline", "export ONNX (fp32/fp16/int8) and OpenVINO IR (fp32/fp16), make bins, infer, "
                                  "report accuracy and speed", cmd_pipeline)
    _add_model_source(q)
    q.add_argument("-o", "--work-dir", type=Path, default=Path("deploy"), help="folder for models, bins, outputs")
    q.add_argument("--limit", type=int, default=None, help="only the first N test sequences (default: all)")
    q.add_argument("--batch-size", type=int, default=256, help="batch size of the throughput run")
    q.add_argument("--batch-threads", type=int, default=2, help="threads of the throughput run")
    q.add_argument("--precisions", default="fp32,fp16,int8", help="comma-separated")
    q.add_argument("--formats", default="onnx,openvino",
                   help="comma-separated: onnx (ONNX Runtime), openvino (IR; fp32 and fp16)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_data_flags(q, device=False)


def _add_tools(sub) -> None:
    m = ModelConfig
    r = _command(sub, "mrl", "mean recurrent length of a dilation schedule (the paper's memory measure)", cmd_mrl)
    r.add_argument("--dilations", type=_int_list("--dilations"), default=_csv(m.dilations), help="per layer")
    r.add_argument("-m", "--cycle-length", type=int, default=None, help="cycle length (default: largest dilation)")
    r.add_argument("--plot", type=Path, default=None, help="write a PNG of the curves against cycle length here")
    r.add_argument("--max-cycle", type=int, default=1024, help="largest cycle length on the plot")

    w = _command(sub, "report", "PNGs and a Markdown summary of a training run", cmd_report)
    w.add_argument("run_dir", type=Path, help="a run directory written by drnn train")

    _command(sub, "pretrained", "list the models shipped with the package", cmd_pretrained)

    k = _command(sub, "bench", "speed: training step (fast vs. full) and inference latency/throughput", cmd_bench)
    k.add_argument("--what", default="train,infer",
                   help="comma-separated: train, infer, stream, lengths, profile (where a fused training step's time goes)")
    k.add_argument("--cells", default=_csv(("lstm", "gru", "rnn")), help="comma-separated cells")
    k.add_argument("--threads", type=int, default=2, help="threads of training steps and batched inference")
    k.add_argument("--steps", type=int, default=5, help="timed training steps per variant (median reported)")
    k.add_argument("--warmup", type=int, default=2, help="untimed training steps per variant first")
    k.add_argument("--batch-size", type=int, default=128, help="training batch size")
    k.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N (training steps only)")
    k.add_argument("--backends", default="pytorch,pytorch-numba,onnxruntime,openvino",
                   help="inference backends, comma-separated (pytorch-numba: PyTorch on the Numba kernels)")
    k.add_argument("--latency-images", type=int, default=500, help="batch-1 calls timed (one thread)")
    k.add_argument("--batch-images", type=int, default=10000, help="images in the throughput run")
    k.add_argument("--infer-batch-size", type=int, default=1000, help="batch size of the throughput run")
    k.add_argument("--stream-samples", type=int, default=2000, help="samples timed one by one per streaming backend")
    k.add_argument("--data", default="ucr:PLAID", help="variable-length data of the lengths benchmark")
    k.add_argument("--length-batches", type=int, default=10, help="real batches timed in the lengths benchmark")
    k.add_argument("-o", "--out", type=Path, default=None, help="write the results as JSON here")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="drnn", description="Dilated RNNs for sequence classification (pixel MNIST and your own data).",
                     allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_evaluate, _add_export, _add_deploy_files, _add_tools):
        add(sub)
    return parser


def _positive(flag: str, value):
    if value is not None and value < 1:
        raise UserError(f"{flag} must be positive, got {value}")
    return value


def _choices(flag: str, text: str, allowed) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if not items or bad:
        raise UserError(f"{flag}: expected a comma-separated subset of {','.join(allowed)}, got {text!r}")
    return items


def _source(args):
    """The model argument: a checkpoint path or --pretrained NAME (one of them)."""
    from .sources import parse_source, pretrained_source

    if (args.checkpoint is None) == (args.pretrained is None):
        raise UserError("give a checkpoint path or --pretrained NAME (one of them)")
    return parse_source(args.checkpoint) if args.pretrained is None else pretrained_source(args.pretrained)


def _configs(args):
    """The run's dataset and configs: the flags given, over the preset, over the configs' defaults."""
    from .datasets import default_dilations

    recipe = resolve(args.preset, {k: getattr(args, k) for k in DEFAULTS})
    limits = {f"{s}_limit": getattr(args, f"{s}_limit") for s in ("train", "val", "test")}
    train = TrainConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed, eval_every=args.eval_every,
                        log_every=args.log_every, eval_batch_size=args.eval_batch_size, data=args.data or TrainConfig.data,
                        val_fraction=args.val_fraction, normalize=args.normalize, select_ties=args.select_ties,
                        **limits, **{k: v for k, v in recipe.items() if k not in MODEL_SETTINGS})
    dataset = _load(train.data, args, train.val_fraction, train.seed, train.normalize)
    dilations = args.dilations or default_dilations(dataset.train_max_length)
    hidden = args.hidden_sizes * len(dilations) if len(args.hidden_sizes) == 1 else args.hidden_sizes
    model = ModelConfig(input_size=dataset.num_features, hidden_sizes=hidden, dilations=dilations,
                        num_classes=dataset.num_classes, readout="every" if dataset.per_step else "last",
                        **{k: recipe[k] for k in MODEL_SETTINGS})
    return dataset, model, train


def _load(spec: str, args, val_fraction: float = TrainConfig.val_fraction, seed: int = TrainConfig.seed,
          normalize: str = "auto"):
    from .datasets import load_dataset

    return load_dataset(spec, getattr(args, "data_dir", None), val_fraction, seed, normalize)


def _model_data(args, data: dict):
    """The dataset a loaded model was trained on (``--data`` overrides), split as its run split it."""
    fraction, seed = data.get("val_fraction"), data.get("val_seed")  # None where the split was not drawn
    return _load(args.data or data["spec"], args, fraction or TrainConfig.val_fraction,
                 TrainConfig.seed if seed is None else seed)


def cmd_train(args) -> int:
    from .distributed import shutdown
    from .evaluate import format_report
    from .train import freeze_live_objects, stored_train_config, train

    if args.resume is not None:
        run_dir, model_config, cfg = args.resume, None, None
        stored = stored_train_config(run_dir)
        dataset = _load(stored.data, args, stored.val_fraction, stored.seed)
    else:
        dataset, model_config, cfg = _configs(args)
        run_dir = args.run_dir or Path("runs") / (args.preset or model_config.cell + ("-permuted" if cfg.permute else ""))
    freeze_live_objects()
    try:
        result = train(run_dir, dataset, model_config, cfg, args.device, resume=args.resume is not None,
                       steps=args.steps if args.resume is not None and args.steps_given else None,
                       progress=not args.no_progress)
    except KeyboardInterrupt as e:  # Ctrl+C or SIGTERM: the conventional 128 + the signal's number
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 saved and says so
            print(f"interrupted; state saved in {run_dir / 'last.pt'} (continue with --resume {run_dir})",
                  file=sys.stderr)
        return 128 + getattr(e, "signum", 2)
    finally:
        shutdown()
    if "test" not in result:  # a rank other than 0 under torchrun
        return 0
    best = result["best"]
    print(format_report(result["test"], f"test set, best checkpoint (step {best['step']}, "
                                        f"validation {100 * best['val_accuracy']:.2f}%)", dataset.classes))
    print(f"wrote {Path(run_dir) / 'test.json'}")
    return 0


def cmd_evaluate(args) -> int:
    from .distributed import resolve_device
    from .evaluate import evaluate, format_report
    from .files import write_json
    from .sources import load_model

    source = _source(args)
    model, transform, data = load_model(source)
    dataset = _model_data(args, data)
    split = dataset.splits[args.split].subset(_positive("--limit", args.limit))
    dev = resolve_device(args.device)
    report = evaluate(model.to(dev), split, transform, args.batch_size, dev)
    report = {"checkpoint": str(source), "split": args.split, "data": dataset.spec, "classes": list(dataset.classes),
              "model_config": model.config.to_dict(), "permuted": transform.permutation is not None, **report}
    default = (Path(f"eval-{args.pretrained}-{args.split}.json") if args.pretrained
               else Path(args.checkpoint).parent / f"eval-{args.split}.json")
    out = args.output or default
    write_json(out, report)
    print(format_report(report, f"{source}: {args.split} split", dataset.classes))
    print(f"wrote {out}")
    return 0


def cmd_export(args) -> int:
    from .export import export_length, export_onnx
    from .sources import load_model

    model, transform, data = load_model(_source(args))
    if args.streaming:
        return _export_streaming(args, model, transform, data)
    checks = 512 if args.check_images is None else _positive("--check-images", args.check_images)
    test = _model_data(args, data).splits["test"].subset(checks)
    if args.format == "openvino":
        return _export_openvino(args, model, transform, data, test)
    report = export_onnx(model, transform, args.output, test.sequences(), args.precision, args.opset,
                         args.input_name, args.output_name, max_length=export_length(data), data=data)
    p = report["parity"]
    print(f"wrote {report['path']} ({report['precision']}, opset {report['opset']}, {report['bytes'] / 1024:.1f} kB; "
          f"ops: {', '.join(report['ops'])})")
    print(f"parity with PyTorch on {p['images']} test sequences: max |diff| batch 1 {p['max_abs_diff_batch1']:.2e}, "
          f"batch {p['batch']} {p['max_abs_diff_batched']:.2e}, argmax agreement {100 * p['argmax_agreement']:.2f}%")
    return 0


def _export_openvino(args, model, transform, data, test) -> int:
    from .export import export_length, export_openvino

    if args.output.suffix != ".xml":
        raise UserError(f"--output {args.output}: --format openvino writes NAME.xml (weights in NAME.bin)")
    report = export_openvino(model, transform, args.output, test.sequences(), args.precision,
                             export_length(data), data, args.opset)
    p = report["parity"]
    print(f"wrote {report['path']} and {report['weights']} (OpenVINO {report['openvino']} IR, {report['precision']}, "
          f"{report['bytes'] / 1024:.1f} kB)")
    print(f"parity with PyTorch on {p['images']} test sequences: max |diff| batch 1 {p['max_abs_diff_batch1']:.2e}, "
          f"batch {p['batch']} {p['max_abs_diff_batched']:.2e}, argmax agreement {100 * p['argmax_agreement']:.2f}%")
    return 0


def _export_streaming(args, model, transform, data) -> int:
    from .export import export_step_onnx

    if args.precision != "fp32":
        raise UserError(f"--streaming exports fp32 only, not {args.precision}")
    if args.format != "onnx":
        raise UserError(f"--streaming exports ONNX only, not --format {args.format}")
    checks = 16 if args.check_images is None else _positive("--check-images", args.check_images)
    test = _model_data(args, data).splits["test"].subset(checks)
    report = export_step_onnx(model, transform, args.output, test.sequences(), args.opset, data)
    p = report["parity"]
    print(f"wrote {report['path']} (streaming step graph, state of {report['state_size']} floats, "
          f"{report['bytes'] / 1024:.1f} kB)")
    print(f"parity with PyTorch's stream on {p['sequences']} test sequences ({p['steps']} steps): "
          f"max |diff| {p['max_abs_diff']:.2e}")
    return 0


def cmd_stream(args) -> int:
    from .online import stream_folder

    s = stream_folder(args.model, args.input_dir, args.output, _positive("--batch-size", args.batch_size),
                      _positive("--chunk", args.chunk), _positive("--threads", args.threads), args.labels)
    print(f"{s['sequences']} sequences, {s['samples']} samples, batch {s['batch_size']}, {s['chunk']} per call, "
          f"{s['threads']} thread(s), {s['backend']}: per step of the batch mean {s['sample_us_mean']:.1f} us, "
          f"p50 {s['sample_us_p50']:.1f} us, p99 {s['sample_us_p99']:.1f} us")
    if "anytime" in s:
        a = s["anytime"]
        marks = [(f, acc) for f, acc in zip(a["fractions"], a["accuracy"]) if round(f * 100) % 25 == 0]
        print("accuracy after " + ", ".join(f"{100 * f:.0f}%: {100 * acc:.2f}%" for f, acc in marks)
              + " of each sequence")
    print(f"wrote {args.output} and {args.output.with_suffix('.json')}")
    return 0


def cmd_make_bins(args) -> int:
    from .bins import write_bins

    dataset = _load(args.data or TrainConfig.data, args, args.val_fraction, args.seed)
    if dataset.per_step:
        raise UserError(f"{dataset.spec}: a label at every step; make-bins writes one label per sequence")
    split = dataset.splits[args.split].subset(_positive("--limit", args.limit))
    n = write_bins(split.sequences(), split.labels, args.output)
    print(f"wrote {n} .bin files and labels.npy to {args.output}")
    return 0


def cmd_infer(args) -> int:
    from .infer import infer_folder

    stats = infer_folder(args.model, args.input_dir, args.output, args.batch_size, args.threads,
                         args.output_dtype, progress=not args.no_progress)
    print(f"{stats['images']} inputs, batch {stats['batch_size']}, {stats['threads']} thread(s), {stats['backend']}: "
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
    from .pipeline import format_table, run_pipeline
    from .sources import load_model

    source = _source(args)
    loaded = load_model(source)
    test = _model_data(args, loaded.data).splits["test"].subset(_positive("--limit", args.limit))
    result = run_pipeline(source, test, args.work_dir, _choices("--precisions", args.precisions, PRECISIONS),
                          args.batch_size, args.batch_threads, progress=not args.no_progress,
                          formats=_choices("--formats", args.formats, FORMATS), loaded=loaded)
    print(format_table(result))
    print(f"wrote {args.work_dir / 'pipeline.json'}")
    return 0


def cmd_pretrained(args) -> int:
    from .pretrained import available
    from .sources import pretrained_source

    print(f"{'name':14} {'cell':5} {'task':16} {'test acc':>8}  use as")
    for card in available():
        spec = (card.get("data") or {}).get("spec", "mnist")
        task = ("permuted" if card["permutation"] is not None else "unpermuted") if spec == "mnist" else spec
        print(f"{card['name']:14} {card['model_config']['cell']:5} {task:16} {100 * card['test_accuracy']:7.2f}%  "
              f"{pretrained_source(card['name'])}")
    return 0


def cmd_mrl(args) -> int:
    from .analysis import curves, mean_recurrent_length, plot_curves, skip_rnn_mean_recurrent_length

    if not args.dilations or any(d < 1 for d in args.dilations):
        raise UserError(f"--dilations must be positive integers, got {list(args.dilations)}")
    m = _positive("--cycle-length", args.cycle_length) or max(args.dilations)
    skip = max(args.dilations)
    print(f"cycle length m = {m}")
    print(f"  DilatedRNN {_csv(args.dilations)}: {mean_recurrent_length(args.dilations, m):.4f}")
    print(f"  plain RNN: {mean_recurrent_length([1], m):.4f}")
    print(f"  skip RNN (skip {skip}): {skip_rnn_mean_recurrent_length(skip, m):.4f}")
    if args.plot:
        plot_curves(curves(args.dilations, _positive("--max-cycle", args.max_cycle)), args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_bench(args) -> int:
    from .bench import BACKENDS, bench_inference, bench_train_step, environment
    from .distributed import resolve_device
    from .files import write_json
    from .sources import load_model, pretrained_source
    from .train import freeze_live_objects

    what = _choices("--what", args.what, ("train", "infer", "stream", "lengths", "profile"))
    cells = _choices("--cells", args.cells, CELL_NAMES)
    backends = _choices("--backends", args.backends, BACKENDS)
    for flag in ("steps", "batch_size", "latency_images", "batch_images", "infer_batch_size", "stream_samples"):
        _positive("--" + flag.replace("_", "-"), getattr(args, flag))
    device = str(resolve_device(args.device))
    freeze_live_objects()  # as drnn train does
    results = {"environment": environment(device), "train": [], "infer": []}
    if "train" in what:
        print(f"training step, batch {args.batch_size}, {args.threads} threads, median of {args.steps} "
              f"(seconds; ratio to full; peak MB)")
        print(f"{'cell':5} {'fused':>8} {'pruned':>8} {'full':>8} {'full fused':>10} {'fused/full':>10} "
              f"{'pruned/full':>11} {'full fused/full':>15} {'fused MB':>9} {'full MB':>8} {'fused numba':>11}")
        for cell in cells:
            r = bench_train_step(cell, args.batch_size, args.steps, args.warmup, device)
            results["train"].append(r)
            print(_train_row(r), flush=True)
    if "infer" in what:
        print(f"inference, shipped unpermuted models: batch 1 on 1 thread ({args.latency_images} images); "
              f"{args.batch_images} images in batches of {args.infer_batch_size} on {args.threads} threads")
        print(f"{'cell':5} {'backend':13} {'p50 ms':>7} {'p99 ms':>7} {'batched s':>9} {'images/s':>9}")
        for cell in cells:
            model, transform, _ = load_model(pretrained_source(f"{cell}-mnist"))
            for backend in backends:
                r = bench_inference(model, transform, backend, args.latency_images, args.batch_images,
                                    args.infer_batch_size, args.threads)
                results["infer"].append(r)
                print(f"{cell:5} {backend:13} {r['latency_ms_p50']:7.3f} {r['latency_ms_p99']:7.3f} "
                      f"{r['batched_s']:9.3f} {r['images_per_s']:9.0f}", flush=True)
    if "stream" in what:
        results["stream"] = _bench_stream(args, cells)
    if "lengths" in what:
        results["lengths"] = _bench_lengths(args, cells)
    if "profile" in what:
        results["profile"] = _bench_profile(args, cells)
    if args.out:
        write_json(args.out, results)
        print(f"wrote {args.out}")
    return 0


def _bench_stream(args, cells) -> list[dict]:
    from .bench import bench_stream
    from .sources import load_model, pretrained_source

    print(f"streaming, shipped unpermuted models: one sample per call at batch 1 on 1 thread, {args.stream_samples} "
          f"samples (microseconds per sample)")
    print(f"{'cell':5} {'pytorch p50':>11} {'p99':>7} {'onnxrt p50':>10} {'p99':>7} {'prefix recompute':>16}")
    rows = []
    for cell in cells:
        model, transform, _ = load_model(pretrained_source(f"{cell}-mnist"))
        r = bench_stream(model, transform, args.stream_samples)
        rows.append(r)
        print(f"{cell:5} {r['pytorch_us_p50']:11.1f} {r['pytorch_us_p99']:7.1f} {r['onnxruntime_us_p50']:10.1f} "
              f"{r['onnxruntime_us_p99']:7.1f} {r['prefix_us_mean']:16.1f}", flush=True)
    return rows


def _bench_profile(args, cells) -> list[dict]:
    from .bench import PROFILE_PARTS, bench_profile

    print(f"where a fused training step's time goes, batch {args.batch_size}, {args.threads} threads, "
          f"{args.steps} profiled steps (ms per step); what the recurrences move")
    print(f"{'cell':5} {'step':>6} " + " ".join(f"{part:>{max(9, len(part))}}" for part in PROFILE_PARTS)
          + f" {'recurrence MB':>13} {'GB/s':>5} {'copy GB/s':>9}")
    rows = []
    for cell in cells:
        r = bench_profile(cell, args.batch_size, args.steps, args.warmup)
        rows.append(r)
        moved = (r["recurrence_forward_bytes"] + r["recurrence_backward_bytes"]) / 1e6
        print(f"{cell:5} {r['step_ms']:6.1f} " + " ".join(f"{r['parts_ms'][part]:{max(9, len(part))}.1f}"
                                                        for part in PROFILE_PARTS)
              + f" {moved:13.0f} {r['recurrence_gb_per_s'] or 0:5.1f} {r['copy_gb_per_s']:9.1f}", flush=True)
    return rows


def _bench_lengths(args, cells) -> list[dict]:
    from .bench import LENGTH_VARIANTS, bench_lengths

    dataset = _load(args.data, args)
    print(f"variable-length training step on {dataset.spec}, batch 16, median of {args.length_batches} real batches "
          f"(seconds; cell steps per batch)")
    print(f"{'cell':5} " + " ".join(f"{v:>9} {'steps':>9}" for v in LENGTH_VARIANTS) + f" {'exact/padded':>12}"
          + f" {'exact/full':>10}")
    rows = []
    for cell in cells:
        r = bench_lengths(dataset, cell, batches=args.length_batches)
        rows.append(r)
        print(f"{cell:5} " + " ".join(f"{r[v + '_s']:9.4f} {r[v + '_cell_steps_per_batch']:9.0f}" for v in LENGTH_VARIANTS)
              + f" {r['exact_s'] / r['padded_s']:12.3f} {r['exact_s'] / r['full_s']:10.3f}", flush=True)
    return rows


def _train_row(r: dict) -> str:
    get = lambda key, fmt: format(r[key], fmt) if key in r else "-"
    mb = lambda key: f"{r[key] / 2**20:.1f}" if r.get(key) is not None else "-"
    return (f"{r['cell']:5} {get('fused_s', '8.4f'):>8} {r['pruned_s']:8.4f} {r['full_s']:8.4f} "
            f"{get('full_fused_s', '10.4f'):>10} {get('fused_ratio', '10.3f'):>10} {r['pruned_ratio']:11.3f} "
            f"{get('full_fused_ratio', '15.3f'):>15} {mb('fused_peak_bytes'):>9} {mb('full_peak_bytes'):>8} "
            f"{get('fused_numba_s', '11.4f'):>11}")


def cmd_report(args) -> int:
    from .report import write_report

    for name, path in write_report(args.run_dir).items():
        print(f"wrote {path} ({name})")
    return 0


def _flag(command_parser: argparse.ArgumentParser, parameter: str) -> str:
    """The long flag of the command whose value is ``parameter``; the parameter's own name if none is."""
    for action in command_parser._actions:
        if action.dest == parameter and action.option_strings:
            return next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])
    return parameter


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            parser.error(f"--threads must be positive, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except ParameterError as e:
        print(f"drnn {args.command}: error: {_flag(args.command_parser, e.parameter)} {e.problem}", file=sys.stderr)
    except UserError as e:
        print(f"drnn {args.command}: error: {e}", file=sys.stderr)
    except TrainingDiverged as e:
        print(f"drnn {args.command}: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a full disk, a write error: files are written whole or not at all (files.py)
        where = f"{e.filename}: " if e.filename else ""
        print(f"drnn {args.command}: error: {where}{e.strerror or e}; earlier files are intact", file=sys.stderr)
        return 1
    return 2


def entry() -> None:
    """The ``drnn`` command (and ``python -m dilated_rnn.cli``): ``main``, then the process's exit."""
    from .distributed import exit_process

    exit_process(main())


if __name__ == "__main__":
    entry()
