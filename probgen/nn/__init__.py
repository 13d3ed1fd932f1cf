r"""Network blocks with no probability in them."""

from .conv import ConvNet
from .mlp import MLP, MaskedLinear, MaskedMLP

__all__ = ["MLP", "MaskedLinear", "MaskedMLP", "ConvNet"]
