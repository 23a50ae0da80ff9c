"""The benchmark functions return well-formed figures (their values are not asserted: speed is measured, not tested)."""

import json

import pytest
import torch

from dilated_rnn import engine
from dilated_rnn.cli import main
from dilated_rnn.model import DilatedRNNClassifier, ModelConfig
from dilated_rnn.tools.bench import (
    PROFILE_PARTS,
    bench_inference,
    bench_profile,
    bench_stream,
    bench_train_step,
)
from dilated_rnn.trained import TrainedModel

SMALL = ModelConfig(hidden_sizes=(4, 4), dilations=(1, 2), cell="gru")


def test_train_step_times_every_variant():
    r = bench_train_step("gru", batch_size=4, steps=2, warmup=1, config=SMALL, seq_len=16)
    variants = ("fused", "pruned", "full", "full_fused") if engine.fused() else ("pruned", "full")
    variants += ("fused_numba",) if engine.backend() == "native" else ()
    assert r["fast_path"] == variants[0]
    for v in variants:
        assert len(r[f"{v}_times_s"]) == 2 and r[f"{v}_s"] > 0
        assert r[f"{v}_peak_bytes"] > 0
    assert r["ratio"] == pytest.approx(r[f"{variants[0]}_s"] / r["full_s"])


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_profile_splits_a_fused_step_into_its_parts(backend, monkeypatch):
    monkeypatch.setenv("DRNN_ENGINE", backend)  # torch: PyTorch's modules, no recurrence kernel to time
    config = ModelConfig(hidden_sizes=(4, 6), dilations=(1, 2), cell="lstm")
    r = bench_profile("lstm", batch_size=9, steps=2, warmup=1, config=config, seq_len=17)
    parts = r["parts_ms"]
    assert tuple(parts) == PROFILE_PARTS and min(parts.values()) >= 0
    assert sum(parts.values()) == pytest.approx(r["profiled_step_ms"], rel=1e-6)  # the wall time, split
    assert parts["matrix products"] > 0 and parts["optimizer"] > 0 and r["step_ms"] > 0
    assert r["recurrence_forward_bytes"] > 0 and r["copy_gb_per_s"] > 0
    if engine.fused():
        assert parts["recurrence forward"] > 0 and parts["recurrence backward"] > 0 and r["recurrence_gb_per_s"] > 0
    else:
        assert parts["recurrence forward"] == parts["recurrence backward"] == 0 and r["recurrence_gb_per_s"] is None


@pytest.mark.parametrize("backend", ["pytorch", "pytorch-numba", "onnxruntime", "openvino"])
def test_inference_bench_every_backend(backend):
    model = DilatedRNNClassifier.from_config(ModelConfig(hidden_sizes=(4, 4), dilations=(1, 2), cell="lstm"))
    before = torch.get_num_threads()
    r = bench_inference(TrainedModel(model), backend, latency_images=5, batch_images=6, batch_size=4, threads=before + 1)
    assert r["backend"] == backend and r["latency_ms_p50"] <= r["latency_ms_p99"]
    assert r["batched_s"] > 0 and r["images_per_s"] == pytest.approx(6 / r["batched_s"])
    assert r["batch_threads"] == before + 1 and torch.get_num_threads() == before  # the caller's setting is restored


def test_stream_bench_times_both_backends_and_the_prefix_recompute():
    model = DilatedRNNClassifier.from_config(ModelConfig(hidden_sizes=(4, 4), dilations=(1, 2), cell="gru"))
    before = torch.get_num_threads()
    r = bench_stream(TrainedModel(model), samples=60, prefixes=2)
    for name in ("pytorch", "onnxruntime"):
        assert 0 < r[f"{name}_us_p50"] <= r[f"{name}_us_p99"]
    assert r["prefix_us_mean"] > 0 and r["samples"] == 60 and torch.get_num_threads() == before


def test_cli_bench_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--what", "infer", "--cells", "rnn", "--backends", "pytorch", "--latency-images", "3",
                 "--batch-images", "4", "--infer-batch-size", "2", "--threads", "1", "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["infer"][0]["cell"] == "rnn" and data["environment"]["threads"] == 1
    assert "p50 ms" in capsys.readouterr().out


@pytest.mark.parametrize("flags,message", [
    (["--what", "train,speed"], "--what"), (["--cells", "lstm,tcn"], "--cells"), (["--steps", "0"], "--steps"),
    (["--backends", "tensorrt"], "--backends"), (["--device", "tpu"], "--device"),
])
def test_cli_bench_rejects_bad_flags(flags, message, capsys):
    assert main(["bench", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_bench_profile(tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert main(["bench", "--what", "profile", "--cells", "rnn", "--steps", "1", "--warmup", "1", "--batch-size", "8",
                 "--threads", "1", "-o", str(out)]) == 0
    r = json.loads(out.read_text())["profile"][0]
    assert r["cell"] == "rnn" and r["batch_size"] == 8 and set(r["parts_ms"]) == set(PROFILE_PARTS)
    assert "recurrence MB" in capsys.readouterr().out


def test_cli_bench_lengths_on_real_variable_length_data(tmp_path, capsys):
    out = tmp_path / "lengths.json"
    assert main(["bench", "--what", "lengths", "--cells", "gru", "--data", "ucr:JapaneseVowels",
                 "--length-batches", "2", "--threads", "1", "-o", str(out)]) == 0
    r = json.loads(out.read_text())["lengths"][0]
    assert r["data"] == "ucr:JapaneseVowels" and r["batches"] == 2 and len(r["exact_times_s"]) == 2
    # real steps of each length's plan, fewer than the padded batch's plan, far fewer than every step
    assert r["exact_cell_steps_per_batch"] < r["padded_cell_steps_per_batch"] < r["full_cell_steps_per_batch"]
    assert "exact/padded" in capsys.readouterr().out
