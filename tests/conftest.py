import os
from pathlib import Path

import pytest
import torch

# keep test runs on the 2-core machine predictable
torch.set_num_threads(min(2, os.cpu_count() or 1))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA} (it sits beside the project in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mnist_dir(shared_data) -> Path:
    d = shared_data / "mnist"
    if not d.is_dir():
        pytest.skip(f"MNIST not present at {d}")
    return d
