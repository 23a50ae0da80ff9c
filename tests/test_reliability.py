"""Kill -9 at a random moment, resume, and get the weights of an uninterrupted run, bit for bit."""

import os
import random
import signal
import subprocess
import sys
import time

import torch

from dilated_rnn.checkpoint import load_checkpoint

ARGS = ["--hidden-sizes", "8", "--dilations", "1,2,4,8", "--steps", "40", "--batch-size", "16", "--eval-every", "3",
        "--log-every", "1", "--train-limit", "512", "--val-limit", "40", "--test-limit", "40", "--no-progress",
        "--threads", "1", "--device", "cpu", "--schedule", "cosine", "--momentum", "0.5", "--permute"]


def _cmd(*extra):
    return [sys.executable, "-m", "dilated_rnn.cli", "train", *extra]


def test_kill_9_then_resume_is_bit_identical(tmp_path, mnist_dir):
    data = ["--data-dir", str(mnist_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cmd("--run-dir", "whole", *ARGS, *data), cwd=tmp_path, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(_cmd("--run-dir", "killed", *ARGS, *data), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / "killed" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.01)
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


def test_ctrl_c_saves_and_exits_cleanly(tmp_path, mnist_dir):
    args = [a if a != "40" else "100000" for a in ARGS]  # far more steps than will run
    proc = subprocess.Popen(_cmd("--run-dir", "run", *args, "--data-dir", str(mnist_dir)), cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "run" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "--resume" in err
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    logged = [line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert saved["step"] == len(logged)  # saved at the step where it stopped, not at the last validation
