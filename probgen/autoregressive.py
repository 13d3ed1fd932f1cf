r"""Autoregressive models (``pg.autoregressive``): chain-rule distributions.

Every model is an :class:`torch.nn.Module` whose call returns a fresh :class:`ChainRule`
(a Pyro distribution) with an exact, one-pass ``log_prob`` and ancestral ``sample``
(``strategy=`` / ``temperature``, ``top_k``, ``top_p`` change the distribution sampled,
never ``log_prob``); ``context > 0`` makes it conditional. A per-element family says what
each conditional is.
"""

from .distributions.autoregressive import (
    MADE,
    NADE,
    Autoregressive,
    ChainRule,
    Incremental,
    OrderMixture,
)
from .distributions.elements import (
    BernoulliFamily,
    CategoricalFamily,
    DiscretizedLogisticMixture,
    ElementFamily,
    GaussianFamily,
    LogisticMixtureFamily,
)
from .distributions.pixelcnn import PixelCNN
from .distributions.sequence import Transformer, WaveNet
from .samplers.decoding import Strategy, Temperature, TopK, TopP, strategies

__all__ = [
    "ChainRule",
    "OrderMixture",
    "Autoregressive",
    "Incremental",
    "MADE",
    "NADE",
    "PixelCNN",
    "WaveNet",
    "Transformer",
    "ElementFamily",
    "BernoulliFamily",
    "CategoricalFamily",
    "GaussianFamily",
    "LogisticMixtureFamily",
    "DiscretizedLogisticMixture",
    "Strategy",
    "Temperature",
    "TopK",
    "TopP",
    "strategies",
]
