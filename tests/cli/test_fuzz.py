"""Malformed and mismatched inputs, hundreds of them, to train, evaluate and predict: never a traceback; a failure
is one line on stderr with exit 2 (1 for the machine's limits) and leaves no run directory or output behind."""

import zipfile

import numpy as np
import pytest

from dilated_rnn.cli import main

FAST = ["--hidden-sizes", "3", "--dilations", "1,2", "--batch-size", "2", "--steps", "2", "--eval-every", "2",
        "--threads", "1", "--no-progress"]


def _base(rng, n_train=8, n_test=4, T=6, F=2):
    return {"x_train": rng.normal(size=(n_train, T, F)).astype(np.float32), "y_train": np.arange(n_train) % 2,
            "x_test": rng.normal(size=(n_test, T, F)).astype(np.float32), "y_test": np.arange(n_test) % 2}


def _variable(rng, key, n, F=2):
    lengths = rng.integers(2, 9, n)
    return {f"x_{key}": rng.normal(size=(int(lengths.sum()), F)).astype(np.float32), f"lengths_{key}": lengths,
            f"y_{key}": np.arange(n) % 2}


def _array_cases(rng):
    """(name, arrays) with one thing wrong, or a mismatch with the model (2 channels, classes 0 and 1)."""
    b = lambda **kw: {**_base(rng), **kw}  # noqa: E731
    v = lambda **kw: {**_variable(rng, "train", 8), **_variable(rng, "test", 4), **kw}  # noqa: E731
    cases = [(f"missing {k}", {key: a for key, a in _base(rng).items() if key != k}) for k in _base(rng)]
    for split in ("train", "test"):
        x = f"x_{split}"
        cases += [
            (f"{x} 1-D", b(**{x: np.zeros(8, np.float32)})), (f"{x} 4-D", b(**{x: np.zeros((8, 6, 2, 2))})),
            (f"{x} no rows", b(**{x: np.zeros((0, 6, 2))})), (f"{x} no steps", b(**{x: np.zeros((8, 0, 2))})),
            (f"{x} no channels", b(**{x: np.zeros((8, 6, 0))})), (f"{x} strings", b(**{x: np.full((8, 6, 2), "a")})),
            (f"{x} complex", b(**{x: np.ones((8, 6, 2), np.complex64)})), (f"{x} bool", b(**{x: np.ones((8, 6, 2), bool)})),
            (f"{x} float16", b(**{x: np.ones((8, 6, 2), np.float16)})), (f"{x} int8", b(**{x: np.ones((8, 6, 2), np.int8)})),
            (f"{x} NaN", b(**{x: np.full((8, 6, 2), np.nan)})), (f"{x} inf", b(**{x: np.full((8, 6, 2), np.inf)})),
            (f"{x} huge", b(**{x: np.full((8, 6, 2), 3e38, np.float32)})), (f"{x} 3 channels", b(**{x: np.ones((8, 6, 3))})),
            (f"{x} 1 channel", b(**{x: np.ones((8, 6))})), (f"{x} nct-like", b(**{x: np.ones((8, 1, 40))})),
            (f"{x} one step", b(**{x: np.ones((8, 1, 2))})), (f"{x} long", b(**{x: np.ones((8, 300, 2))})),
            (f"y_{split} 2-D", b(**{f"y_{split}": np.zeros((8, 2))})),
            (f"y_{split} fractions", b(**{f"y_{split}": np.arange(8) * 0.25})),
            (f"y_{split} NaN", b(**{f"y_{split}": np.full(8, np.nan)})),
            (f"y_{split} too few", b(**{f"y_{split}": np.zeros(3)})),
            (f"y_{split} strings", b(**{f"y_{split}": np.array(["a", "b"] * 4)})),
            (f"y_{split} bools", b(**{f"y_{split}": np.arange(8) % 2 == 0})),
            (f"y_{split} empty strings", b(**{f"y_{split}": np.array(["", " "] * 4)})),
            (f"lengths_{split} zeros", v(**{f"lengths_{split}": np.zeros(8, np.int64)})),
            (f"lengths_{split} negative", v(**{f"lengths_{split}": -np.ones(8, np.int64)})),
            (f"lengths_{split} floats", v(**{f"lengths_{split}": np.full(8, 2.5)})),
            (f"lengths_{split} 2-D", v(**{f"lengths_{split}": np.ones((4, 2), np.int64)})),
            (f"lengths_{split} short sum", v(**{f"lengths_{split}": np.ones(8, np.int64)})),
            (f"lengths_{split} empty", v(**{f"lengths_{split}": np.zeros(0, np.int64)})),
            (f"lengths_{split} for a fixed array", b(**{f"lengths_{split}": np.full(8, 6)})),
            (f"lengths_{split} of one step", v(**{f"lengths_{split}": np.ones(8, np.int64),
                                                   f"x_{split}": np.ones((8, 2), np.float32)})),
        ]
    cases += [
        ("single class", b(y_train=np.zeros(8, np.int64), y_test=np.zeros(4, np.int64))),
        ("unseen test label", b(y_test=np.array([0, 1, 2, 1]))),
        ("three classes", b(y_train=np.arange(8) % 3, y_test=np.arange(4) % 3)),
        ("x_val alone", b(x_val=np.ones((4, 6, 2)))),
        ("y_val of other count", b(x_val=np.ones((4, 6, 2)), y_val=np.zeros(2))),
        ("class of one sequence", b(y_train=np.array([0] * 7 + [1]))),
        ("variable lengths", v()),
        ("mixed layouts", {**_variable(rng, "train", 8), **{k: a for k, a in _base(rng).items() if "test" in k}}),
        ("object array", "object"),
    ]
    return cases


def _file_cases(tmp_path):
    """Files of other formats, named as data."""
    zipped = tmp_path / "trunc.npz"
    np.savez(zipped, **_base(np.random.default_rng(1)))
    cases = {"text.npz": b"1,2,3\n", "empty.npz": b"", "random.npz": bytes(range(256)) * 3,
             "truncated.npz": zipped.read_bytes()[:300], "png.npz": b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
             "garbage_TRAIN.ts": b"@problemName x\n@data\n1,2:a\n", "garbage_TRAIN.tsv": b"a\tb\n1\t2\n",
             "empty_TRAIN.tsv": b"", "labels_only_TRAIN.tsv": b"1\n2\n", "data.csv": b"1,2\n"}
    paths = []
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        paths.append(tmp_path / name)
    np.save(tmp_path / "array.npy", np.ones(3))
    (tmp_path / "array.npy").rename(tmp_path / "npy.npz")
    (tmp_path / "dir.npz").mkdir()
    with zipfile.ZipFile(tmp_path / "notnpy.npz", "w") as z:
        z.writestr("x_train.npy", b"not an array")
    return paths + [tmp_path / "npy.npz", tmp_path / "dir.npz", tmp_path / "notnpy.npz", tmp_path / "missing.npz"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-model")
    np.savez(root / "base.npz", **_base(np.random.default_rng(0)))
    assert main(["train", "--data", str(root / "base.npz"), "--run-dir", str(root / "run"), *FAST]) == 0
    return root / "run"


def _check(argv, capsys, leftover):
    capsys.readouterr()
    code = main(argv)  # an exception that escapes main is a traceback: the test fails
    err = capsys.readouterr().err.strip()
    assert code in (0, 1, 2), (argv, code)
    if code:
        assert err and err.count("\n") == 0 and "Traceback" not in err, (argv, err)
        assert code == 1 or not leftover.exists(), (argv, "left behind")  # 1: a diverged run keeps its last.pt
    return code


def test_no_input_ends_in_a_traceback(tmp_path, model, capsys):
    rng = np.random.default_rng(7)
    files = []
    for i, (name, arrays) in enumerate(_array_cases(rng)):
        path = tmp_path / f"case{i}.npz"
        if arrays == "object":
            np.savez(path, x_train=np.array([np.ones(3), np.ones(4)], dtype=object), y_train=np.zeros(2))
        else:
            np.savez(path, **arrays)
        files.append(path)
    files += _file_cases(tmp_path)
    outcomes = {}
    for i, path in enumerate(files):
        run, out = tmp_path / f"run{i}", tmp_path / f"out{i}.csv"
        outcomes[path.name, "train"] = _check(["train", "--data", str(path), "--run-dir", str(run), *FAST], capsys, run)
        outcomes[path.name, "evaluate"] = _check(["evaluate", str(model / "best.pt"), "--data", str(path), "-o",
                                                  str(tmp_path / f"e{i}.json")], capsys, tmp_path / f"e{i}.json")
        outcomes[path.name, "predict"] = _check(["predict", str(model), str(path), "-o", str(out)], capsys, out)
    assert len(outcomes) >= 200
    refused = sum(1 for code in outcomes.values() if code)
    assert refused >= 150 and sum(1 for code in outcomes.values() if code == 0) >= 10  # most malformed; some fine
