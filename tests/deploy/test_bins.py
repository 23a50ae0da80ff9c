import numpy as np
import pytest
import torch

from dilated_rnn.deploy.bins import load_labels, read_bins, write_bins
from dilated_rnn.errors import UserError


def test_round_trip_natural_order_float32(tmp_path, mnist):
    test = mnist["test"].subset(12)
    assert write_bins(test.sequences(), test.labels, tmp_path / "bins") == 12
    names = sorted(p.name for p in (tmp_path / "bins").iterdir())
    assert names[:2] == ["00000.bin", "00001.bin"] and names[-1] == "labels.npy" and len(names) == 13
    assert (tmp_path / "bins" / "00003.bin").stat().st_size == 784 * 4
    stems, x = read_bins(tmp_path / "bins", features=1, length=784)
    assert stems[0] == "00000" and x[0].dtype == np.float32 and x[0].shape == (784, 1)
    np.testing.assert_array_equal(np.stack(x)[..., 0], test.x[..., 0].numpy())
    np.testing.assert_array_equal(load_labels(tmp_path / "bins" / "labels.npy"), test.labels.numpy())
    assert np.load(tmp_path / "bins" / "labels.npy").dtype == np.int64


def test_refuses_a_non_empty_folder(tmp_path, mnist):
    (tmp_path / "bins").mkdir()
    (tmp_path / "bins" / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        write_bins(mnist["test"].subset(2).sequences(), mnist["test"].labels[:2], tmp_path / "bins")


def test_one_hot_labels_are_accepted(tmp_path):
    np.save(tmp_path / "l.npy", np.eye(10, dtype=np.float32)[[3, 1, 4]])
    np.testing.assert_array_equal(load_labels(tmp_path / "l.npy"), [3, 1, 4])


def test_pickled_labels_are_refused(tmp_path):
    np.save(tmp_path / "l.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="l.npy: not a readable"):
        load_labels(tmp_path / "l.npy")


@pytest.mark.parametrize("bad,message", [(np.zeros(783, np.float32), "3132 bytes, expected 3136"),
                                         (np.full(784, np.nan, np.float32), "contains NaN or infinite")])
def test_bad_inputs_are_named(tmp_path, bad, message):
    np.zeros(784, np.float32).tofile(tmp_path / "00000.bin")
    bad.tofile(tmp_path / "00001.bin")
    with pytest.raises(UserError, match=f"00001.bin: {message}"):
        read_bins(tmp_path, length=784)


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(UserError, match="no .bin input files"):
        read_bins(tmp_path)
    with pytest.raises(UserError, match="no such input folder"):
        read_bins(tmp_path / "nope")


def test_variable_length_multichannel_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    sequences = [rng.normal(size=(n, 3)).astype(np.float32) for n in (5, 1, 17)]
    write_bins(sequences, torch.tensor([2, 0, 1]), tmp_path / "bins")
    assert (tmp_path / "bins" / "00002.bin").stat().st_size == 17 * 3 * 4  # the length follows from the size
    stems, back = read_bins(tmp_path / "bins", features=3)
    assert stems == ["00000", "00001", "00002"]
    for a, b in zip(back, sequences):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(UserError, match="00002.bin: 204 bytes is not a sequence of 3-channel float32 steps, at most 16"):
        read_bins(tmp_path / "bins", features=3, max_length=16)
    with pytest.raises(UserError, match="00000.bin: 60 bytes is not a sequence of 8-channel float32 steps"):
        read_bins(tmp_path / "bins", features=8)
