"""Shared fixtures: real MNIST (fetched once into the cache) and tiny model configs."""

import pytest
import torch

from dilated_rnn.data import default_data_dir, load_mnist


@pytest.fixture(scope="session")
def mnist_dir():
    load_mnist(default_data_dir())  # fetch and verify once
    return default_data_dir()


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    return load_mnist(mnist_dir)


@pytest.fixture(scope="session")
def small_mnist(mnist):
    return {"train": mnist["train"].subset(512), "val": mnist["val"].subset(200), "test": mnist["test"].subset(200)}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
