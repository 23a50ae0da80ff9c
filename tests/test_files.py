"""Atomic writes: a file appears whole or not at all, and a failed write keeps the previous file."""

import json
import os

import pytest

from dilated_rnn.files import (
    append_jsonl,
    atomic_path,
    read_jsonl,
    write_bytes,
    write_json,
    write_jsonl,
)


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"step": 1})
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text('{"step": 2, "trunc')
            raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_writes_create_folders_and_use_the_usual_mode(tmp_path):
    target = tmp_path / "a" / "b" / "x.bin"
    write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_jsonl_round_trip_skips_a_partial_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_jsonl(path, [{"step": 1}, {"step": 2}])
    append_jsonl(path, {"step": 3})
    with open(path, "a") as f:
        f.write('{"step": 4, "train_lo')  # a crash in the middle of a write
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}, {"step": 3}]
