import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Policy tests use tiny tensors: one thread is faster than several fighting over a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
