import os

import pytest
import torch

# Tests share 2 cores with each other's subprocesses; keep torch from oversubscribing.
torch.set_num_threads(min(2, os.cpu_count() or 1))

from spos.space import SearchSpace  # noqa: E402


@pytest.fixture
def tiny_space() -> SearchSpace:
    """A 5-block, narrow, 32x32 space: real code paths in milliseconds."""
    return SearchSpace(
        stage_depths=(1, 1, 2, 1),
        stage_channels=(24, 48, 96, 192),
        input_size=32,
        input_channels=3,
        num_classes=10,
        stem_channels=8,
        stem_stride=1,
        last_channels=64,
    )


@pytest.fixture
def one_thread():
    """One torch thread for the test (several test processes share 2 cores: more only spin).
    Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
