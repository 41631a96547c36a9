"""Plain (non-residual) spiking CNNs: the 7-conv VGG-style net for DVS, and a tiny net for CPU work.

Why ``CNN7`` looks like this: the paper's "7-layer CNN" for DVS-CIFAR10 is not in the reference code;
the TEBN/TAB baselines it compares against use a VGG with 7 convs (64, 64, AP, 128, 128, AP, 256, 256,
256, AP) and a 1024-unit hidden FC (docs/reference.md §4.4), so we build that, sized from the input
(48×48 DVS frames or 32×32 images).

Why ``SmallCNN``: the experiment layer, the tests and the docs need a network that trains to a
meaningful accuracy on scikit-learn's 8×8 digits in about a minute on a laptop CPU, while still
exercising every piece (stem encoding, norms, neurons, MP-Init, folding).
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .._checks import positive_int
from ..errors import InvalidValue

from .base import NeuronFactory, NormFactory, SpikingNetwork, Stem, TimeDistributed, layer_factories


class ConvNormLIF(nn.Sequential):
    """conv → norm → neuron on ``[T, B, C, H, W]``."""

    def __init__(self, cin: int, cout: int, neuron: NeuronFactory, norm: NormFactory, stride: int = 1, bias: bool = False):
        super().__init__(
            OrderedDict(
                conv=TimeDistributed(nn.Conv2d(cin, cout, 3, stride, 1, bias=bias)),
                norm=norm(cout),
                lif=neuron(),
            )
        )


class CNN7(SpikingNetwork):
    """VGG-style 7-conv spiking CNN: every conv is conv3×3 + norm + LIF; average pools after convs 2, 4, 7;
    then flatten → Dropout → Linear(256·s·s, 1024) → LIF → Dropout → Linear(1024, K), s = input_size/8.
    8 neuron layers. ``input_size`` defaults to 48 for 2-channel (DVS) inputs and 32 otherwise.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 2,
        T: int = 4,
        neuron: NeuronFactory | dict | None = None,
        norm: NormFactory | str = "tdbn",
        input_size: int | None = None,
        dropout: float = 0.25,
        hidden: int = 1024,
        conv_bias: bool | None = None,
    ):
        if input_size is None:
            input_size = 48 if in_channels == 2 else 32
        if positive_int("CNN7 input_size", input_size) % 8:
            raise InvalidValue(f"CNN7 input_size must be a positive multiple of 8, got {input_size!r}")
        super().__init__(num_classes, in_channels, T, input_size=int(input_size))
        neuron, norm, bias = layer_factories(T, neuron, norm, conv_bias)

        def pool():
            return TimeDistributed(nn.AvgPool2d(2))

        self.stem = Stem(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=bias), norm(64), neuron())
        self.body = nn.Sequential(
            ConvNormLIF(64, 64, neuron, norm, bias=bias),
            pool(),
            ConvNormLIF(64, 128, neuron, norm, bias=bias),
            ConvNormLIF(128, 128, neuron, norm, bias=bias),
            pool(),
            ConvNormLIF(128, 256, neuron, norm, bias=bias),
            ConvNormLIF(256, 256, neuron, norm, bias=bias),
            ConvNormLIF(256, 256, neuron, norm, bias=bias),
            pool(),
        )
        s = self.input_size // 8
        self.head = nn.Sequential(
            nn.Flatten(start_dim=2),
            nn.Dropout(dropout),
            nn.Linear(256 * s * s, hidden),
            neuron(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )


class SmallCNN(SpikingNetwork):
    """A tiny spiking CNN for CPU work on 8×8 to 16×16 inputs: conv3×3(in→c) + norm + LIF,
    conv3×3(c→2c, stride 2) + norm + LIF, adaptive average pool to 2×2, Linear(2c·4, K). 2 neuron layers.

    The 2×2 pool (rather than a global one) keeps the coarse layout of a digit, which a global mean
    discards; it still accepts any input size ≥ 3×3.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        T: int = 4,
        neuron: NeuronFactory | dict | None = None,
        norm: NormFactory | str = "tdbn",
        channels: int = 32,
        conv_bias: bool | None = None,
        input_size: int | None = None,
    ):
        # the 2x2 pool takes any input size, so input_size (passed by every caller alike) is not pinned
        super().__init__(num_classes, in_channels, T)
        neuron, norm, bias = layer_factories(T, neuron, norm, conv_bias)
        c = int(channels)
        self.stem = Stem(nn.Conv2d(in_channels, c, 3, 1, 1, bias=bias), norm(c), neuron())
        self.body = nn.Sequential(ConvNormLIF(c, 2 * c, neuron, norm, stride=2, bias=bias))
        self.head = nn.Sequential(TimeDistributed(nn.AdaptiveAvgPool2d(2)), nn.Flatten(start_dim=2), nn.Linear(2 * c * 4, num_classes))


__all__ = ["CNN7", "ConvNormLIF", "SmallCNN"]
