import contextlib
from pathlib import Path

import numpy as np
import pytest

from dilated_rnn.deploy.bins import write_bins
from dilated_rnn.deploy.export import export_onnx
from dilated_rnn.deploy.infer import infer_folder
from dilated_rnn.errors import UserError
from dilated_rnn.trained import load_model


@pytest.fixture(scope="module")
def ckpt(shipped_checkpoint):
    return shipped_checkpoint("lstm-pmnist")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, mnist, ckpt):
    root = tmp_path_factory.mktemp("infer")
    test = mnist["test"].subset(40)
    write_bins(test.sequences(), test.labels, root / "bins")
    export_onnx(load_model(ckpt), root / "m.onnx", test.sequences())
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


@pytest.mark.parametrize("cell,readout", [("lstm", "last"), ("gru", "last"), ("gru", "layers")])
def test_torch_backend_of_one_length_skips_the_modules_and_gives_their_logits(cell, readout, mnist, monkeypatch):
    """Sequences of one length go straight to the stack's kernel and the head's product (batch-1 latency);
    the logits are the classifier's, with an input transform (permutation and normalization) too; mixed
    lengths take the module path. The top layer's readout and every layer's (the recipe's for your data)."""
    import torch

    from dilated_rnn import engine
    from dilated_rnn.data.transform import InputTransform
    from dilated_rnn.deploy.infer import TorchBackend
    from dilated_rnn.model import DilatedRNNClassifier, ModelConfig
    from dilated_rnn.trained import TrainedModel

    if not engine.fused():
        pytest.skip("the direct path needs the compiled kernels")
    model = DilatedRNNClassifier.from_config(ModelConfig(cell=cell, hidden_sizes=(6, 5), dilations=(1, 4),
                                                         readout=readout)).eval()
    x = mnist["test"].x[:9, ::8]  # [9, 98, 1] real images, shortened
    transform = InputTransform(torch.randperm(98), torch.tensor([0.3]), torch.tensor([0.2]))
    modules = []
    monkeypatch.setattr(DilatedRNNClassifier, "forward",
                        lambda self, *a, f=DilatedRNNClassifier.forward: modules.append(1) or f(self, *a))
    for t, off in ((None, False), (transform, False), (None, True)):  # off: Numba's kernels, not the native ones
        with torch.no_grad():
            expected = model(x if t is None else t(x)).numpy()
        with engine.use("numba") if off else contextlib.nullcontext():
            backend = TorchBackend(TrainedModel(model, t))
            modules.clear()
            for rows in (x[:1], x):  # batch 1 (rows one at a time) and 9 (tiles)
                got = backend(list(rows.numpy()))
                np.testing.assert_allclose(got, expected[: len(rows)], rtol=1e-5, atol=1e-5)
            assert not modules
            backend([x[0].numpy(), x[1, :50].numpy()])  # two lengths: the modules
            assert modules
