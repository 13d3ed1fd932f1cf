r"""Network blocks with no probability in them."""

from .autoencoder import (
    CodebookUsage,
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    Quantized,
    VectorQuantizer,
    codebook_usage,
)
from .causal_conv import CausalConv1d, WaveNetBlock
from .conv import ConvNet
from .gan import ContextMLP, DCDiscriminator, DCGenerator, StyleGenerator, spectral_normalize
from .masked_conv import GatedMaskedConv2d, MaskedConv2d
from .mlp import MLP, MaskedLinear, MaskedMLP
from .time import TimeEmbedding, TimeMLP
from .transformer import CausalSelfAttention, KVCache, TransformerBlock
from .unet import UNet

__all__ = [
    "MLP",
    "MaskedLinear",
    "MaskedMLP",
    "ConvNet",
    "MaskedConv2d",
    "GatedMaskedConv2d",
    "CausalConv1d",
    "WaveNetBlock",
    "CausalSelfAttention",
    "KVCache",
    "TransformerBlock",
    "ContextMLP",
    "DCGenerator",
    "DCDiscriminator",
    "StyleGenerator",
    "spectral_normalize",
    "TimeEmbedding",
    "TimeMLP",
    "UNet",
    "MLPEncoder",
    "MLPDecoder",
    "ConvEncoder",
    "ConvDecoder",
    "VectorQuantizer",
    "Quantized",
    "CodebookUsage",
    "codebook_usage",
]
