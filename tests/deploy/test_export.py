import onnx
import pytest
import torch

from dilated_rnn.config import ATC_OPSET
from dilated_rnn.deploy.export import export_onnx, export_openvino
from dilated_rnn.deploy.infer import OpenvinoBackend, session
from dilated_rnn.errors import UserError
from dilated_rnn.model import DilatedRNNClassifier, ModelConfig
from dilated_rnn.trained import TrainedModel, load_pretrained


def _trained(name):
    trained = load_pretrained(name)
    return trained.model, trained


@pytest.mark.parametrize("name", ["lstm-mnist", "gru-mnist", "rnn-mnist", "lstm-pmnist"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_export_parity_each_cell_and_precision(tmp_path, mnist, name, precision):
    model, trained = _trained(name)
    images = mnist["test"].x[:300]
    if precision == "int8" and model.config.cell != "lstm":
        with pytest.raises(UserError, match="int8.*LSTM"):
            export_onnx(trained, tmp_path / "m.onnx", images, precision=precision)
        assert not (tmp_path / "m.onnx").exists()
        return
    report = export_onnx(trained, tmp_path / "m.onnx", images, precision=precision)
    p = report["parity"]
    assert p["images"] == 300 and p["batch"] == 256
    if precision == "fp32":
        worst = max(p["max_abs_diff_batch1"], p["max_abs_diff_batched"])
        assert worst <= p["fp32_tolerance"] == max(1e-4, 3 * p["pytorch_float32_vs_float64"])
        if name != "rnn-mnist":  # the vanilla RNN is the one model whose float32 rounding exceeds 1e-4
            assert worst <= 1e-4
    assert p["passed"] and p["argmax_agreement"] >= {"fp32": 0.999, "fp16": 0.99, "int8": 0.95}[precision]
    # independent check: run the file ourselves on images the export never saw
    sess = session(tmp_path / "m.onnx", threads=1)
    x = mnist["test"].x[5000:5064]
    got = sess.run(None, {"Placeholder": x.numpy()})[0]
    with torch.no_grad():
        expected = trained.module()(x).numpy()
    assert got.shape == (64, 10)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
    assert sess.get_modelmeta().custom_metadata_map["precision"] == precision


def test_graph_is_pruned_with_native_recurrent_ops(tmp_path, mnist):
    model, trained = _trained("gru-mnist")
    export_onnx(trained, tmp_path / "m.onnx", mnist["test"].x[:16])
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    grus = [n for n in graph.node if n.op_type == "GRU"]
    assert len(grus) == 9
    assert [i.name for i in graph.input] == ["Placeholder"] and [o.name for o in graph.output] == ["the_outputs"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [784, 1]


def _float_weight_bytes(path):
    inits = onnx.load(str(path)).graph.initializer
    return {dtype: sum(len(i.raw_data) for i in inits if i.data_type == dtype) for dtype in (1, 10)}  # fp32, fp16


def test_fp16_stores_every_weight_in_half_the_bytes(tmp_path, mnist):
    model, trained = _trained("lstm-mnist")
    small = mnist["test"].x[:16]
    full = export_onnx(trained, tmp_path / "a.onnx", small)
    half = export_onnx(trained, tmp_path / "b.onnx", small, precision="fp16")
    fp32_weights, fp16_weights = _float_weight_bytes(tmp_path / "a.onnx"), _float_weight_bytes(tmp_path / "b.onnx")
    assert fp32_weights[1] == 4 * sum(p.numel() for p in model.parameters())
    assert fp16_weights == {1: 0, 10: fp32_weights[1] // 2}
    assert half["bytes"] < full["bytes"]


def test_atc_opset_and_custom_names(tmp_path, mnist):
    model, trained = _trained("lstm-mnist")
    report = export_onnx(trained, tmp_path / "atc.onnx", mnist["test"].x[:16], opset=ATC_OPSET,
                         input_name="pixels", output_name="logits")
    graph = onnx.load(str(tmp_path / "atc.onnx"))
    assert graph.opset_import[0].version == 11 and report["opset"] == 11
    assert graph.graph.input[0].name == "pixels" and graph.graph.output[0].name == "logits"
    assert all(n.op_type in {"LSTM", "Gather", "Gemm", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat",
                             "Constant", "ConstantOfShape", "Shape", "Identity", "Slice"} for n in graph.graph.node)


def test_failed_parity_writes_nothing(tmp_path, mnist, monkeypatch):
    import dilated_rnn.deploy.export as export

    model, trained = _trained("rnn-mnist")
    real = export.check_parity
    monkeypatch.setattr(export, "check_parity", lambda *a, **k: {**real(*a, **k), "passed": False})
    with pytest.raises(UserError, match="disagrees with PyTorch"):
        export_onnx(trained, tmp_path / "m.onnx", mnist["test"].x[:16])
    assert list(tmp_path.iterdir()) == []


def test_non_nested_schedule_exports_exactly(tmp_path, mnist):
    torch.manual_seed(0)
    model = DilatedRNNClassifier.from_config(ModelConfig(hidden_sizes=(6, 6, 6), dilations=(1, 3, 5), cell="lstm"))
    report = export_onnx(TrainedModel(model), tmp_path / "m.onnx", mnist["test"].x[:64])
    assert report["parity"]["max_abs_diff_batched"] <= 1e-4


@pytest.mark.parametrize("name", ["lstm-mnist", "gru-pmnist"])  # the RNN: test_integrity.py and the pipeline tests
def test_openvino_ir_parity_fp32_and_fp16(tmp_path, mnist, name):
    import openvino as ov

    model, trained = _trained(name)
    images = mnist["test"].x[:160]
    sizes = {}
    for precision in ("fp32", "fp16"):
        path = tmp_path / f"{precision}.xml"
        report = export_openvino(trained, path, images, precision=precision)
        p = report["parity"]
        assert p["passed"] and p["images"] == 160 and p["batch"] == 160
        if precision == "fp32":
            assert max(p["max_abs_diff_batch1"], p["max_abs_diff_batched"]) <= p["fp32_tolerance"]
            assert p["argmax_agreement"] >= 0.999
        else:
            assert p["argmax_agreement"] >= 0.99 and p["max_abs_diff_batched"] > 0  # lossy weights, same answers
        sizes[precision] = (tmp_path / f"{precision}.bin").stat().st_size
        # independent check: OpenVINO itself, on images the export never saw
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        x = mnist["test"].x[5000:5064]
        got = compiled(x.numpy())[0]
        with torch.no_grad():
            expected = trained.module()(x).numpy()
        assert got.shape == (64, 10) and (got.argmax(1) == expected.argmax(1)).mean() >= 0.95
        assert OpenvinoBackend(path).precision == precision
    weights = 4 * sum(p.numel() for p in model.parameters())  # OpenVINO may add a layer's two biases into one
    assert sizes["fp32"] >= 0.95 * weights and abs(sizes["fp32"] - sizes["fp16"] - weights / 2) < 0.05 * weights


def test_openvino_failed_parity_or_bad_arguments_write_nothing(tmp_path, mnist, monkeypatch):
    import dilated_rnn.deploy.export as export
    from dilated_rnn.errors import ParameterError

    model, trained = _trained("rnn-mnist")
    images = mnist["test"].x[:16]
    with pytest.raises(ParameterError, match="precision must be one of fp32, fp16, got 'int8'"):
        export_openvino(trained, tmp_path / "m.xml", images, precision="int8")
    with pytest.raises(ParameterError, match="NAME.xml"):
        export_openvino(trained, tmp_path / "m.onnx", images)
    real = export.check_parity
    monkeypatch.setattr(export, "check_parity", lambda *a, **k: {**real(*a, **k), "passed": False})
    with pytest.raises(UserError, match="m.xml: exported fp32 OpenVINO IR disagrees with PyTorch"):
        export_openvino(trained, tmp_path / "m.xml", images)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_every_layer_readout_exports_with_parity(tmp_path, cell):
    """readout="layers" on the pruned graph (one length) and on the every-step graph (lengths vary)."""
    torch.manual_seed(0)
    model = DilatedRNNClassifier(2, [5, 4, 6], [1, 2, 4], cell, num_classes=3, readout="layers").eval()
    rng = torch.Generator().manual_seed(1)
    fixed = [torch.randn(13, 2, generator=rng).numpy() for _ in range(20)]
    varied = [torch.randn(int(n), 2, generator=rng).numpy() for n in torch.randint(4, 30, (20,), generator=rng)]
    for name, sequences, max_length in (("fixed", fixed, None), ("varied", varied, 29)):
        report = export_onnx(TrainedModel(model), tmp_path / f"{name}.onnx", sequences, max_length=max_length)
        assert report["parity"]["passed"] and report["parity"]["max_abs_diff_batched"] <= 1e-4


@pytest.mark.parametrize("readout", ["mean", "max"])
def test_pooled_readouts_export_with_parity(tmp_path, readout):
    torch.manual_seed(0)
    model = DilatedRNNClassifier(2, [5, 4], [1, 2], "gru", num_classes=3, readout=readout).eval()
    rng = torch.Generator().manual_seed(1)
    varied = [torch.randn(int(n), 2, generator=rng).numpy() for n in torch.randint(3, 20, (16,), generator=rng)]
    fixed = [torch.randn(11, 2, generator=rng).numpy() for _ in range(16)]
    for name, sequences, max_length in (("fixed", fixed, None), ("varied", varied, 19)):
        report = export_onnx(TrainedModel(model), tmp_path / f"{name}.onnx", sequences, max_length=max_length)
        assert report["parity"]["passed"] and report["parity"]["max_abs_diff_batched"] <= 1e-4
