"""``drnn``'s flags: one parser per command, defaults from the config dataclasses and the presets."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import (
    ATC_OPSET,
    AUGMENTATIONS,
    CLASS_WEIGHTS,
    DEFAULT_OPSET,
    DIFFERENCES,
    FORMATS,
    INITS,
    LAYOUTS,
    NORMALIZATIONS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    ModelConfig,
    TrainConfig,
)
from ..model.cells import CELL_NAMES
from ..training.presets import DEFAULTS, PRESETS
from ..training.recipe import AUGMENT
from ..training.recipe import EPOCHS as RECIPE_EPOCHS
from ..training.recipe import HIDDEN as RECIPE_HIDDEN
from ..training.recipe import MAX_BATCH as RECIPE_MAX_BATCH
from . import commands as cmd

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
        _add_layout(p)
    p.add_argument("--data-dir", type=Path, default=None, help=DATA_DIR_HELP)
    if device:
        p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
        p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's choice)")


def _add_layout(p) -> None:
    p.add_argument("--layout", choices=LAYOUTS, default=None,
                   help="how an .npz's [N, ., .] arrays are laid out: ntc (sequences, steps, channels), nct "
                        "(sktime's numpy3D), auto (ntc, refusing what looks like nct) (default: the model's, else auto)")


def _add_model_source(p) -> None:
    p.add_argument("checkpoint", nargs="?", default=None, help="a .pt checkpoint written by drnn train, or pretrained:NAME")
    p.add_argument("--pretrained", metavar="NAME", default=None, help="a shipped model instead (drnn pretrained)")


def _recipe_flag(p, name: str, *flags: str, help: str, **kwargs) -> None:
    """A setting a preset may fill: parsed as None when not given; its help shows the default without a preset."""
    p.add_argument(*flags, dest=name, default=None, help=f"{help} (default: {DEFAULTS[name]})", **kwargs)


def _add_recipe_flags(t) -> None:
    """The settings a preset fills (``training.presets.DEFAULTS``)."""
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


def _add_small_data_flags(t) -> None:
    """Flags for a user's (often small) data: validation, augmentation, ensembles, class weights."""
    c = TrainConfig
    t.add_argument("--val-fraction", type=float, default=c.val_fraction,
                   help="share of each class held out to choose best.pt where the data gives no validation split "
                        "(not MNIST) (default: 0, every training sequence trains and best.pt is the last step)")
    t.add_argument("--augment", default=None, metavar="NAMES", type=lambda v: "" if v == "none" else v,
                   help="augment each training batch, comma-separated in order: " + ", ".join(AUGMENTATIONS)
                        + "; none for none (default: a user's data: " + AUGMENT + "; MNIST: none)")
    t.add_argument("--mixup", type=float, default=0.0, help="alpha of mixup's Beta weight; 0: no mixup")
    t.add_argument("--ensemble", type=int, default=1,
                   help="train K members (seeds --seed ... --seed+K-1, one data split) into RUN_DIR/member-i and "
                        "keep their averaged probabilities as one model in RUN_DIR/best.pt")
    t.add_argument("--class-weight", choices=CLASS_WEIGHTS, default=c.class_weight,
                   help="balanced: weight each class's training loss by N / (K * its count), for imbalanced data")


def _add_train(sub) -> None:
    t = _command(sub, "train", "train a classifier (pixel MNIST, or --data)", cmd.cmd_train)
    t.add_argument("--run-dir", type=Path, default=None,
                   help="output directory (default: runs/<preset>, or runs/<cell>[-permuted])")
    t.add_argument("--resume", type=Path, metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last.pt, with its stored config (--steps may move its "
                        "end, at a constant learning rate)")
    t.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a named recipe (cell, task, optimizer, schedule, regularisers); explicit flags win")
    _add_recipe_flags(t)
    m, c = ModelConfig, TrainConfig
    t.add_argument("--hidden-sizes", type=_int_list("--hidden-sizes"), default=None,
                   help=f"units per layer, comma-separated; one value is used for every layer (default: "
                        f"{m.hidden_sizes[0]} for MNIST; your data: {RECIPE_HIDDEN})")
    t.add_argument("--readout", choices=("last", "layers", "mean", "max"), default=None,
                   help="what the head reads: the top layer's last step(s); every layer's, concatenated (each "
                        "dilated layer's view at its own time scale, at no extra cell steps); or the top layer's "
                        "mean or maximum over the real steps (every step computed) (default: last for MNIST; "
                        "layers for your data; data labelled at every step: every)")
    t.add_argument("--dilations", type=_int_list("--dilations"), default=None,
                   help="dilation per layer, comma-separated (default: 1, 2, 4, ... while the largest is at most "
                        "half the longest training sequence: 1..256 for MNIST)")
    t.add_argument("--steps", "-epoch", type=int, default=None, action=_Given,
                   help=f"training steps (the reference's -epoch) (default: {c.steps} for MNIST; your data: "
                        f"{RECIPE_EPOCHS} epochs of the training split, fewer for long sequences)")
    t.set_defaults(steps_given=False)  # --resume moves a run's end only when --steps is given
    t.add_argument("--batch-size", "-batch_size", type=int, default=None,
                   help=f"batch size (default: {c.batch_size} for MNIST; your data: an eighth of the training split, "
                        f"at most {RECIPE_MAX_BATCH})")
    t.add_argument("--seed", type=int, default=c.seed,
                   help="seed of initialisation, batch order, permutation and a drawn validation split")
    _add_small_data_flags(t)
    t.add_argument("--select-ties", choices=("earliest", "loss"), default=None,
                   help="which of the validations tied at the best accuracy keeps best.pt: the earliest, or the "
                        f"lowest validation loss (default: {c.select_ties} for MNIST; loss for your data)")
    t.add_argument("--normalize", choices=("auto", *NORMALIZATIONS), default=c.normalize,
                   help="input standardisation: none, channel (per-channel statistics of the training split), sequence "
                        "(each sequence by its own) or auto (none for MNIST; sequence for one channel whose scale "
                        "varies tenfold across sequences; else channel)")
    t.add_argument("--differences", choices=DIFFERENCES, default=c.differences,
                   help="whether the model reads each channel's first differences beside its values (auto: on for "
                        "your data, off for MNIST and the copy task)")
    t.add_argument("--eval-every", type=int, default=None,
                   help=f"validate every N steps (default: {c.eval_every} for MNIST; 30 times a run on your data)")
    t.add_argument("--log-every", type=int, default=None,
                   help=f"log the training loss every N steps (default: {c.log_every} for MNIST; as --eval-every "
                        "on your data)")
    t.add_argument("--eval-batch-size", type=int, default=c.eval_batch_size, help="batch size of evaluation")
    for split in ("train", "val", "test"):
        t.add_argument(f"--{split}-limit", type=int, default=None,
                       help=f"use only the first N {split} sequences, for smoke runs (default: all)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_data_flags(t, data=c.data)


def _add_evaluate(sub) -> None:
    e = _command(sub, "evaluate", "evaluate a checkpoint", cmd.cmd_evaluate)
    _add_model_source(e)
    e.add_argument("--split", choices=("test", "val"), default="test", help="which split")
    e.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    e.add_argument("--limit", type=int, default=None, help="use only the first N sequences of the split (default: all)")
    e.add_argument("-o", "--output", type=Path, default=None,
                   help="JSON report path (default: <checkpoint dir>/eval-<split>.json, "
                        "or ./eval-<name>-<split>.json for --pretrained)")
    _add_data_flags(e)


def _add_export(sub) -> None:
    x = _command(sub, "export", "export a checkpoint to ONNX or OpenVINO IR, checked against PyTorch", cmd.cmd_export)
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


def _add_runners(sub) -> None:
    """Commands that run a model over new data: predict, stream."""
    r = _command(sub, "predict", "predict the class of every sequence of new data: names and probabilities",
                 cmd.cmd_predict)
    r.add_argument("model", help="a .pt checkpoint, a run directory, pretrained:NAME, an .onnx graph or an .xml IR")
    r.add_argument("data", type=Path, help="an .npz (x, or x_test; lengths for sequences of several lengths), a .ts "
                                           "or .tsv file, or a folder of .bin files")
    r.add_argument("-o", "--output", type=Path, required=True,
                   help="the predictions to write: .csv, .jsonl or .npz (one row per sequence)")
    _add_layout(r)
    r.add_argument("--batch-size", type=int, default=256, help="sequences per call")
    r.add_argument("--threads", type=int, default=1, help="intra-op threads")
    r.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal)")

    s = _command(sub, "stream", "run a model over sequences sample by sample: per-step predictions and latency",
                 cmd.cmd_stream)
    s.add_argument("model", help="a .pt checkpoint or pretrained:NAME (PyTorch), or a step graph from drnn export "
                                 "--streaming (ONNX Runtime)")
    s.add_argument("input_dir", type=Path, help="folder of NNNNN.bin inputs (T x F float32 each)")
    s.add_argument("-o", "--output", type=Path, required=True,
                   help="the .npz of per-step predictions to write (a .json summary is written beside it)")
    s.add_argument("--labels", type=Path, default=None, help="labels.npy: adds accuracy against the fraction seen")
    s.add_argument("--batch-size", type=int, default=1, help="sequences streamed side by side")
    s.add_argument("--chunk", type=int, default=1, help="samples per call")
    s.add_argument("--threads", type=int, default=1, help="intra-op threads")


def _add_deploy_files(sub) -> None:
    b = _command(sub, "make-bins", "write a split as one .bin per sequence plus labels.npy", cmd.cmd_make_bins)
    b.add_argument("-o", "--output", type=Path, required=True, help="new folder to create")
    b.add_argument("--split", choices=("test", "val", "train"), default="test", help="which split")
    b.add_argument("--limit", type=int, default=None, help="only the first N sequences (default: all)")
    b.add_argument("--seed", type=int, default=TrainConfig.seed, help="seed of a drawn validation split")
    b.add_argument("--val-fraction", type=float, default=TrainConfig.val_fraction, help="its share of each class")
    _add_data_flags(b, device=False, data=TrainConfig.data)

    i = _command(sub, "infer", "run a model over a folder of .bin inputs", cmd.cmd_infer)
    i.add_argument("model", help=".onnx file (ONNX Runtime), .xml IR (OpenVINO), or a .pt checkpoint or "
                                 "pretrained:NAME (PyTorch)")
    i.add_argument("input_dir", type=Path, help="folder of NNNNN.bin inputs (T x F float32 each; MNIST: 784)")
    i.add_argument("-o", "--output", type=Path, required=True, help="folder for NNNNN_output_0.bin files")
    i.add_argument("--batch-size", type=int, default=256, help="1 measures per-sequence latency")
    i.add_argument("--threads", type=int, default=1, help="intra-op threads")
    i.add_argument("--output-dtype", choices=("fp32", "fp16"), default="fp32", help="dtype of the logits files")
    i.add_argument("--no-progress", action="store_true", help="no progress bar")

    a = _command(sub, "accuracy", "accuracy of a folder of outputs against labels.npy", cmd.cmd_accuracy)
    a.add_argument("output_dir", type=Path, help="folder of NNNNN_output_0.bin files")
    a.add_argument("labels", type=Path, help="labels.npy: class indices or one-hot rows")
    a.add_argument("--dtype", choices=("auto", "fp32", "fp16"), default="auto", help="dtype of the outputs")
    a.add_argument("--num-classes", type=int, default=None,
                   help="logits per output file (default: what infer.json says, else 10)")
    a.add_argument("-o", "--report", type=Path, default=None, help="JSON path (default: OUTPUT_DIR/accuracy.json)")

    q = _command(sub, "pipeline", "export ONNX (fp32/fp16/int8) and OpenVINO IR (fp32/fp16), make bins, infer, "
                                  "report accuracy and speed", cmd.cmd_pipeline)
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
    r = _command(sub, "mrl", "mean recurrent length of a dilation schedule (the paper's memory measure)", cmd.cmd_mrl)
    r.add_argument("--dilations", type=_int_list("--dilations"), default=_csv(m.dilations), help="per layer")
    r.add_argument("-m", "--cycle-length", type=int, default=None, help="cycle length (default: largest dilation)")
    r.add_argument("--plot", type=Path, default=None, help="write a PNG of the curves against cycle length here")
    r.add_argument("--max-cycle", type=int, default=1024, help="largest cycle length on the plot")

    w = _command(sub, "report", "PNGs and a Markdown summary of a training run", cmd.cmd_report)
    w.add_argument("run_dir", type=Path, help="a run directory written by drnn train")

    _command(sub, "pretrained", "list the models shipped with the package", cmd.cmd_pretrained)

    k = _command(sub, "bench", "speed: training step (fast vs. full) and inference latency/throughput", cmd.cmd_bench)
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
    for add in (_add_train, _add_evaluate, _add_export, _add_runners, _add_deploy_files, _add_tools):
        add(sub)
    return parser
