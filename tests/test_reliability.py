"""Kill -9 at a random moment, resume, and get the weights of an uninterrupted run, bit for bit."""

import os
import random
import signal
import subprocess
import sys
import time

import torch

from dilated_rnn.training.checkpoint import load_checkpoint

ARGS = ["--hidden-sizes", "8", "--dilations", "1,2,4,8", "--steps", "40", "--batch-size", "16", "--eval-every", "3",
        "--log-every", "1", "--train-limit", "512", "--val-limit", "40", "--test-limit", "40", "--no-progress",
        "--threads", "1", "--device", "cpu", "--schedule", "cosine", "--momentum", "0.5", "--permute"]


def _cmd(*extra):
    return [sys.executable, "-m", "dilated_rnn.cli", "train", *extra]


def test_kill_9_then_resume_is_bit_identical(tmp_path, mnist_dir, wait_for_file):
    data = ["--data-dir", str(mnist_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cmd("--run-dir", "whole", *ARGS, *data), cwd=tmp_path, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(_cmd("--run-dir", "killed", *ARGS, *data), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_file(tmp_path / "killed" / "last.pt")
    time.sleep(random.Random().uniform(0.0, 0.5))  # a random moment: mid-step, mid-save or mid-validation
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(tmp_path / "killed" / "last.pt")["step"]
    subprocess.run(_cmd("--resume", "killed", *data, "--no-progress", "--threads", "1"), cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    whole = load_checkpoint(tmp_path / "whole" / "last.pt")
    resumed = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert resumed["step"] == whole["step"] == 40 and killed_at <= 40
    for key, value in whole["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    assert resumed["best"] == whole["best"]
    steps = [line for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert len(steps) == 40  # replayed steps were not logged twice


def test_ctrl_c_saves_and_exits_cleanly(tmp_path, mnist_dir, wait_for_file):
    args = [a if a != "40" else "100000" for a in ARGS]  # far more steps than will run
    proc = subprocess.Popen(_cmd("--run-dir", "run", *args, "--data-dir", str(mnist_dir)), cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_file(tmp_path / "run" / "last.pt")
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "--resume" in err
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    logged = [line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert saved["step"] == len(logged)  # saved at the step where it stopped, not at the last validation


def test_sigterm_saves_exits_143_and_resumes_bit_exactly(tmp_path, mnist_dir, wait_for_file):
    """A scheduler's SIGTERM behaves as Ctrl+C: the step in flight finishes, last.pt is written."""
    data = ["--data-dir", str(mnist_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cmd("--run-dir", "whole", *ARGS, *data), cwd=tmp_path, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(_cmd("--run-dir", "term", *ARGS, *data), cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_file(tmp_path / "term" / "last.pt")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    stopped = load_checkpoint(tmp_path / "term" / "last.pt")["step"]
    assert proc.returncode == 143 and "Traceback" not in err and "--resume" in err and stopped < 40
    subprocess.run(_cmd("--resume", "term", *data, "--no-progress", "--threads", "1"), cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    whole, resumed = (load_checkpoint(tmp_path / r / "last.pt") for r in ("whole", "term"))
    for key, value in whole["model"].items():
        assert torch.equal(resumed["model"][key], value), key


def test_a_second_run_on_the_same_directory_is_refused(tmp_path, mnist_dir, capsys):
    from dilated_rnn.cli import main
    from dilated_rnn.files import exclusive

    args = ["train", "--run-dir", str(tmp_path / "run"), *ARGS, "--data-dir", str(mnist_dir)]
    with exclusive(tmp_path / "run"):  # as a first run holds it while it trains
        assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"another drnn train (pid {os.getpid()}) is using it" in err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]  # nothing of the second run written
    assert main(args[:1] + ["--steps", "3"] + args[1:]) == 0  # once it is free, a run goes ahead


def test_a_write_error_keeps_the_last_good_checkpoint_and_resume_works(tmp_path, mnist_dir, monkeypatch, capsys):
    import errno

    import dilated_rnn.training.checkpoint
    from dilated_rnn.cli import main

    data = ["--data-dir", str(mnist_dir)]
    assert main(["train", "--run-dir", str(tmp_path / "whole"), *ARGS, *data]) == 0
    real = dilated_rnn.training.checkpoint.write_bytes
    writes = []

    def failing(path, blob):  # the disk fills at the fifth checkpoint write, half-way through it
        writes.append(path)
        if len(writes) == 5:
            with open(path.with_name(".partial"), "wb") as f:
                f.write(blob[: len(blob) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, blob)

    monkeypatch.setattr(dilated_rnn.training.checkpoint, "write_bytes", failing)
    capsys.readouterr()
    assert main(["train", "--run-dir", str(tmp_path / "run"), *ARGS, *data]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "No space left on device" in err and "Traceback" not in err
    kept = load_checkpoint(tmp_path / "run" / "last.pt")  # the previous good file, whole and loadable
    assert 0 < kept["step"] < 40
    monkeypatch.setattr(dilated_rnn.training.checkpoint, "write_bytes", real)  # space is back
    assert main(["train", "--resume", str(tmp_path / "run"), *data, "--no-progress", "--threads", "1"]) == 0
    whole, resumed = (load_checkpoint(tmp_path / r / "last.pt") for r in ("whole", "run"))
    for key, value in whole["model"].items():
        assert torch.equal(resumed["model"][key], value), key


def test_a_full_filesystem_stops_the_run_with_one_line_and_loses_nothing(tmp_path, mnist_dir):
    """A real size-limited tmpfs, where this machine lets us mount one."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=144k", "tmpfs", str(small)], capture_output=True).returncode:
        import pytest

        pytest.skip("cannot mount a tmpfs here")
    try:
        # about 55 kB a checkpoint: best.pt and last.pt fit, and a third file being written does not
        proc = subprocess.run(_cmd("--run-dir", str(small / "run"), *ARGS, "--data-dir", str(mnist_dir)),
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
        assert proc.returncode == 1 and "No space left on device" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        kept = load_checkpoint(small / "run" / "last.pt")
        assert kept["step"] < 40 and not list((small / "run").glob(".*.tmp"))  # no half-written temporaries
        subprocess.run(["cp", "-r", str(small / "run"), str(tmp_path / "run")], check=True)  # space is back
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)
    subprocess.run(_cmd("--resume", str(tmp_path / "run"), "--data-dir", str(mnist_dir), "--no-progress"),
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True, capture_output=True)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 40
