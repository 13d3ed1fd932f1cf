r"""Samplers: MCMC kernels over batches of chains, AIS, rejection and importance sampling,
and decoding strategies for discrete autoregressive sampling."""

from . import decoding
from .adaptation import DualAveraging, dual_averaging
from .ais import AIS, Geometric, ais, geometric_path, sigmoid_schedule
from .base import Chain, Kernel, KernelState, run_chain, value_and_grad
from .buffer import ReplayBuffer
from .decoding import Strategy, Temperature, TopK, TopP, strategies
from .diagnostics import effective_sample_size, importance_ess, split_r_hat
from .gibbs import Bipartite, BlockGibbs
from .hmc import HMC, leapfrog
from .importance import Importance, Rejection, importance_sample, log_density, rejection_sample
from .langevin import MALA, ULA
from .metropolis import RandomWalk
from .pyro import ToPyroKernel, sample_with_pyro

__all__ = [
    "decoding",
    "Strategy",
    "Temperature",
    "TopK",
    "TopP",
    "strategies",
    # MCMC kernels and the loop
    "KernelState",
    "Kernel",
    "Chain",
    "run_chain",
    "value_and_grad",
    "RandomWalk",
    "ULA",
    "MALA",
    "HMC",
    "leapfrog",
    "Bipartite",
    "BlockGibbs",
    "DualAveraging",
    "dual_averaging",
    "ToPyroKernel",
    "ReplayBuffer",
    "sample_with_pyro",
    # Normalising constants and samplers over any density
    "AIS",
    "ais",
    "Geometric",
    "geometric_path",
    "sigmoid_schedule",
    "Rejection",
    "rejection_sample",
    "Importance",
    "importance_sample",
    "log_density",
    # Diagnostics
    "effective_sample_size",
    "split_r_hat",
    "importance_ess",
]
