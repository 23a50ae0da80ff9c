import gzip
import hashlib
import shutil

import numpy as np
import pytest
import torch

from dilated_rnn.data.mnist import (
    FILES,
    ensure_mnist,
    load_mnist,
    parse_idx,
    pixel_permutation,
    read_verified,
)
from dilated_rnn.data.splits import batch_indices
from dilated_rnn.data.transform import InputTransform
from dilated_rnn.errors import UserError


def test_cached_files_match_the_published_hashes(mnist_dir):
    for name, digest in FILES.items():
        assert hashlib.sha256((mnist_dir / name).read_bytes()).hexdigest() == digest


def test_splits_are_55k_5k_10k_with_real_labels(mnist):
    assert [len(mnist[s]) for s in ("train", "val", "test")] == [55000, 5000, 10000]
    for split in mnist.splits.values():
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == (784, 1) and split.lengths is None
        assert split.labels.min() == 0 and split.labels.max() == 9
    # the validation set is the tail of the original training file
    assert torch.bincount(mnist["val"].labels, minlength=10).min() > 400
    # known first labels of the original files
    assert mnist["train"].labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist["test"].labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_sequences_are_pixels_in_unit_range(mnist, mnist_dir):
    x = mnist["test"].x[:3]
    assert x.shape == (3, 784, 1) and x.dtype == torch.float32
    assert x.min() == 0.0 and x.max() == 1.0
    name = "t10k-images-idx3-ubyte"
    image = torch.from_numpy(parse_idx(read_verified(mnist_dir / name, name), name)[0].copy())  # [28, 28] uint8
    assert x[0, 28 * 14 + 10, 0] == image[14, 10] / 255.0  # row-major order


def test_permutation_is_fixed_and_applied(mnist):
    perm = pixel_permutation(92916)
    assert torch.equal(perm, pixel_permutation(92916))
    assert sorted(perm.tolist()) == list(range(784))
    assert not torch.equal(perm, pixel_permutation(1))
    images = mnist["test"].x[:2]
    torch.testing.assert_close(InputTransform(perm)(images), images[:, perm])


def test_gz_directory_is_accepted(tmp_path, mnist_dir):
    for name in FILES:
        (tmp_path / (name + ".gz")).write_bytes(gzip.compress((mnist_dir / name).read_bytes(), compresslevel=1))
    splits = load_mnist(tmp_path)
    assert len(splits["test"]) == 10000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n + ".gz" for n in FILES)  # nothing fetched


def _copy_all(src, dst):
    for name in FILES:
        shutil.copy(src / name, dst / name)


def test_truncated_file_names_file_and_expected_hash(tmp_path, mnist_dir):
    _copy_all(mnist_dir, tmp_path)
    name = "t10k-labels-idx1-ubyte"
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[:-10])
    with pytest.raises(UserError, match=f"{name}.*{FILES[name]}"):
        load_mnist(tmp_path)


def test_corrupted_gz_is_reported(tmp_path, mnist_dir):
    _copy_all(mnist_dir, tmp_path)
    name = "train-labels-idx1-ubyte"
    (tmp_path / name).unlink()
    (tmp_path / (name + ".gz")).write_bytes(gzip.compress((mnist_dir / name).read_bytes())[:100])
    with pytest.raises(UserError, match=f"{name}.gz"):
        load_mnist(tmp_path)


def test_missing_file_is_named(tmp_path, mnist_dir):
    _copy_all(mnist_dir, tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(UserError, match="missing t10k-images-idx3-ubyte"):
        ensure_mnist(tmp_path)


def test_parse_idx_checks_header_and_size():
    header = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big")
    np.testing.assert_array_equal(parse_idx(header + b"\x01\x02\x03", "x"), [1, 2, 3])
    with pytest.raises(UserError, match="expected 11"):
        parse_idx(header + b"\x01", "x")
    with pytest.raises(UserError, match="not an unsigned-byte IDX"):
        parse_idx(b"\x00\x00\x0d\x01", "x")


def test_read_verified_rejects_other_data(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"not mnist")
    with pytest.raises(UserError, match="does not match the expected"):
        read_verified(path, path.name)


def test_batches_cover_each_epoch_once_and_reshuffle():
    per_epoch = [batch_indices(100, 10, s, seed=3) for s in range(10)]
    assert sorted(torch.cat(per_epoch).tolist()) == list(range(100))
    assert not torch.equal(batch_indices(100, 10, 10, seed=3), per_epoch[0])
    assert torch.equal(batch_indices(100, 10, 7, seed=3), per_epoch[7])
    assert not torch.equal(batch_indices(100, 10, 0, seed=4), per_epoch[0])
