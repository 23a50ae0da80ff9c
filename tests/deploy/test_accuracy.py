import numpy as np
import pytest

from dilated_rnn.deploy.accuracy import accuracy_report
from dilated_rnn.errors import UserError


def _outputs(d, logits, dtype):
    d.mkdir()
    for i, row in enumerate(logits):
        row.astype(dtype).tofile(d / f"{i:05d}_output_0.bin")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_accuracy_of_fp32_and_fp16_outputs(tmp_path, dtype):
    labels = np.array([3, 1, 4, 1, 5])
    logits = np.eye(10)[[3, 1, 4, 0, 5]]  # one wrong of five
    _outputs(tmp_path / "out", logits, dtype)
    np.save(tmp_path / "labels.npy", labels)
    report = accuracy_report(tmp_path / "out", tmp_path / "labels.npy")
    assert report["accuracy"] == pytest.approx(0.8) and report["num_images"] == 5
    assert report["output_dtype"] == np.dtype(dtype).name
    np.save(tmp_path / "onehot.npy", np.eye(10)[labels])
    assert accuracy_report(tmp_path / "out", tmp_path / "onehot.npy")["correct"] == 4


def test_missing_and_extra_outputs_are_reported(tmp_path):
    _outputs(tmp_path / "out", np.eye(10)[[0, 1, 2]], np.float32)
    (tmp_path / "out" / "00001_output_0.bin").unlink()
    np.save(tmp_path / "labels.npy", np.array([0, 1]))
    with pytest.raises(UserError, match=r"1 missing \(00001_output_0.bin\), 1 extra \(00002_output_0.bin\)"):
        accuracy_report(tmp_path / "out", tmp_path / "labels.npy")


def test_wrong_sized_output(tmp_path):
    _outputs(tmp_path / "out", np.eye(10)[[0]], np.float32)
    np.zeros(7, np.float32).tofile(tmp_path / "out" / "00000_output_0.bin")
    np.save(tmp_path / "labels.npy", np.array([0]))
    with pytest.raises(UserError, match="28 bytes is neither"):
        accuracy_report(tmp_path / "out", tmp_path / "labels.npy")


def test_mixed_dtypes_in_one_folder_are_an_error(tmp_path):
    _outputs(tmp_path / "out", np.eye(10)[[0, 1]], np.float32)
    np.eye(10)[1].astype(np.float16).tofile(tmp_path / "out" / "00001_output_0.bin")
    np.save(tmp_path / "labels.npy", np.array([0, 1]))
    with pytest.raises(UserError, match="00001_output_0.bin: 20 bytes is not 10 fp32 values"):
        accuracy_report(tmp_path / "out", tmp_path / "labels.npy")
