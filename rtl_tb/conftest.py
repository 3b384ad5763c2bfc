import sys
from pathlib import Path

import pytest

# the tool/data gate shared with tests/ (tests/needs.py): skips locally, fails under CI
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from needs import SHARED_DATA, require_data  # noqa: E402


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return require_data(SHARED_DATA / "mnist", "real MNIST")
