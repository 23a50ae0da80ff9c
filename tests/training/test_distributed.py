"""torchrun with 2 CPU processes (gloo, loopback) against one process with the same global batch."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch

from dilated_rnn.data.mnist import load_mnist
from dilated_rnn.data.splits import batch_indices
from dilated_rnn.training.checkpoint import load_checkpoint, model_from_checkpoint
from dilated_rnn.training.distributed import Context, shard
from dilated_rnn.training.evaluate import evaluate

ARGS = ["--hidden-sizes", "8", "--dilations", "1,2,4,8", "--steps", "6", "--batch-size", "16", "--eval-every", "1",
        "--log-every", "1", "--train-limit", "256", "--val-limit", "50", "--test-limit", "50", "--no-progress",
        "--threads", "1", "--device", "cpu", "--optimizer", "adam", "--lr", "0.01",
        "--sam", "0.05", "--sam-start", "3"]  # plain steps, then sharpness-aware ones (two all-reduces a step)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-3000:]}"
    return result


def test_shards_partition_the_global_batch():
    idx = batch_indices(100, 16, 3, seed=1)
    parts = [shard(idx, Context(rank, 2)) for rank in range(2)]
    assert sorted(torch.cat(parts).tolist()) == sorted(idx.tolist()) and all(len(p) == 8 for p in parts)


# The drnn command with an exit-time handler that says when it runs.
DRNN_SAYING_EXIT = ("import atexit, sys\n"
                    "atexit.register(lambda: print('exit-time handlers ran', flush=True))\n"
                    "from dilated_rnn.cli import entry\n"
                    "entry()\n")


def test_two_processes_match_one(tmp_path, mnist_dir):
    data = ["--data-dir", str(mnist_dir)]
    (tmp_path / "drnn.py").write_text(DRNN_SAYING_EXIT)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(_free_port()), "drnn.py", "train", "--run-dir", "ddp"]
    ddp = _run(torchrun + ARGS + data, tmp_path)
    # every step was validated, and check_replicas compared all ranks' weights bit for bit before each
    single = _run([sys.executable, "drnn.py", "train", "--run-dir", "single"] + ARGS + data, tmp_path)
    assert ddp.stdout.count("test set, best checkpoint") == 1  # rank 0 alone reports
    # the workers, their group destroyed, leave without the exit-time teardown (distributed.exit_process)
    assert "exit-time handlers ran" not in ddp.stdout and "exit-time handlers ran" in single.stdout
    a = load_checkpoint(tmp_path / "ddp" / "last.pt")
    b = load_checkpoint(tmp_path / "single" / "last.pt")
    assert a["step"] == b["step"] == 6
    for key, value in b["model"].items():
        torch.testing.assert_close(a["model"][key], value, rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(p.name for p in (tmp_path / "single").iterdir())
    # the validation figures the DDP run logged are those of its checkpoint evaluated in one process
    logged = json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()[-1])
    report = evaluate(model_from_checkpoint(a), load_mnist(mnist_dir)["val"].subset(50), None, 1000, "cpu")
    assert report["accuracy"] == logged["val_accuracy"] and report["loss"] == pytest.approx(logged["val_loss"], abs=1e-6)


def test_sigterm_to_torchrun_saves_once_and_resumes_bit_exactly(tmp_path, mnist_dir, wait_for_file):
    """A scheduler's SIGTERM to torchrun reaches both ranks; they stop at the same step, rank 0 saves
    last.pt, and a resumed run ends with the weights of an uninterrupted one, bit for bit."""
    args = ["--hidden-sizes", "8", "--dilations", "1,2,4,8", "--steps", "40", "--batch-size", "16", "--eval-every",
            "3", "--train-limit", "256", "--val-limit", "50", "--test-limit", "50", "--no-progress", "--threads", "1",
            "--device", "cpu", "--optimizer", "adam", "--lr", "0.01"]
    data = ["--data-dir", str(mnist_dir)]
    torchrun = lambda: [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                        "127.0.0.1", "--master_port", str(_free_port()), "-m", "dilated_rnn.cli", "train"]
    _run(torchrun() + ["--run-dir", "whole"] + args + data, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(torchrun() + ["--run-dir", "term"] + args + data, cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_file(tmp_path / "term" / "last.pt")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert "exitcode" not in err  # torchrun reports no worker as failed
    assert err.count("interrupted; state saved") == 1  # rank 0 says it, once
    stopped = load_checkpoint(tmp_path / "term" / "last.pt")["step"]
    assert 0 < stopped < 40
    _run(torchrun() + ["--resume", "term", "--no-progress", "--threads", "1"] + data, tmp_path)
    whole, resumed = (load_checkpoint(tmp_path / r / "last.pt") for r in ("whole", "term"))
    assert resumed["step"] == whole["step"] == 40
    for key, value in whole["model"].items():
        assert torch.equal(resumed["model"][key], value), key
