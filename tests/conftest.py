from pathlib import Path

import pytest
import torch
from needs import SHARED_DATA, require_data

# one thread per test process: the suite runs one process per core (run-tests), and the small models of the tests
# run faster on one thread than on two (edgelearn/threads.py)
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_data(SHARED_DATA, "real data")


@pytest.fixture(scope="session")
def mnist_dir(shared_data) -> Path:
    return require_data(shared_data / "mnist", "MNIST")
