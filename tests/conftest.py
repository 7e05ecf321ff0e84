"""Suite-wide settings."""

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The tests share 2 cores with sim servers and link threads; torch's intra-op threads would only contend
    with them (measured ~10× slower training steps), so every test runs torch on one thread."""
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
