from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    d = SHARED_DATA / "mnist"
    if not d.is_dir():
        pytest.skip(f"real MNIST not present at {d} (it sits beside the project in CI)")
    return d
