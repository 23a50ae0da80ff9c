"""The commands: each parses nothing itself, calls the library and prints what it returns.

Heavy modules (torch, Numba, ONNX) load inside the commands, so ``drnn --help``
starts fast. Errors in user input are ``UserError`` (one line, exit 2) or a
``ParameterError`` naming the parameter, which ``cli.main`` turns into its flag.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..config import FORMATS, PRECISIONS, ModelConfig, TrainConfig
from ..errors import UserError
from ..model.cells import CELL_NAMES


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
    from ..trained import parse_source, pretrained_source

    if (args.checkpoint is None) == (args.pretrained is None):
        raise UserError("give a checkpoint path or --pretrained NAME (one of them)")
    return parse_source(args.checkpoint) if args.pretrained is None else pretrained_source(args.pretrained)


def _configs(args):
    """The run's dataset and configs: the flags given, over the preset, over the recipe derived from a user's
    data, over the configs' defaults (``training.recipe.configs``)."""
    from ..data.datasets import default_dilations
    from ..training.recipe import configs

    dataset = _load(args.data or TrainConfig.data, args, args.val_fraction, args.seed, args.normalize,
                    args.layout or "auto", args.differences)
    settings = {*TrainConfig.__dataclass_fields__, *ModelConfig.__dataclass_fields__}  # the flags named as them
    model, train = configs(dataset, args.dilations or default_dilations(dataset.train_max_length),
                           {k: v for k, v in vars(args).items() if k in settings}, args.preset)
    return dataset, model, train


def _train_ensemble(args, run_dir, dataset, model_config, cfg) -> int:
    from ..training.ensemble import train_ensemble
    from ..training.evaluate import format_report

    if args.resume is not None:
        raise UserError("--ensemble trains its members from the start; resume a member's run with --resume RUN/member-i")
    result = train_ensemble(run_dir, dataset, model_config, cfg, args.ensemble, args.device,
                            progress=not args.no_progress)
    members = ", ".join(f"{100 * t['accuracy']:.2f}%" for t in result["member_tests"])
    print(format_report(result["test"], f"test set, ensemble of {args.ensemble} (members: {members})",
                        dataset.classes))
    print(f"wrote {Path(run_dir) / 'best.pt'} and {Path(run_dir) / 'test.json'}")
    return 0


def _load(spec: str, args, val_fraction: float = TrainConfig.val_fraction, seed: int = TrainConfig.seed,
          normalize: str = "auto", layout: str | None = None, differences: str = "auto"):
    from ..data.datasets import load_dataset

    layout = getattr(args, "layout", None) or layout or "auto"
    return load_dataset(spec, getattr(args, "data_dir", None), val_fraction, seed, normalize, layout, differences)


def _model_data(args, data: dict):
    """The dataset a loaded model was trained on (``--data`` overrides), split as its run split it."""
    fraction, seed = data.get("val_fraction"), data.get("val_seed")  # None where the split was not drawn
    return _load(args.data or data["spec"], args, TrainConfig.val_fraction if fraction is None else fraction,
                 TrainConfig.seed if seed is None else seed, layout=data.get("layout"))


def _model_and_data(args, source):
    """The model ``source`` names and the data it is to run on (``--data``, else its own), checked to fit."""
    from ..trained import load_model

    trained = load_model(source)
    dataset = _model_data(args, trained.data)
    trained.check_dataset(dataset)
    return trained, dataset


def cmd_train(args) -> int:
    from ..training.distributed import shutdown
    from ..training.evaluate import format_report
    from ..training.process import freeze_live_objects
    from ..training.train import describe, stored_train_config, train

    if args.resume is not None:
        run_dir, model_config, cfg = args.resume, None, None
        stored = stored_train_config(run_dir)
        dataset = _load(stored.data, args, stored.val_fraction, stored.seed, stored.normalize, stored.layout,
                        stored.differences)
    else:
        dataset, model_config, cfg = _configs(args)
        run_dir = args.run_dir or Path("runs") / (args.preset or model_config.cell + ("-permuted" if cfg.permute else ""))
        if os.environ.get("RANK", "0") == "0":
            print("\n".join(describe(dataset, model_config, cfg)), flush=True)
    freeze_live_objects()
    if args.ensemble != 1:
        return _train_ensemble(args, run_dir, dataset, model_config, cfg)
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
                                        + (f"validation {100 * best['val_accuracy']:.2f}%)" if best["val_accuracy"]
                                           is not None else "no validation: the last step)"), dataset.classes))
    print(f"wrote {Path(run_dir) / 'test.json'}")
    return 0


def cmd_evaluate(args) -> int:
    from ..files import write_json
    from ..training.distributed import resolve_device
    from ..training.evaluate import evaluate, format_report
    source = _source(args)
    trained, dataset = _model_and_data(args, source)
    split = dataset.splits[args.split].subset(_positive("--limit", args.limit))
    if not len(split):
        raise UserError(f"{dataset.spec}: the {args.split} split is empty (validation: {dataset.val_source})")
    dev = resolve_device(args.device)
    report = evaluate(trained.model.to(dev), split, trained.transform, args.batch_size, dev)
    report = {"checkpoint": str(source), "split": args.split, "data": dataset.spec, "classes": list(dataset.classes),
              "model_config": trained.config.to_dict(), "permuted": trained.transform.permutation is not None,
              **report}
    default = (Path(f"eval-{args.pretrained}-{args.split}.json") if args.pretrained
               else Path(args.checkpoint).parent / f"eval-{args.split}.json")
    out = args.output or default
    write_json(out, report)
    print(format_report(report, f"{source}: {args.split} split", dataset.classes))
    print(f"wrote {out}")
    return 0


def cmd_export(args) -> int:
    from ..deploy.export import export_length, export_onnx
    trained, dataset = _model_and_data(args, _source(args))
    if args.streaming:
        return _export_streaming(args, trained, dataset)
    checks = 512 if args.check_images is None else _positive("--check-images", args.check_images)
    test = dataset.splits["test"].subset(checks)
    if args.format == "openvino":
        return _export_openvino(args, trained, test)
    report = export_onnx(trained, args.output, test.sequences(), args.precision, args.opset,
                         args.input_name, args.output_name, max_length=export_length(trained.data))
    print(f"wrote {report['path']} ({report['precision']}, opset {report['opset']}, {report['bytes'] / 1024:.1f} kB; "
          f"ops: {', '.join(report['ops'])})")
    print(_parity(report["parity"]))
    return 0


def _parity(p: dict) -> str:
    return (f"parity with PyTorch on {p['images']} test sequences: max |diff| batch 1 {p['max_abs_diff_batch1']:.2e}, "
            f"batch {p['batch']} {p['max_abs_diff_batched']:.2e}, argmax agreement {100 * p['argmax_agreement']:.2f}%")


def _export_openvino(args, trained, test) -> int:
    from ..deploy.export import export_length, export_openvino

    if args.output.suffix != ".xml":
        raise UserError(f"--output {args.output}: --format openvino writes NAME.xml (weights in NAME.bin)")
    report = export_openvino(trained, args.output, test.sequences(), args.precision, export_length(trained.data),
                             args.opset)
    print(f"wrote {report['path']} and {report['weights']} (OpenVINO {report['openvino']} IR, {report['precision']}, "
          f"{report['bytes'] / 1024:.1f} kB)")
    print(_parity(report["parity"]))
    return 0


def _export_streaming(args, trained, dataset) -> int:
    from ..deploy.export import export_step_onnx

    if args.precision != "fp32":
        raise UserError(f"--streaming exports fp32 only, not {args.precision}")
    if args.format != "onnx":
        raise UserError(f"--streaming exports ONNX only, not --format {args.format}")
    checks = 16 if args.check_images is None else _positive("--check-images", args.check_images)
    test = dataset.splits["test"].subset(checks)
    report = export_step_onnx(trained, args.output, test.sequences(), args.opset)
    p = report["parity"]
    print(f"wrote {report['path']} (streaming step graph, state of {report['state_size']} floats, "
          f"{report['bytes'] / 1024:.1f} kB)")
    print(f"parity with PyTorch's stream on {p['sequences']} test sequences ({p['steps']} steps): "
          f"max |diff| {p['max_abs_diff']:.2e}")
    return 0


def cmd_predict(args) -> int:
    from ..deploy.predict import predict_file
    from ..trained import run_checkpoint

    s = predict_file(run_checkpoint(args.model), args.data, args.output, args.layout or "auto",
                     _positive("--batch-size", args.batch_size), _positive("--threads", args.threads),
                     progress=not args.no_progress and sys.stderr.isatty())
    counts = ", ".join(f"{c}: {n}" for c, n in s["predicted"].items() if n)
    print(f"{s['sequences']} sequences predicted by {s['backend']} ({counts})")
    print(f"wrote {s['output']}")
    return 0


def cmd_stream(args) -> int:
    from ..deploy.stream import stream_folder

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
    from ..deploy.bins import write_bins

    dataset = _load(args.data or TrainConfig.data, args, args.val_fraction, args.seed)
    if dataset.per_step:
        raise UserError(f"{dataset.spec}: a label at every step; make-bins writes one label per sequence")
    split = dataset.splits[args.split].subset(_positive("--limit", args.limit))
    n = write_bins(split.sequences(), split.labels, args.output)
    print(f"wrote {n} .bin files and labels.npy to {args.output}")
    return 0


def cmd_infer(args) -> int:
    from ..deploy.infer import infer_folder

    stats = infer_folder(args.model, args.input_dir, args.output, args.batch_size, args.threads,
                         args.output_dtype, progress=not args.no_progress)
    print(f"{stats['images']} inputs, batch {stats['batch_size']}, {stats['threads']} thread(s), {stats['backend']}: "
          f"{stats['images_per_s']:.0f} sequences/s; latency per call mean {stats['latency_ms_mean']:.3f} ms, "
          f"p50 {stats['latency_ms_p50']:.3f} ms, p99 {stats['latency_ms_p99']:.3f} ms")
    print(f"wrote {args.output / 'infer.json'}")
    return 0


def cmd_accuracy(args) -> int:
    from ..deploy.accuracy import accuracy_report, format_accuracy
    from ..files import write_json

    report = accuracy_report(args.output_dir, args.labels, args.dtype, _positive("--num-classes", args.num_classes))
    out = args.report or args.output_dir / "accuracy.json"
    write_json(out, report)
    print(format_accuracy(report))
    print(f"wrote {out}")
    return 0


def cmd_pipeline(args) -> int:
    from ..deploy.pipeline import format_table, run_pipeline
    source = _source(args)
    loaded, dataset = _model_and_data(args, source)
    test = dataset.splits["test"].subset(_positive("--limit", args.limit))
    result = run_pipeline(source, test, args.work_dir, _choices("--precisions", args.precisions, PRECISIONS),
                          args.batch_size, args.batch_threads, progress=not args.no_progress,
                          formats=_choices("--formats", args.formats, FORMATS), loaded=loaded)
    print(format_table(result))
    print(f"wrote {args.work_dir / 'pipeline.json'}")
    return 0


def cmd_pretrained(args) -> int:
    from ..trained import available, pretrained_source

    print(f"{'name':14} {'cell':5} {'task':16} {'test acc':>8}  use as")
    for card in available():
        spec = (card.get("data") or {}).get("spec", "mnist")
        task = ("permuted" if card["permutation"] is not None else "unpermuted") if spec == "mnist" else spec
        print(f"{card['name']:14} {card['model_config']['cell']:5} {task:16} {100 * card['test_accuracy']:7.2f}%  "
              f"{pretrained_source(card['name'])}")
    return 0


def cmd_mrl(args) -> int:
    from ..tools.analysis import (
        curves,
        mean_recurrent_length,
        plot_curves,
        skip_rnn_mean_recurrent_length,
    )

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


def cmd_report(args) -> int:
    from ..tools.report import write_report

    for name, path in write_report(args.run_dir).items():
        print(f"wrote {path} ({name})")
    return 0


def cmd_bench(args) -> int:
    from ..files import write_json
    from ..tools.bench import BACKENDS, run_suite
    from ..training.distributed import resolve_device
    from ..training.process import freeze_live_objects

    what = _choices("--what", args.what, ("train", "infer", "stream", "lengths", "profile"))
    cells = _choices("--cells", args.cells, CELL_NAMES)
    backends = _choices("--backends", args.backends, BACKENDS)
    for flag in ("steps", "batch_size", "latency_images", "batch_images", "infer_batch_size", "stream_samples"):
        _positive("--" + flag.replace("_", "-"), getattr(args, flag))
    settings = {k: getattr(args, k) for k in ("threads", "batch_size", "steps", "warmup", "latency_images",
                                              "batch_images", "infer_batch_size", "stream_samples", "length_batches")}
    settings["device"] = str(resolve_device(args.device))
    data = _load(args.data, args) if "lengths" in what else None
    freeze_live_objects()  # as drnn train does
    results = run_suite(what, cells, backends, settings, lambda line: print(line, flush=True), data)
    if args.out:
        write_json(args.out, results)
        print(f"wrote {args.out}")
    return 0
