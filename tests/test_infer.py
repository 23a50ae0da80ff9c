from pathlib import Path

import numpy as np
import pytest

from dilated_rnn.bins import write_bins
from dilated_rnn.errors import UserError
from dilated_rnn.export import export_onnx
from dilated_rnn.infer import infer_folder
from dilated_rnn.sources import load_model


@pytest.fixture(scope="module")
def ckpt(shipped_checkpoint):
    return shipped_checkpoint("lstm-pmnist")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, mnist, ckpt):
    root = tmp_path_factory.mktemp("infer")
    test = mnist["test"].subset(40)
    write_bins(test.sequences(), test.labels, root / "bins")
    model, transform, _ = load_model(ckpt)
    export_onnx(model, transform, root / "m.onnx", test.images)
    return root


def _outputs(d, dtype=np.float32):
    return np.stack([np.fromfile(p, dtype=dtype) for p in sorted(Path(d).glob("*_output_0.bin"))])


def test_both_backends_give_the_same_outputs(folder, ckpt):
    onnx_stats = infer_folder(folder / "m.onnx", folder / "bins", folder / "out-onnx", batch_size=1)
    torch_stats = infer_folder(ckpt, folder / "bins", folder / "out-torch", batch_size=16)
    a, b = _outputs(folder / "out-onnx"), _outputs(folder / "out-torch")
    assert a.shape == (40, 10)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert onnx_stats["backend"] == "onnxruntime" and torch_stats["backend"] == "pytorch"
    assert onnx_stats["images"] == 40 and onnx_stats["latency_ms_p50"] > 0 and onnx_stats["images_per_s"] > 0
    labels = np.load(folder / "bins" / "labels.npy")
    assert (a.argmax(1) == labels).mean() > 0.8  # a real trained model on real digits


def test_fp16_outputs(folder):
    infer_folder(folder / "m.onnx", folder / "bins", folder / "out-16", output_dtype="fp16")
    assert (folder / "out-16" / "00000_output_0.bin").stat().st_size == 20
    np.testing.assert_allclose(_outputs(folder / "out-16", np.float16), _outputs(folder / "out-onnx"), rtol=1e-2,
                               atol=1e-2)


def test_bad_bin_leaves_no_outputs(folder, tmp_path):
    bins = tmp_path / "bins"
    bins.mkdir()
    for p in sorted((folder / "bins").glob("*.bin"))[:3]:
        (bins / p.name).write_bytes(p.read_bytes())
    (bins / "00002.bin").write_bytes(b"\0" * 100)
    with pytest.raises(UserError, match="00002.bin: 100 bytes"):
        infer_folder(folder / "m.onnx", bins, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_model_with_wrong_input_shape(folder, tmp_path, mnist):
    import torch

    from dilated_rnn.model import DilatedRNNClassifier, ModelConfig

    model = DilatedRNNClassifier.from_config(ModelConfig(input_size=2, hidden_sizes=(4,), dilations=(1,)))
    torch.onnx.export(model, (torch.zeros(1, 784, 2),), str(tmp_path / "wrong.onnx"), dynamo=False,
                      input_names=["x"])
    with pytest.raises(UserError, match=r"00000.bin: 3136 bytes, expected 6272 \(1568 float32 values\)"):
        infer_folder(tmp_path / "wrong.onnx", folder / "bins", tmp_path / "out")  # the graph takes 2 channels
    assert not (tmp_path / "out").exists()
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(UserError, match="junk.onnx: not a loadable ONNX model"):
        infer_folder(tmp_path / "junk.onnx", folder / "bins", tmp_path / "out")
