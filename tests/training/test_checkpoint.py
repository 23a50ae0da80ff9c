import os
import pickle

import pytest
import torch

from dilated_rnn.data.mnist import pixel_permutation
from dilated_rnn.errors import UserError
from dilated_rnn.model import DilatedRNNClassifier, ModelConfig
from dilated_rnn.training.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    model_from_checkpoint,
    permutation_from_checkpoint,
    save_checkpoint,
)

CONFIG = ModelConfig(hidden_sizes=(4, 4), dilations=(1, 2), cell="gru")


def _payload(model, permutation=None):
    return {"model_config": model.config.to_dict(), "model": model.state_dict(), "permutation": permutation}


def test_round_trip_rebuilds_an_identical_model(tmp_path):
    model = DilatedRNNClassifier.from_config(CONFIG)
    perm = pixel_permutation()
    save_checkpoint(tmp_path / "c.pt", _payload(model, perm))
    ckpt = load_checkpoint(tmp_path / "c.pt")
    assert ckpt["format_version"] == FORMAT_VERSION
    clone = model_from_checkpoint(ckpt)
    x = torch.rand(2, 30, 1)
    torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)
    assert torch.equal(permutation_from_checkpoint(ckpt), perm)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickled_code_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": "dilated-rnn-checkpoint", "evil": _Boom()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="evil.pt: not a readable"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "raw.pt").write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(UserError, match="raw.pt"):
        load_checkpoint(tmp_path / "raw.pt")
    assert not (tmp_path / "pwned").exists()


def test_other_format_version_and_foreign_files(tmp_path):
    model = DilatedRNNClassifier.from_config(CONFIG)
    torch.save({**_payload(model), "format": "dilated-rnn-checkpoint", "format_version": 99}, tmp_path / "v.pt")
    with pytest.raises(UserError, match="format version 99"):
        load_checkpoint(tmp_path / "v.pt")
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(UserError, match="not a dilated-rnn checkpoint"):
        load_checkpoint(tmp_path / "sd.pt")
    with pytest.raises(UserError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_truncated_checkpoint_is_refused(tmp_path):
    save_checkpoint(tmp_path / "c.pt", _payload(DilatedRNNClassifier.from_config(CONFIG)))
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="c.pt: not a readable"):
        load_checkpoint(tmp_path / "c.pt")


def test_weights_that_do_not_fit_the_config(tmp_path):
    model = DilatedRNNClassifier.from_config(CONFIG)
    payload = _payload(model)
    payload["model_config"] = {**payload["model_config"], "hidden_sizes": [5, 4]}
    save_checkpoint(tmp_path / "c.pt", payload)
    with pytest.raises(UserError, match="weights do not match"):
        model_from_checkpoint(load_checkpoint(tmp_path / "c.pt"))


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):
        save_checkpoint(tmp_path / "c.pt", {"model_config": {}, "model": {}, "permutation": None, "bad": lambda: 0})
    assert list(tmp_path.iterdir()) == []


def test_version_1_checkpoints_are_migrated_on_load(tmp_path):
    """Before format 2, dropout, init and forget_bias lived in the training config."""
    model = DilatedRNNClassifier.from_config(ModelConfig(hidden_sizes=(4, 4), dilations=(1, 2), cell="lstm"))
    old_model_config = {k: v for k, v in model.config.to_dict().items() if k not in ("dropout", "init", "forget_bias")}
    old = {**_payload(model), "model_config": old_model_config, "format": "dilated-rnn-checkpoint", "format_version": 1,
           "train_config": {"steps": 10, "dropout": 0.25, "init": "orthogonal", "forget_bias": 2.0, "ema": 0.9}}
    torch.save(old, tmp_path / "v1.pt")
    ckpt = load_checkpoint(tmp_path / "v1.pt")
    assert ckpt["format_version"] == FORMAT_VERSION == 4 and ckpt["normalization"] is None
    assert ckpt["train_config"] == {"steps": 10, "ema": 0.9}
    clone = model_from_checkpoint(ckpt)
    assert (clone.config.dropout, clone.config.init, clone.config.forget_bias) == (0.25, "orthogonal", 2.0)
    assert clone.rnn.dropout == 0.25
    for key, value in model.state_dict().items():
        assert torch.equal(clone.state_dict()[key], value)
