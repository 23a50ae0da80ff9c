"""Datasets beyond MNIST: the formats, the validation split, normalization, and every bad-data error."""

import numpy as np
import pytest
import torch

from dilated_rnn.cli import main
from dilated_rnn.data.datasets import default_dilations, load_dataset
from dilated_rnn.errors import UserError


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _fixed(rng, n, T=12, F=2, labels=("b", "a")):
    return rng.normal(size=(n, T, F)).astype(np.float32), np.array([labels[i % len(labels)] for i in range(n)])


def test_fixed_length_npz_with_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    x_train, y_train = _fixed(rng, 20)
    x_test, y_test = _fixed(rng, 6)
    ds = load_dataset(_npz(tmp_path / "d.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test),
                      val_fraction=0.2, seed=3)
    assert ds.classes == ("a", "b") and ds.num_features == 2 and ds.fixed_length == 12
    assert (len(ds.splits["train"]), len(ds.splits["val"]), len(ds.splits["test"])) == (16, 4, 6)
    assert ds.splits["val"].labels.tolist().count(0) == 2  # stratified: 20 % of each class of 10
    np.testing.assert_array_equal(ds.splits["test"].x.numpy(), x_test)  # raw values are kept
    assert ds.splits["test"].labels.tolist() == [1, 0, 1, 0, 1, 0]  # "b" is class 1
    # the same seed draws the same split; another seed another
    again = load_dataset(str(tmp_path / "d.npz"), val_fraction=0.2, seed=3)
    assert torch.equal(again.splits["val"].x, ds.splits["val"].x)
    other = load_dataset(str(tmp_path / "d.npz"), val_fraction=0.2, seed=4)
    assert not torch.equal(other.splits["val"].x, ds.splits["val"].x)


def test_variable_length_npz_concatenated_with_lengths_and_given_validation(tmp_path):
    rng = np.random.default_rng(1)
    lengths = {s: rng.integers(3, 15, size=n) for s, n in (("train", 9), ("val", 4), ("test", 5))}
    arrays = {}
    for s, ls in lengths.items():
        arrays[f"x_{s}"] = rng.normal(size=(int(ls.sum()), 3)).astype(np.float32)
        arrays[f"lengths_{s}"] = ls
        arrays[f"y_{s}"] = np.array([10, 2, 33][: 3] * 3)[: len(ls)]
    ds = load_dataset(_npz(tmp_path / "v.npz", **arrays))
    assert ds.classes == ("2", "10", "33")  # numeric labels sort as numbers
    assert ds.fixed_length is None and ds.max_length == max(int(ls.max()) for ls in lengths.values())
    assert ds.val_source == "given" and len(ds.splits["val"]) == 4
    test = ds.splits["test"]
    assert test.lengths.tolist() == lengths["test"].tolist()
    offsets = np.cumsum(np.r_[0, lengths["test"]])
    for i, seq in enumerate(test.sequences()):  # each sequence is its slice of the concatenation
        np.testing.assert_array_equal(seq, arrays["x_test"][offsets[i] : offsets[i + 1]])
    assert (test.x[0, test.lengths[0] :] == 0).all()  # zero padding after the real steps


def test_normalization_is_fitted_on_the_real_training_steps_only(tmp_path):
    x = np.concatenate([np.full((3, 1), 1.0), np.full((5, 1), 3.0), np.full((4, 1), 5.0), np.full((2, 1), 7.0)])
    arrays = dict(x_train=x.astype(np.float32), lengths_train=np.array([3, 5, 4, 2]), y_train=np.array([0, 0, 1, 1]),
                  x_test=np.ones((2, 1), np.float32), lengths_test=np.array([2]), y_test=np.array([1]),
                  x_val=np.ones((2, 1), np.float32), lengths_val=np.array([2]), y_val=np.array([0]))
    ds = load_dataset(_npz(tmp_path / "n.npz", **arrays), differences="off")
    real = x[:, 0]
    assert ds.transform.mean.item() == pytest.approx(real.mean())  # 14 real steps; padding would pull it to 0
    assert ds.transform.std.item() == pytest.approx(real.std())
    # each sequence is constant: its differences are 0 (the steps after its length, into the padding, never count)
    assert load_dataset(_npz(tmp_path / "n.npz", **arrays)).transform.mean.tolist() == pytest.approx([real.mean(), 0])


def test_bundled_archive_sets():
    gun = load_dataset("ucr:GunPoint", seed=0)
    assert (gun.num_features, gun.num_classes, gun.fixed_length) == (1, 2, 150)
    assert (len(gun.splits["train"]) + len(gun.splits["val"]), len(gun.splits["test"])) == (50, 150)
    vowels = load_dataset("ucr:JapaneseVowels", seed=0)
    lengths = torch.cat([s.lengths for s in vowels.splits.values()])
    assert (vowels.num_features, vowels.num_classes) == (12, 9)
    assert (int(lengths.min()), int(lengths.max())) == (7, 29) and vowels.fixed_length is None
    # the schedule's rule reads the training split alone; export reads every split
    assert vowels.train_max_length == int(vowels.splits["train"].lengths.max()) < vowels.max_length == 29
    with pytest.raises(UserError, match="ucr:NoSuchSet: not bundled with sktime; bundled sets: .*GunPoint"):
        load_dataset("ucr:NoSuchSet")


def test_default_dilations_double_up_to_half_the_longest_sequence():
    assert default_dilations(784) == (1, 2, 4, 8, 16, 32, 64, 128, 256)  # the paper's schedule for MNIST
    assert default_dilations(150) == (1, 2, 4, 8, 16, 32, 64)
    assert default_dilations(29) == (1, 2, 4, 8)
    assert default_dilations(3) == (1,)


def _good(rng):
    x_train, y_train = _fixed(rng, 8, T=6, F=1)
    x_test, y_test = _fixed(rng, 4, T=6, F=1)
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def _bad_cases(tmp_path):
    rng = np.random.default_rng(2)
    good = _good(rng)
    nan = good["x_train"].copy()
    nan[3, 2, 0] = np.nan
    yield "missing", {k: v for k, v in good.items() if k != "y_test"}, "missing y_test"
    yield "pickled", {**good, "y_train": np.array([{"a": 1}] * 8, dtype=object)}, "cannot be read without unpickling"
    yield "nan", {**good, "x_train": nan}, "train sequence 3 contains NaN or infinite values"
    yield "lengths", {**good, "x_train": good["x_train"].reshape(-1, 1), "lengths_train": np.array([6] * 7 + [5])}, \
        "lengths_train sum to 47 .* but x_train has 48 rows"
    yield "count", {**good, "y_train": good["y_train"][:7]}, "8 sequences in x_train but 7 labels in y_train"
    yield "unseen", {**good, "y_test": np.array(["a", "b", "c", "a"])}, "test label.* c never occur in training"
    yield "short", {**good, "x_train": good["x_train"].reshape(-1, 1), "lengths_train": np.array([1] * 4 + [11] * 4)}, \
        "a train sequence has 1 steps, fewer than the 4 the readout reads"


@pytest.mark.parametrize("case", ["missing", "pickled", "nan", "lengths", "count", "unseen", "short"])
def test_bad_data_is_a_one_line_error_and_writes_nothing(case, tmp_path, capsys):
    name, arrays, message = next(c for c in _bad_cases(tmp_path) if c[0] == case)
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    rc = main(["train", "--data", str(path), "--dilations", "4,8", "--steps", "1", "--run-dir", str(tmp_path / "run"),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"{name}.npz" in err or "npz" in err
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "run").exists()


def test_ragged_ts_file_is_a_one_line_error(tmp_path, capsys):
    header = "@problemName toy\n@timeStamps false\n@missing false\n@univariate false\n@dimensions 2\n" \
             "@equalLength false\n@classLabel true a b\n@data\n"
    for split in ("TRAIN", "TEST"):
        (tmp_path / f"toy_{split}.ts").write_text(header + "1,2,3:4,5:a\n1,2:3,4:b\n1,2,3:3,4,5:a\n2,2:3,3:b\n")
    rc = main(["train", "--data", str(tmp_path / "toy_TRAIN.ts"), "--steps", "1", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "toy_TRAIN.ts: case 1 has channels of different lengths (3, 2)" in err
    assert not (tmp_path / "run").exists()


def test_a_class_of_one_training_sequence_trains_unvalidated(tmp_path):
    """The archive's FiftyWords has classes of one training sequence: they stay in training, out of validation."""
    good = _good(np.random.default_rng(2))
    np.savez(tmp_path / "d.npz", **{**good, "y_train": np.array(["a"] * 7 + ["b"]), "y_test": np.array(["a"] * 4)})
    data = load_dataset(str(tmp_path / "d.npz"), val_fraction=0.2)
    b = data.classes.index("b")
    assert (data["train"].labels == b).sum() == 1 and (data["val"].labels == b).sum() == 0 and len(data["val"]) >= 1
