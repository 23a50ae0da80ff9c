import pytest

from dilated_rnn.cli import main
from dilated_rnn.errors import UserError
from dilated_rnn.model import ModelConfig
from dilated_rnn.tools.report import write_report
from dilated_rnn.training.train import TrainConfig, train

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_of_a_real_run(tmp_path, small_mnist):
    cfg = TrainConfig(steps=6, batch_size=32, eval_every=3, log_every=1, weight_decay=0.05,
                      weight_decay_start=2)
    train(tmp_path / "run", small_mnist, ModelConfig(hidden_sizes=(8, 8, 8), dilations=(1, 3, 9)), cfg,
          device="cpu", progress=False)
    files = write_report(tmp_path / "run")
    assert set(files) == {"training", "confusion", "schedule", "summary"}
    for name in ("training", "confusion", "schedule"):
        data = open(files[name], "rb").read()
        assert data[:8] == PNG and len(data) > 5000
    summary = (tmp_path / "run" / "report.md").read_text()
    assert "](training.png)" in summary and "](confusion.png)" in summary and "dilations [1, 3, 9]" in summary
    assert "weight decay 0.05 from step 2, batch 32" in summary


def test_report_of_a_run_still_training_has_no_confusion(tmp_path, small_mnist):
    cfg = TrainConfig(steps=20, batch_size=32, eval_every=3, log_every=1)
    train(tmp_path / "run", small_mnist, ModelConfig(hidden_sizes=(4,), dilations=(1,)), cfg, device="cpu",
          progress=False, stop_after=4)
    assert "confusion" not in write_report(tmp_path / "run")


def test_not_a_run_directory(tmp_path, capsys):
    with pytest.raises(UserError, match="not a run directory"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
