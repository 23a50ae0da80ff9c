"""Every artifact is verified before use: single-bit flips across the whole file, truncations, swapped contents."""

import io
import shutil

import numpy as np
import pytest
import torch

from dilated_rnn.cli import main
from dilated_rnn.deploy.export import export_onnx, export_openvino
from dilated_rnn.deploy.infer import OnnxBackend, OpenvinoBackend
from dilated_rnn.errors import UserError
from dilated_rnn.integrity import MANIFEST, seal, unseal
from dilated_rnn.model import DilatedRNNClassifier, ModelConfig
from dilated_rnn.trained import WEIGHTS_DIR, load_pretrained
from dilated_rnn.training.checkpoint import load_checkpoint, save_checkpoint

CONFIG = ModelConfig(hidden_sizes=(6, 6), dilations=(1, 2), cell="lstm")


def _positions(size: int, count: int = 160):
    """Byte positions spread over the whole file, the first and last bytes among them."""
    return sorted({0, size - 1, *np.linspace(0, size - 1, count).astype(int).tolist()})


def _flipped(data: bytes, position: int, bit: int = 0) -> bytes:
    return data[:position] + bytes([data[position] ^ (1 << bit)]) + data[position + 1 :]


def _payload(model):
    return {"model_config": model.config.to_dict(), "model": model.state_dict(), "permutation": None,
            "train_config": {"steps": 3}, "step": 3}


def test_seal_round_trip_and_every_flip_of_it_is_caught():
    payload = b"some bytes \x00\x01" * 50
    sealed = seal(payload)
    assert unseal(sealed, "f") == payload and unseal(payload, "f") is None
    for position in _positions(len(sealed)):
        try:
            assert unseal(_flipped(sealed, position), "f") != payload
        except UserError as e:
            assert "f: checksum mismatch" in str(e)


def test_checkpoint_refuses_any_flipped_bit_or_truncation(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _payload(DilatedRNNClassifier.from_config(CONFIG)))
    data = path.read_bytes()
    assert load_checkpoint(path)["step"] == 3
    bad = tmp_path / "bad.pt"
    for position in _positions(len(data)):
        for bit in (0, 7):
            bad.write_bytes(_flipped(data, position, bit))
            with pytest.raises(UserError, match="bad.pt: "):
                load_checkpoint(bad)
    for cut in (1, 10, len(data) // 3, len(data) // 2, len(data) - 80, len(data) - 1):
        bad.write_bytes(data[:cut])
        with pytest.raises(UserError, match="bad.pt: "):
            load_checkpoint(bad)


def test_a_checkpoint_with_swapped_tensors_under_the_old_seal_is_refused(tmp_path):
    model = DilatedRNNClassifier.from_config(CONFIG)
    path = tmp_path / "c.pt"
    save_checkpoint(path, _payload(model))
    swapped = _payload(model)
    sd = swapped["model"]
    sd["rnn.layers.0.weight_hh_l0"], sd["rnn.layers.1.weight_hh_l0"] = sd["rnn.layers.1.weight_hh_l0"], \
        sd["rnn.layers.0.weight_hh_l0"]
    buffer = io.BytesIO()
    torch.save({"format": "dilated-rnn-checkpoint", "format_version": 4, **swapped}, buffer)
    footer = path.read_bytes()[-79:]
    (tmp_path / "swapped.pt").write_bytes(buffer.getvalue() + footer)
    with pytest.raises(UserError, match="swapped.pt: checksum mismatch"):
        load_checkpoint(tmp_path / "swapped.pt")


def test_unsealed_checkpoints_of_earlier_versions_load_and_their_zip_crcs_are_checked(tmp_path):
    model = DilatedRNNClassifier.from_config(CONFIG)
    path = tmp_path / "v3.pt"
    torch.save({"format": "dilated-rnn-checkpoint", "format_version": 3, **_payload(model)}, path)
    assert load_checkpoint(path)["step"] == 3
    data = path.read_bytes()
    weights = model.state_dict()["head.weight"].numpy().tobytes()
    at = data.index(weights[:16])  # inside a tensor's stored bytes
    for position in range(at, at + len(weights), 7):
        (tmp_path / "bad.pt").write_bytes(_flipped(data, position))
        with pytest.raises(UserError, match="bad.pt: not a readable dilated-rnn checkpoint .*CRC"):
            load_checkpoint(tmp_path / "bad.pt")
    torch.save({"format": "dilated-rnn-checkpoint", "format_version": 4, **_payload(model)}, tmp_path / "v4.pt")
    with pytest.raises(UserError, match="v4.pt: its checksum seal is missing or damaged"):
        load_checkpoint(tmp_path / "v4.pt")  # a current version must be sealed


def test_cli_reports_a_damaged_checkpoint_in_one_line(tmp_path, capsys):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _payload(DilatedRNNClassifier.from_config(CONFIG)))
    data = path.read_bytes()
    path.write_bytes(_flipped(data, len(data) // 2))
    assert main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "c.pt: checksum mismatch" in err and "Traceback" not in err


@pytest.fixture
def weights_copy(tmp_path):
    shutil.copytree(WEIGHTS_DIR, tmp_path / "weights")
    return tmp_path / "weights"


@pytest.mark.parametrize("name", ["rnn-mnist.safetensors", "rnn-mnist.json", MANIFEST])
def test_shipped_weights_cards_and_manifest_refuse_any_flipped_bit(weights_copy, name):
    load_pretrained("rnn-mnist", weights_copy)
    target = weights_copy / name
    data = target.read_bytes()
    for position in _positions(len(data), 60):
        target.write_bytes(_flipped(data, position))
        with pytest.raises(UserError, match="weights/"):
            load_pretrained("rnn-mnist", weights_copy)
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="weights/"):
        load_pretrained("rnn-mnist", weights_copy)
    target.write_bytes(data)
    load_pretrained("rnn-mnist", weights_copy)  # restored: loads again


def test_exported_graphs_refuse_any_flipped_bit_and_need_their_checksum(tmp_path, mnist):
    trained = load_pretrained("rnn-mnist")
    path = tmp_path / "m.onnx"
    export_onnx(trained, path, mnist["test"].x[:8])
    OnnxBackend(path)
    data = path.read_bytes()
    for position in _positions(len(data), 60):
        path.write_bytes(_flipped(data, position))
        with pytest.raises(UserError, match="m.onnx: "):
            OnnxBackend(path)
    path.write_bytes(data)
    (tmp_path / "m.onnx.sha256").unlink()
    with pytest.raises(UserError, match="m.onnx: m.onnx.sha256 is missing"):
        OnnxBackend(path)


def test_openvino_ir_refuses_any_flipped_bit_in_either_file_and_needs_its_checksum(tmp_path, mnist):
    trained = load_pretrained("rnn-mnist")
    path = tmp_path / "m.xml"
    export_openvino(trained, path, mnist["test"].x[:8])
    OpenvinoBackend(path)
    for target in (path, tmp_path / "m.bin"):
        data = target.read_bytes()
        for position in _positions(len(data), 40):
            target.write_bytes(_flipped(data, position))
            with pytest.raises(UserError, match=f"{target.name}: "):
                OpenvinoBackend(path)
        for size in (0, len(data) // 2, len(data) - 1):
            target.write_bytes(data[:size])
            with pytest.raises(UserError, match=f"{target.name}: checksum mismatch"):
                OpenvinoBackend(path)
        target.write_bytes(data)
    OpenvinoBackend(path)  # restored: loads again
    (tmp_path / "m.bin").unlink()
    with pytest.raises(UserError, match="m.bin: missing; m.xml.sha256 lists it"):
        OpenvinoBackend(path)
    (tmp_path / "m.xml.sha256").unlink()
    with pytest.raises(UserError, match="m.xml: m.xml.sha256 is missing"):
        OpenvinoBackend(path)
