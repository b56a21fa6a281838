import pytest
import torch


@pytest.fixture
def single_thread():
    """One intra-op thread: on a small, shared CPU this is several times faster than threads that
    contend (and spin) for the same cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
