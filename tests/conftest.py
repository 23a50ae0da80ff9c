"""Shared fixtures: real MNIST (fetched once into the cache) and tiny model configs."""

import gc
import time

import pytest
import torch

from dilated_rnn.data.mnist import default_data_dir, load_mnist


@pytest.fixture(scope="session")
def mnist_dir():
    load_mnist(default_data_dir())  # fetch and verify once
    return default_data_dir()


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    return load_mnist(mnist_dir)


@pytest.fixture(scope="session")
def small_mnist(mnist):
    return mnist.subset(train=512, val=200, test=200)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _collector_unfrozen():
    """``drnn train`` and ``bench`` run in-process freeze the live objects (train.freeze_live_objects): undo it,
    so that the test process's garbage stays collectable."""
    yield
    gc.unfreeze()


@pytest.fixture(scope="session")
def shipped_checkpoint(tmp_path_factory):
    """``make(name)``: a checkpoint file, as ``drnn train`` writes one, holding a shipped model's weights."""
    from dilated_rnn.trained import load_pretrained
    from dilated_rnn.training.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")

    def make(name: str):
        path = root / f"{name}.pt"
        if not path.exists():
            trained = load_pretrained(name)
            model, transform, card = trained.model, trained.transform, trained.card
            save_checkpoint(path, {"model_config": model.config.to_dict(), "train_config": card["train_config"],
                                   "permutation": transform.permutation, "normalization": transform.normalization,
                                   "model": model.state_dict()})
        return path

    return make


@pytest.fixture
def wait_for_file():
    """``wait(path)``: block until ``path`` exists (a run's first checkpoint, say), at most two minutes."""

    def wait(path, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while not path.exists() and time.time() < deadline:
            time.sleep(0.01)

    return wait
