import pyro
import pytest
import torch

# The suite's models are tiny: one intra-op thread is faster than two (no fork-join per
# kernel) and keeps timings steady on a shared machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    # Each test starts from the same RNG state, in float64, with Pyro's state cleared.
    torch.manual_seed(0)
    pyro.clear_param_store()
    pyro.enable_validation(True)
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)
