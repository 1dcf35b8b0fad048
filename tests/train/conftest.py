"""Fixtures of the trainer's tests."""

import pytest
from idx_fixtures import write_fashion


@pytest.fixture
def fashion(tmp_path, monkeypatch):
    folder = write_fashion(tmp_path / "fm", n_train=256, n_val=96)
    monkeypatch.setenv("SPOS_DATA", str(folder))
    return folder
