"""The deployment pipeline as a library call: rows per precision, what it skips and why, the table."""

import json

from dilated_rnn.pipeline import format_table, run_pipeline
from dilated_rnn.pretrained import load_pretrained


def test_pipeline_on_a_shipped_gru(tmp_path, mnist):
    test = mnist["test"].subset(40)
    result = run_pipeline("pretrained:gru-mnist", test, tmp_path, ["fp32", "fp16", "int8"], batch_size=16,
                          batch_threads=1)
    assert [r["precision"] for r in result["rows"]] == ["fp32", "fp16"]
    assert result["skipped"] == {"int8": "ONNX Runtime quantises no GRU op"}
    assert json.loads((tmp_path / "pipeline.json").read_text()) == result
    _, _, card = load_pretrained("gru-mnist")
    for row in result["rows"]:
        assert row["images"] == 40 and row["accuracy"] == row["batch1_accuracy"] > 0.9
        assert row["parity"]["passed"] and (tmp_path / f"model-{row['precision']}.onnx").is_file()
    fp32, fp16 = result["rows"]
    assert fp16["file_bytes"] < fp32["file_bytes"]
    table = format_table(result)
    assert "pretrained:gru-mnist (gru, unpermuted MNIST)" in table
    assert "int8      skipped: ONNX Runtime quantises no GRU op" in table
    assert f"{100 * fp32['accuracy']:8.2f}%" in table
