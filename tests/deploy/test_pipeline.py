"""The deployment pipeline as a library call: rows per format and precision, what it skips and why, the table."""

import json

import pytest

from dilated_rnn.deploy import pipeline
from dilated_rnn.deploy.pipeline import format_table, run_pipeline


def test_pipeline_on_a_shipped_gru(tmp_path, mnist):
    test = mnist["test"].subset(40)
    result = run_pipeline("pretrained:gru-mnist", test, tmp_path, ["fp32", "fp16", "int8"], batch_size=16,
                          batch_threads=1)
    assert [(r["format"], r["precision"]) for r in result["rows"]] == [
        ("onnx", "fp32"), ("onnx", "fp16"), ("openvino", "fp32"), ("openvino", "fp16")]
    assert result["skipped"] == {"int8": "ONNX Runtime quantises no GRU op"}  # OpenVINO IR has no int8 form here
    assert json.loads((tmp_path / "pipeline.json").read_text()) == result
    files = ["model-fp32.onnx", "model-fp16.onnx", "model-openvino-fp32.xml", "model-openvino-fp16.xml"]
    for row, name in zip(result["rows"], files):
        assert row["images"] == 40 and row["accuracy"] == row["batch1_accuracy"] > 0.9
        assert row["parity"]["passed"] and (tmp_path / name).is_file()
    fp32, fp16, ov32, ov16 = result["rows"]
    assert fp16["file_bytes"] < fp32["file_bytes"] and ov16["file_bytes"] < ov32["file_bytes"]
    assert ov32["accuracy"] == fp32["accuracy"]
    assert (tmp_path / "model-openvino-fp32.bin").is_file() and (tmp_path / "out-openvino-fp32-b1").is_dir()
    table = format_table(result)
    assert "pretrained:gru-mnist (gru, unpermuted MNIST)" in table
    assert "onnx     int8      skipped: ONNX Runtime quantises no GRU op" in table
    assert f"onnx     fp32      {100 * fp32['accuracy']:8.2f}%" in table
    assert f"openvino fp16      {100 * ov16['accuracy']:8.2f}%" in table


def test_pipeline_formats_can_be_chosen_and_a_loaded_model_is_not_loaded_again(tmp_path, mnist, monkeypatch):
    loaded = pipeline.load_model("pretrained:rnn-mnist")
    monkeypatch.setattr(pipeline, "load_model", lambda source: pytest.fail(f"{source} loaded again"))
    result = run_pipeline("pretrained:rnn-mnist", mnist["test"].subset(8), tmp_path, ["fp32"], batch_size=8,
                          batch_threads=1, formats=["openvino"], loaded=loaded)
    assert [(r["format"], r["precision"]) for r in result["rows"]] == [("openvino", "fp32")]
    assert not list(tmp_path.glob("*.onnx"))
