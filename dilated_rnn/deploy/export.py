"""ONNX and OpenVINO IR export of a trained classifier, checked against PyTorch before it is written.

The exported graph is the deployable model (the reference's frozen graph plus
offline model). It takes raw values: the model's input transform (MNIST's
permutation, a user dataset's per-channel normalization) is inside the graph.

* Data of one length T (MNIST: 784): input ``Placeholder`` float32 [N, T, F]
  (MNIST: natural-order pixels in [0, 1]), output ``the_outputs`` float32 [N, K]
  logits, computed by the pruned last-step plan with native ONNX LSTM/GRU/RNN
  ops (MNIST: 1,568 cell steps per image, not 7,056).
* Data of varying length: inputs ``Placeholder`` [N, T_max, F], each sequence
  zero-padded at the end to T_max (the longest sequence of the data), and
  ``lengths`` int64 [N]. The pruned plan depends on the length, so this graph
  computes every step of every layer (padding comes after every real step of
  every chain, so it never changes a real output) and reads each row at its
  own last step(s): one graph, exact for every length up to T_max.

Precisions: ``fp32``; ``fp16``: every weight stored in float16 (half the
file, the reference's ``allow_fp32_to_fp16`` rounding of weights) and cast to
float32 inside the graph, because ONNX Runtime's CPU provider has no float16
LSTM/GRU/RNN kernels, so arithmetic stays float32; ``int8``: ONNX Runtime
dynamic quantisation (int8 LSTM and head weights, activations quantised per
batch), LSTM only, as ONNX Runtime quantises no GRU or RNN op.

OpenVINO IR (``export_openvino``, ``PATH.xml`` + ``PATH.bin``): the fp32 ONNX
graph converted by OpenVINO's converter, the runnable counterpart of the
reference's ATC offline model; ``fp32``, or ``fp16``: weights compressed to
float16 in the ``.bin`` and decompressed at load, compute in float32.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..config import DEFAULT_OPSET, PRECISIONS
from ..data.datasets import pad_sequences
from ..errors import ParameterError, UserError
from ..files import atomic_path
from ..integrity import write_sidecar
from ..trained import TrainedModel
from .infer import OnnxBackend, OpenvinoBackend, import_openvino
from .raw import RawInputClassifier

INT8_CELLS = ("lstm",)  # ONNX Runtime's dynamic quantisation has an LSTM kernel, none for GRU or RNN
# fp32 parity: max |ORT - PyTorch| <= max(1e-4, 3 * max |PyTorch float32 - PyTorch float64|).
# The second term admits what float32 rounding alone explains on badly conditioned models: for the
# trained vanilla RNN (784 tanh steps, logits up to 16.7) PyTorch float32 is 8.8e-5 from float64 and
# ONNX Runtime 1.9e-4 from PyTorch float32; for the LSTM and GRU both stay below 2e-5.
FP32_TOLERANCE = 1e-4
# fp16 and int8 are lossy: they must agree with PyTorch's argmax on at least this share of the check
# images (a broken export agrees on about 10%; dynamic int8 of a trained LSTM measured 98.7-99.9%).
MIN_AGREEMENT = {"fp16": 0.99, "int8": 0.95}
OPENVINO_PRECISIONS = ("fp32", "fp16")


def _export_fp32(deploy: RawInputClassifier, path: Path, opset: int, input_name: str, output_name: str, length: int):
    F = deploy.transform.raw_features(deploy.model.config.input_size)
    example = (torch.zeros(2, length, F),) + ((torch.full((2,), length),) if deploy.full else ())
    names = [input_name] + (["lengths"] if deploy.full else [])
    with warnings.catch_warnings():  # the TorchScript exporter warns about batch_first RNNs and its own future
        warnings.simplefilter("ignore")
        torch.onnx.export(
            deploy, example, str(path), dynamo=False, opset_version=opset, input_names=names,
            output_names=[output_name], dynamic_axes={**{n: {0: "N"} for n in names}, output_name: {0: "N"}},
        )


def _to_fp16(src: Path, dst: Path) -> None:
    """Store every float32 weight as float16, read through a Cast to float32 at the start of the graph."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    for init in list(graph.initializer):
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        half_name = init.name + "_fp16"
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), half_name))
        graph.node.insert(0, helper.make_node("Cast", [half_name], [init.name], to=onnx.TensorProto.FLOAT,
                                              name=init.name + "_cast"))
    onnx.save(model, str(dst))


def _to_int8(src: Path, dst: Path, cell: str) -> None:
    if cell not in INT8_CELLS:
        raise ParameterError(
            "precision", f"int8: ONNX Runtime's dynamic quantisation covers LSTM, not {cell.upper()}; "
            "use fp32 or fp16 for this model"
        )
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=["LSTM", "Gemm", "MatMul"], weight_type=QuantType.QInt8)


def _add_metadata(path: Path, precision: str, trained: TrainedModel, streaming: bool = False) -> None:
    """Record what the graph is, for ``drnn infer`` and for whoever deploys it."""
    import json

    import onnx

    graph = onnx.load(str(path))
    transform = trained.transform
    meta = {"precision": precision, "model_config": json.dumps(trained.config.to_dict()),
            "permuted": str(transform.permutation is not None).lower(),
            "normalized": str(transform.mean is not None).lower(),
            "differences": str(transform.differences).lower(), "producer": "dilated-rnn",
            "streaming": str(streaming).lower()}
    if trained.data is not None:
        meta["classes"] = json.dumps(trained.data["classes"])
    onnx.helper.set_model_props(graph, meta)
    onnx.save(graph, str(path))


def _convert(deploy: RawInputClassifier, tmp: Path, precision: str, opset: int, input_name: str, output_name: str,
             length: int) -> Path:
    """The graph at ``precision`` in ``tmp``: exported in fp32, then converted."""
    fp32 = tmp / "fp32.onnx"
    _export_fp32(deploy, fp32, opset, input_name, output_name, length)
    if precision == "fp32":
        return fp32
    final = tmp / f"{precision}.onnx"
    if precision == "fp16":
        _to_fp16(fp32, final)
    else:
        _to_int8(fp32, final, deploy.model.config.cell)
    return final


def check_parity(graph, deploy: RawInputClassifier, sequences: list[np.ndarray], precision: str, batch: int) -> dict:
    """An exported graph's backend (``infer.OnnxBackend``, ``OpenvinoBackend``) vs PyTorch (the pruned plan of
    each length) on real sequences at batch 1 and ``batch``."""
    x, lengths = (torch.from_numpy(a) for a in pad_sequences(sequences))
    pruned = copy.deepcopy(deploy)
    pruned.full = False
    with torch.no_grad():
        expected = pruned(x, lengths).numpy()
        exact = pruned.double()(x.double(), lengths).numpy()
    got_one = np.concatenate([graph(sequences[i : i + 1]) for i in range(min(8, len(sequences)))])
    got_many = np.concatenate([graph(sequences[s : s + batch]) for s in range(0, len(sequences), batch)])
    diff_one = float(np.abs(got_one - expected[: len(got_one)]).max())
    diff_many = float(np.abs(got_many - expected).max())
    float32_error = float(np.abs(expected - exact).max())
    tolerance = max(FP32_TOLERANCE, 3 * float32_error)
    agreement = float((got_many.argmax(1) == expected.argmax(1)).mean())
    return {
        "images": len(sequences),
        "max_abs_diff_batch1": diff_one,
        "max_abs_diff_batched": diff_many,
        "batch": batch,
        "argmax_agreement": agreement,
        "pytorch_float32_vs_float64": float32_error,
        "fp32_tolerance": tolerance,
        "passed": max(diff_one, diff_many) <= tolerance if precision == "fp32" else agreement >= MIN_AGREEMENT[precision],
    }


def _prepare(trained: TrainedModel, check_inputs, precision: str, precisions, max_length: int | None):
    """The deployable module, the check sequences and the graph's length, after the checks every export makes."""
    if precision not in precisions:
        raise ParameterError("precision", f"must be one of {', '.join(precisions)}, got {precision!r}")
    if trained.config.readout == "every":
        raise ParameterError("streaming", "is needed: a model with a label at every step exports as the step graph")
    sequences = _as_sequences(check_inputs)
    lengths = {len(s) for s in sequences}
    if max_length is None and len(lengths) != 1:
        raise ParameterError("max_length", "is needed: the check sequences have several lengths")
    deploy = trained.to("cpu").module(full=max_length is not None).eval()
    return deploy, sequences, max_length or lengths.pop()


def _require_parity(path: Path, parity: dict, what: str) -> None:
    if not parity["passed"]:
        raise UserError(
            f"{path}: exported {what} disagrees with PyTorch (max |diff| "
            f"{max(parity['max_abs_diff_batch1'], parity['max_abs_diff_batched']):.3g}, argmax agreement "
            f"{parity['argmax_agreement']:.4f}); nothing written"
        )


def export_onnx(
    trained: TrainedModel,
    path,
    check_inputs,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    input_name: str = "Placeholder",
    output_name: str = "the_outputs",
    max_length: int | None = None,
) -> dict:
    """Export, convert, check (onnx checker + parity with PyTorch) and only then write ``path``.

    ``trained``: the model, its input transform (inside the graph) and its data (the class names go into
    the graph's metadata). ``check_inputs``: real raw sequences, [L, F] float32 each. With ``max_length``
    the graph takes sequences of any length up to it (module doc); else every check sequence must have
    the one length the graph is made for. fp32 must match PyTorch within 1e-4, or within what float32
    rounding explains (see FP32_TOLERANCE); fp16 and int8 must agree on the argmax of at least
    ``MIN_AGREEMENT[precision]`` of them. A failed check raises ``UserError``.
    """
    import onnx

    deploy, sequences, length = _prepare(trained, check_inputs, precision, PRECISIONS, max_length)
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        final = _convert(deploy, Path(tmp), precision, opset, input_name, output_name, length)
        _add_metadata(final, precision, trained)
        onnx.checker.check_model(str(final))
        write_sidecar(final)  # the parity check reads the graph as drnn infer will: verified
        parity = check_parity(OnnxBackend(final), deploy, sequences, precision, batch=min(256, len(sequences)))
        _require_parity(path, parity, f"{precision} model")
        with atomic_path(path) as out:
            out.write_bytes(final.read_bytes())
        write_sidecar(path)  # PATH.sha256: drnn infer verifies the graph against it
    graph = onnx.load(str(path))
    return {
        "path": str(path),
        "precision": precision,
        "opset": opset,
        "input": input_name,
        "output": output_name,
        "variable_length": max_length is not None,
        "bytes": path.stat().st_size,
        "ops": sorted({n.op_type for n in graph.graph.node}),
        "parity": parity,
    }


def export_openvino(trained: TrainedModel, path, check_inputs, precision: str = "fp32",
                    max_length: int | None = None, opset: int = DEFAULT_OPSET) -> dict:
    """OpenVINO IR at ``path`` (``.xml``, weights in the ``.bin`` beside it): the fp32 ONNX graph converted
    by OpenVINO, checked like ``export_onnx`` (through OpenVINO's CPU plugin) and only then written.

    ``precision``: ``fp32``, or ``fp16`` (weights stored in float16, compute in float32). The sidecar
    ``PATH.xml.sha256`` covers both files. Arguments as ``export_onnx``'s.
    """
    ov = import_openvino()
    path = Path(path)
    if path.suffix != ".xml":
        raise ParameterError("path", f"an OpenVINO IR is written as NAME.xml (weights in NAME.bin), got {path.name}")
    deploy, sequences, length = _prepare(trained, check_inputs, precision, OPENVINO_PRECISIONS, max_length)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = _convert(deploy, Path(tmp), "fp32", opset, "Placeholder", "the_outputs", length)
        _add_metadata(onnx_path, precision, trained)
        ir = ov.convert_model(str(onnx_path))
        for key, value in ir.get_rt_info()["framework"].items():  # the ONNX metadata, under our own key
            ir.set_rt_info(value.astype(str) if hasattr(value, "astype") else str(value), ["dilated_rnn", key])
        ir.set_rt_info(precision, ["dilated_rnn", "precision"])
        staged = Path(tmp) / "model.xml"
        ov.save_model(ir, str(staged), compress_to_fp16=precision == "fp16")
        write_sidecar(staged, [staged.with_suffix(".bin")])
        parity = check_parity(OpenvinoBackend(staged), deploy, sequences, precision, batch=min(256, len(sequences)))
        _require_parity(path, parity, f"{precision} OpenVINO IR")
        weights = path.with_suffix(".bin")
        for src, dst in ((staged.with_suffix(".bin"), weights), (staged, path)):  # the .xml, which names the .bin, last
            with atomic_path(dst) as out:
                out.write_bytes(src.read_bytes())
        write_sidecar(path, [weights])
    return {"path": str(path), "weights": str(weights), "format": "openvino", "precision": precision,
            "openvino": ov.__version__.split("-")[0], "variable_length": max_length is not None,
            "bytes": path.stat().st_size + weights.stat().st_size, "parity": parity}


def export_step_onnx(trained: TrainedModel, path, check_inputs, opset: int = DEFAULT_OPSET) -> dict:
    """The streaming step graph (``stream.StepGraph``): exported, checked, and only then written to ``path``.

    Inputs ``sample`` [N, F] (raw values), ``state`` [N, M], ``position`` [N] int64; outputs ``logits``
    [N, K], ``state_out``, ``position_out`` (feed them back for the next sample; start from zeros). The
    check streams real sequences (``check_inputs`` as in ``export_onnx``) through ONNX Runtime sample by
    sample and compares the logits at every step with PyTorch's ``stream`` (fp32 tolerance as above).
    """
    import onnx

    from .stream import (
        STEP_INPUTS,
        STEP_OUTPUTS,
        OnnxStream,
        StepGraph,
        TorchStream,
        stream_sequences,
    )

    sequences = _as_sequences(check_inputs)
    trained = trained.to("cpu")
    trained.model.eval()
    try:
        step = StepGraph(trained).eval()
    except ValueError as e:
        raise ParameterError("streaming", f"cannot be used with this model: {e}") from None
    F, M = trained.features, step.state_size
    example = (torch.zeros(2, F), torch.zeros(2, M), torch.zeros(2, dtype=torch.int64))
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        final = Path(tmp) / "step.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(step, example, str(final), dynamo=False, opset_version=opset,
                              input_names=list(STEP_INPUTS), output_names=list(STEP_OUTPUTS),
                              dynamic_axes={n: {0: "N"} for n in STEP_INPUTS + STEP_OUTPUTS})
        _add_metadata(final, "fp32", trained, streaming=True)
        onnx.checker.check_model(str(final))
        write_sidecar(final)
        got, _ = stream_sequences(OnnxStream(final), sequences, batch_size=len(sequences))
        expected, _ = stream_sequences(TorchStream(trained, threads=None), sequences, batch_size=len(sequences), chunk=64)
        exact, _ = stream_sequences(TorchStream(trained.to(torch.float64), threads=None), sequences,
                                    batch_size=len(sequences), chunk=len(sequences[0]))
        finite = lambda a: np.nan_to_num(np.concatenate(a), nan=0.0)  # NaN: no prediction yet (d0 > 1)
        same_nan = np.array_equal(np.isnan(np.concatenate(got)), np.isnan(np.concatenate(expected)))
        diff = float(np.abs(finite(got) - finite(expected)).max()) if same_nan else float("inf")
        float32_error = float(np.abs(finite(expected) - finite(exact)).max())
        tolerance = max(FP32_TOLERANCE, 3 * float32_error)
        if not diff <= tolerance:
            raise UserError(f"{path}: exported step graph disagrees with PyTorch's stream (max |diff| {diff:.3g}, "
                            f"tolerance {tolerance:.3g}); nothing written")
        with atomic_path(path) as out:
            out.write_bytes(final.read_bytes())
        write_sidecar(path)
    return {"path": str(path), "streaming": True, "opset": opset, "state_size": M, "bytes": path.stat().st_size,
            "parity": {"sequences": len(sequences), "steps": int(sum(len(s) for s in sequences)),
                       "max_abs_diff": diff, "pytorch_float32_vs_float64": float32_error,
                       "fp32_tolerance": tolerance, "passed": True}}


def export_length(data: dict) -> int | None:
    """``export_onnx``'s ``max_length`` for a model of this data (``Dataset.info()``): None at one length."""
    return None if data.get("fixed_length") else data["max_length"]


def _as_sequences(check_inputs) -> list[np.ndarray]:
    return [np.asarray(s, dtype=np.float32) for s in check_inputs]
