"""The reference's whole deployment pipeline, measured: export -> bins -> batch-1 and batched inference -> accuracy."""

from __future__ import annotations

from pathlib import Path

from ..config import FORMATS
from ..files import write_json
from ..trained import load_model
from .accuracy import accuracy_report
from .bins import write_bins
from .export import (
    INT8_CELLS,
    OPENVINO_PRECISIONS,
    PRECISIONS,
    export_length,
    export_onnx,
    export_openvino,
)
from .infer import infer_folder


def run_pipeline(checkpoint, test, work_dir, precisions=PRECISIONS, batch_size: int = 256,
                 batch_threads: int = 2, progress: bool = False, formats=FORMATS, loaded=None) -> dict:
    """For each format and precision: export, batch-1 inference (1 thread), batched inference, accuracy.
    Returns the table.

    Accuracy is taken from both runs: int8 graphs compute their activation scales from the
    data of each call, so an image's int8 logits depend on the other images in its batch.
    ``test``: the model's test split (``data.splits.Split``). ``loaded``: ``load_model(checkpoint)`` if the
    caller has it already (it is not loaded again).
    """
    work_dir = Path(work_dir)
    trained = load_model(checkpoint) if loaded is None else loaded
    model, transform, data = trained.model, trained.transform, trained.data
    sequences = test.sequences()
    bins = work_dir / "bins"
    if not (bins / "labels.npy").is_file():
        write_bins(sequences, test.labels, bins)
    rows, skipped = [], {}
    for fmt, precision in ((f, p) for f in formats for p in precisions):
        name = precision if fmt == "onnx" else f"{fmt}-{precision}"
        if fmt == "onnx" and precision == "int8" and model.config.cell not in INT8_CELLS:
            skipped[name] = f"ONNX Runtime quantises no {model.config.cell.upper()} op"
            continue
        if fmt == "openvino" and precision not in OPENVINO_PRECISIONS:
            continue
        export = export_onnx if fmt == "onnx" else export_openvino
        graph = work_dir / f"model-{name}{'.onnx' if fmt == 'onnx' else '.xml'}"
        exported = export(trained, graph, sequences[:512], precision=precision, max_length=export_length(data))
        one = infer_folder(graph, bins, work_dir / f"out-{name}-b1", batch_size=1, threads=1, progress=progress)
        many = infer_folder(graph, bins, work_dir / f"out-{name}", batch_size=batch_size,
                            threads=batch_threads, progress=progress)
        K = model.config.num_classes
        acc = accuracy_report(work_dir / f"out-{name}", bins / "labels.npy", num_classes=K)
        acc_one = accuracy_report(work_dir / f"out-{name}-b1", bins / "labels.npy", num_classes=K)
        rows.append({
            "format": fmt,
            "precision": precision,
            "accuracy": acc["accuracy"],
            "batch1_accuracy": acc_one["accuracy"],
            "images": acc["num_images"],
            "batch1_latency_ms_p50": one["latency_ms_p50"],
            "batch1_latency_ms_p99": one["latency_ms_p99"],
            "batched_images_per_s": many["images_per_s"],
            "batched_seconds": many["seconds"],
            "batch_size": batch_size,
            "batch_threads": batch_threads,
            "file_bytes": exported["bytes"],
            "parity": exported["parity"],
        })
    result = {"checkpoint": str(checkpoint), "cell": model.config.cell, "data": data["spec"],
              "permuted": transform.permutation is not None,
              "rows": rows, "skipped": skipped}
    write_json(work_dir / "pipeline.json", result)
    return result


def _task(result: dict) -> str:
    if result.get("data", "mnist") == "mnist":
        return f"{'permuted' if result['permuted'] else 'unpermuted'} MNIST"
    return result["data"]


def format_table(result: dict) -> str:
    lines = [
        f"{result['checkpoint']} ({result['cell']}, {_task(result)})",
        f"{'format':8} {'precision':9} {'batch acc':>9} {'b1 acc':>8} {'b1 p50 ms':>10} {'b1 p99 ms':>10} {'images/s':>10} "
        f"{'total s':>7} {'size kB':>8}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r.get('format', 'onnx'):8} {r['precision']:9} {100 * r['accuracy']:8.2f}% {100 * r['batch1_accuracy']:7.2f}% "
            f"{r['batch1_latency_ms_p50']:10.3f} {r['batch1_latency_ms_p99']:10.3f} "
            f"{r['batched_images_per_s']:10.0f} {r['batched_seconds']:7.2f} {r['file_bytes'] / 1024:8.1f}"
        )
    for precision, why in result["skipped"].items():
        lines.append(f"{'onnx':8} {precision:9} skipped: {why}")
    return "\n".join(lines)
