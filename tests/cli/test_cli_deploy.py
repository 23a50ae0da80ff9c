"""The deployment commands end to end on a small real folder: export -> make-bins -> infer -> accuracy, pipeline."""

import json

import pytest

from dilated_rnn.cli import main
from dilated_rnn.deploy.accuracy import accuracy_report


@pytest.fixture
def ckpt(shipped_checkpoint):
    return str(shipped_checkpoint("lstm-mnist"))


def test_export_bins_infer_accuracy(tmp_path, mnist_dir, capsys, ckpt):
    d = str(mnist_dir)
    assert main(["export", ckpt, "-o", str(tmp_path / "m.onnx"), "--precision", "fp16", "--check-images", "64",
                 "--data-dir", d]) == 0
    assert "argmax agreement" in capsys.readouterr().out
    assert main(["make-bins", "-o", str(tmp_path / "bins"), "--limit", "50", "--data-dir", d]) == 0
    assert main(["infer", str(tmp_path / "m.onnx"), str(tmp_path / "bins"), "-o", str(tmp_path / "out"),
                 "--batch-size", "1", "--output-dtype", "fp16", "--no-progress"]) == 0
    stats = json.loads((tmp_path / "out" / "infer.json").read_text())
    assert stats["precision"] == "fp16" and stats["images"] == 50 and stats["batch_size"] == 1
    capsys.readouterr()
    assert main(["accuracy", str(tmp_path / "out"), str(tmp_path / "bins" / "labels.npy")]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "accuracy.json").read_text())
    assert report["num_images"] == 50 and report["output_dtype"] == "float16" and report["accuracy"] > 0.85
    assert f"{100 * report['accuracy']:.2f}%" in out


def test_pipeline_table(tmp_path, mnist_dir, capsys, ckpt):
    rc = main(["pipeline", ckpt, "-o", str(tmp_path / "deploy"), "--limit", "60", "--precisions", "fp32,int8",
               "--batch-size", "32", "--no-progress", "--data-dir", str(mnist_dir)])
    assert rc == 0
    result = json.loads((tmp_path / "deploy" / "pipeline.json").read_text())
    assert [(r["format"], r["precision"]) for r in result["rows"]] == [
        ("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32")]  # IR: fp32 and fp16 only
    assert all(r["images"] == 60 and r["batch1_latency_ms_p50"] > 0 for r in result["rows"])
    fp32, int8, ov32 = result["rows"]
    assert ov32["accuracy"] == ov32["batch1_accuracy"] == fp32["accuracy"]
    assert fp32["batch1_accuracy"] == fp32["accuracy"] > 0.85  # float32 logits do not depend on the batch
    deploy = tmp_path / "deploy"
    assert int8["batch1_accuracy"] == accuracy_report(deploy / "out-int8-b1", deploy / "bins" / "labels.npy")["accuracy"]
    table = capsys.readouterr().out
    assert "fp32" in table and "int8" in table and "images/s" in table and "b1 acc" in table and "openvino" in table


def test_openvino_export_and_infer(tmp_path, mnist_dir, capsys, ckpt):
    d = str(mnist_dir)
    xml = tmp_path / "m.xml"
    assert main(["export", ckpt, "--format", "openvino", "--precision", "fp16", "-o", str(xml),
                 "--check-images", "64", "--data-dir", d]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "m.bin" in out and "argmax agreement 100.00%" in out
    assert (tmp_path / "m.xml.sha256").read_text().split()[1::2] == ["m.xml", "m.bin"]
    assert main(["make-bins", "-o", str(tmp_path / "bins"), "--limit", "40", "--data-dir", d]) == 0
    for model, out_dir in ((str(xml), "out-ov"), (ckpt, "out-pt")):
        assert main(["infer", model, str(tmp_path / "bins"), "-o", str(tmp_path / out_dir), "--batch-size", "16",
                     "--no-progress"]) == 0
    stats = json.loads((tmp_path / "out-ov" / "infer.json").read_text())
    assert stats["backend"] == "openvino" and stats["precision"] == "fp16" and stats["images"] == 40
    labels = tmp_path / "bins" / "labels.npy"
    assert accuracy_report(tmp_path / "out-ov", labels)["accuracy"] == accuracy_report(tmp_path / "out-pt", labels)[
        "accuracy"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["infer", "nope.onnx", "bins", "-o", "out"], "no such input folder"),
        (["accuracy", "out", "labels.npy"], "labels.npy: not a readable"),
        (["export", "missing.pt", "-o", "m.onnx"], "missing.pt: no such checkpoint"),
        (["make-bins", "-o", "b", "--limit", "0"], "--limit must be positive"),
        (["export", "pretrained:gru-mnist", "--format", "openvino", "-o", "m.onnx"], "--format openvino writes NAME.xml"),
        (["export", "pretrained:gru-mnist", "--format", "openvino", "--precision", "int8", "-o", "m.xml"],
         "--precision must be one of fp32, fp16, got 'int8'"),
        (["export", "pretrained:gru-mnist", "--format", "openvino", "--streaming", "-o", "m.xml"],
         "--streaming exports ONNX only"),
        (["stream", "m.xml", "seqs", "-o", "s.npz"], "m.xml: an OpenVINO IR; this command runs"),
        (["evaluate", "m.xml"], "m.xml: an exported graph, not a checkpoint"),
    ],
)
def test_deploy_bad_input_one_line(args, message, tmp_path, monkeypatch, capsys, mnist_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "seqs").mkdir()
    (tmp_path / "seqs" / "00000.bin").write_bytes(bytes(784 * 4))
    if args[0] in ("export", "make-bins"):
        args = args + ["--data-dir", str(mnist_dir)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_infer_empty_folder(tmp_path, capsys, ckpt):
    (tmp_path / "empty").mkdir()
    assert main(["infer", ckpt, str(tmp_path / "empty"), "-o", str(tmp_path / "out")]) == 2
    assert "no .bin input files" in capsys.readouterr().err
