import json

import pytest

from dilated_rnn.cli import main

SMALL = ["--hidden-sizes", "8", "--dilations", "1,4,16", "--train-limit", "256", "--val-limit", "100",
         "--test-limit", "100", "--eval-every", "4", "--no-progress", "--threads", "1"]


def test_train_then_evaluate_end_to_end(tmp_path, mnist_dir, capsys):
    run = tmp_path / "run"
    rc = main(["train", "--run-dir", str(run), "--steps", "8", "--batch-size", "32", "--data-dir", str(mnist_dir), *SMALL])
    assert rc == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "confusion" in out
    summary = json.loads((run / "test.json").read_text())
    assert summary["test"]["num_examples"] == 100
    rc = main(["evaluate", str(run / "best.pt"), "--split", "val", "--limit", "300", "--data-dir", str(mnist_dir)])
    assert rc == 0
    report = json.loads((run / "eval-val.json").read_text())
    assert report["split"] == "val" and report["num_examples"] == 300
    assert sum(map(sum, report["confusion_matrix"])) == 300


def test_reference_flags_are_accepted(tmp_path, mnist_dir):
    run = tmp_path / "gru"
    rc = main(["train", "-type", "GRU", "-epoch", "4", "-batch_size", "16", "-lr", "0.002",
               "--run-dir", str(run), "--data-dir", str(mnist_dir), *SMALL])
    assert rc == 0
    stored = json.loads((run / "config.json").read_text())
    assert stored["model"]["cell"] == "gru"
    assert (stored["train"]["steps"], stored["train"]["batch_size"], stored["train"]["lr"]) == (4, 16, 0.002)


def test_resume_flag_finishes_a_stopped_run(tmp_path, mnist_dir, small_mnist, capsys):
    from dilated_rnn.model import ModelConfig
    from dilated_rnn.training.checkpoint import load_checkpoint
    from dilated_rnn.training.train import TrainConfig, train

    run = tmp_path / "run"
    cfg = TrainConfig(steps=8, batch_size=16, eval_every=4, log_every=4, val_limit=100, test_limit=100)
    train(run, small_mnist, ModelConfig(hidden_sizes=(8,), dilations=(1,), cell="gru"), cfg, device="cpu",
          progress=False, stop_after=4)
    assert load_checkpoint(run / "last.pt")["step"] == 4 and not (run / "test.json").exists()
    assert main(["train", "--resume", str(run), "--data-dir", str(mnist_dir), "--no-progress"]) == 0
    assert load_checkpoint(run / "last.pt")["step"] == 8
    summary = json.loads((run / "test.json").read_text())
    assert summary["step"] == 8 and summary["test"]["num_examples"] == 100
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [4, 8]
    assert f"{100 * summary['test']['accuracy']:.2f}%" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--dilations", "1,2", "--hidden-sizes", "8,8,8"], "one dilation per layer"),
        (["train", "--dilations", "1,0"], "--dilations must be positive"),
        (["train", "--steps", "0"], "--steps must be positive, got 0"),
        (["train", "--dropout", "1"], "--dropout must be in [0, 1), got 1.0"),
        (["train", "--ema", "-0.5"], "--ema must be in [0, 1), got -0.5"),
        (["train", "--label-smoothing", "1"], "--label-smoothing must be in [0, 1), got 1.0"),
        (["train", "--sam", "-0.05"], "--sam must be a non-negative radius, got -0.05"),
        (["train", "--sam-start", "-1"], "--sam-start must be non-negative, got -1"),
        (["train", "--cell", "gru", "--forget-bias", "2", "--steps", "1"],
         "--forget-bias applies to LSTM cells only, not gru"),
        (["evaluate", "nope.pt"], "nope.pt: no such checkpoint"),
        (["train", "--resume", "no-such-run"], "no-such-run/last.pt: no such checkpoint"),
    ],
)
def test_bad_input_gives_one_line_error(args, message, capsys, mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(args + ["--data-dir", str(mnist_dir)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("args,message", [(["train", "-type", "transformer"], "invalid choice: 'transformer'"),
                                          (["train", "--dilations", "1,x"], "--dilations: expected comma-separated"),
                                          (["infer"], "the following arguments are required")])
def test_argument_errors_are_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_mrl_command(tmp_path, capsys):
    assert main(["mrl", "--plot", str(tmp_path / "mrl.png"), "--max-cycle", "64"]) == 0
    out = capsys.readouterr().out
    assert "4.0039" in out and "128.5000" in out
    assert (tmp_path / "mrl.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["mrl", "--dilations", "1,0"]) == 2
    assert "--dilations must be positive" in capsys.readouterr().err


def test_every_help_line_states_its_real_default_once(mnist_dir):
    from dilated_rnn.cli.commands import _configs
    from dilated_rnn.cli.parser import _Help, build_parser
    from dilated_rnn.config import ModelConfig, TrainConfig
    from dilated_rnn.data.datasets import default_dilations

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        for action in sub._actions:
            text = _Help(name)._get_help_string(action) % {"default": action.default}
            assert text.count("(default") <= 1 and "(default: None)" not in text, (name, action.dest, text)
    help_of = {a.dest: a.help for a in commands["train"]._actions}
    assert f"(default: {TrainConfig.lr})" in help_of["lr"] and "(default: lstm)" in help_of["cell"]
    train = commands["train"].parse_args(["--data-dir", str(mnist_dir)])
    assert train.steps is None and train.batch_size is None  # not given: the data's recipe or the config's default
    _, model, cfg = _configs(train)  # MNIST: the config's defaults, the reference's
    assert (cfg.steps, cfg.batch_size, cfg.seed, cfg.recipe) == (TrainConfig.steps, TrainConfig.batch_size,
                                                                 TrainConfig.seed, "reference")
    assert train.dilations is None and model.hidden_sizes == ModelConfig.hidden_sizes
    # --resume moves a run's end when --steps is given, even at the default's value
    assert not train.steps_given
    given = commands["train"].parse_args(["--resume", "run", "--steps", str(TrainConfig.steps)])
    assert given.steps_given and given.steps == TrainConfig.steps
    assert default_dilations(784) == ModelConfig.dilations  # what "auto" gives MNIST: the paper's 1..256
