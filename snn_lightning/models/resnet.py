"""Spiking ResNets: ResNet-19 (CIFAR), plain spiking ResNet-34 and SEW-ResNet-34 (ImageNet).

Why two block types: the paper reports both residual styles. The plain spiking block adds the
shortcut *before* the output neuron (docs/reference.md §4.1/§4.2), so every block output is a spike
train; the SEW-ADD block puts the neuron *before* the addition (docs/reference.md §4.3), so block outputs are sums of
spike trains. That difference decides where V_thr has to be folded for binary inference:

* a projection shortcut is a conv, which absorbs the incoming V_thr in its weights;
* an identity shortcut carries V_thr·S straight into an addition, which no weight can absorb — so
  the blocks own a scale buffer (``shortcut_scale`` / ``identity_scale``, 1.0 while training) that
  export sets. ``torch.addcmul`` applies it without an extra activation-sized temporary.

Why factories: every layer gets its own neuron and norm instance (its own V_thr, τ, MP-Init mean and
statistics), and the backbone does not need to know which neuron or norm was chosen.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .base import GlobalAvgPool, NeuronFactory, NormFactory, SpikingNetwork, Stem, TimeDistributed, layer_factories


def conv3x3(cin: int, cout: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=bias)


def conv1x1(cin: int, cout: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride, 0, bias=bias)


class BasicBlock(nn.Module):
    """Plain spiking block: ``lif2(norm2(conv2(lif1(norm1(conv1 x)))) + shortcut(x))``.

    The shortcut is a projection (conv1×1 + norm, no neuron) when the shape changes, otherwise the
    identity times the buffer ``shortcut_scale``.
    """

    def __init__(self, cin: int, cout: int, stride: int, neuron: NeuronFactory, norm: NormFactory, bias: bool = False):
        super().__init__()
        self.conv1 = TimeDistributed(conv3x3(cin, cout, stride, bias))
        self.norm1 = norm(cout)
        self.lif1 = neuron()
        self.conv2 = TimeDistributed(conv3x3(cout, cout, 1, bias))
        self.norm2 = norm(cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(OrderedDict(conv=TimeDistributed(conv1x1(cin, cout, stride, bias)), norm=norm(cout)))
        else:
            self.shortcut = None
            self.register_buffer("shortcut_scale", torch.ones(()))
        self.lif2 = neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.lif1(self.norm1(self.conv1(x)))))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        else:
            out = torch.addcmul(out, x, self.shortcut_scale)
        return self.lif2(out)



class SEWBlock(nn.Module):
    """SEW-ADD block: ``lif2(norm2(conv2(lif1(norm1(conv1 x))))) + identity``.

    ``identity`` is x, or ``lif(norm(conv1×1 x))`` when the shape changes (neuron before the add).
    It is multiplied by the buffer ``identity_scale`` (1.0 while training).
    """

    def __init__(self, cin: int, cout: int, stride: int, neuron: NeuronFactory, norm: NormFactory, bias: bool = False):
        super().__init__()
        self.conv1 = TimeDistributed(conv3x3(cin, cout, stride, bias))
        self.norm1 = norm(cout)
        self.lif1 = neuron()
        self.conv2 = TimeDistributed(conv3x3(cout, cout, 1, bias))
        self.norm2 = norm(cout)
        self.lif2 = neuron()
        if stride != 1 or cin != cout:  # registered after lif2: it runs after lif2 in forward
            self.downsample = nn.Sequential(
                OrderedDict(conv=TimeDistributed(conv1x1(cin, cout, stride, bias)), norm=norm(cout), lif=neuron())
            )
        else:
            self.downsample = None
        self.register_buffer("identity_scale", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lif2(self.norm2(self.conv2(self.lif1(self.norm1(self.conv1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.addcmul(out, identity, self.identity_scale)



class _ResNet(SpikingNetwork):
    """Shared stem/stage/head assembly for the spiking ResNets."""

    def _make_stages(self, block, cin: int, widths, depths, strides, neuron, norm, bias) -> nn.Sequential:
        layers = []
        for width, depth, stride in zip(widths, depths, strides):
            for i in range(depth):
                layers.append(block(cin, width, stride if i == 0 else 1, neuron, norm, bias))
                cin = width
        return nn.Sequential(*layers)

    def _make_head(self, features: int) -> nn.Sequential:
        return nn.Sequential(GlobalAvgPool(2), nn.Linear(features, self.num_classes))


class ResNet19(_ResNet):
    """ResNet-19 as in the reference (docs/reference.md §4.1): 64-channel 3×3 stem, BasicBlocks [3, 3, 2] at
    128/256/512 (strides 1/2/2), global average pool, one Linear(512, K). 17 neuron layers.

    ``conv_bias=None`` gives convs a bias only when ``norm="none"`` (otherwise the norm's β makes it redundant).
    """

    def __init__(
        self,
        num_classes: int = 100,
        in_channels: int = 3,
        T: int = 4,
        neuron: NeuronFactory | dict | None = None,
        norm: NormFactory | str = "tdbn",
        conv_bias: bool | None = None,
        input_size: int | None = None,
    ):
        # global average pooling takes any input size: input_size is accepted but not pinned
        super().__init__(num_classes, in_channels, T)
        neuron, norm, bias = layer_factories(T, neuron, norm, conv_bias)
        self.stem = Stem(conv3x3(in_channels, 64, 1, bias), norm(64), neuron())
        self.body = self._make_stages(BasicBlock, 64, (128, 256, 512), (3, 3, 2), (1, 2, 2), neuron, norm, bias)
        self.head = self._make_head(512)


class _ResNet34Base(_ResNet):
    block: type[nn.Module] = BasicBlock

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        T: int = 4,
        neuron: NeuronFactory | dict | None = None,
        norm: NormFactory | str = "tdbn",
        conv_bias: bool | None = None,
        zero_init_residual: bool = False,
        input_size: int | None = None,
    ):
        # global average pooling takes any input size: input_size is accepted but not pinned
        super().__init__(num_classes, in_channels, T)
        neuron, norm, bias = layer_factories(T, neuron, norm, conv_bias)
        stem_conv = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=bias)
        self.stem = Stem(stem_conv, norm(64), neuron(), pool=nn.MaxPool2d(3, 2, 1))
        self.body = self._make_stages(self.block, 64, (64, 128, 256, 512), (3, 4, 6, 3), (1, 2, 2, 2), neuron, norm, bias)
        self.head = self._make_head(512)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # As the reference (spiking_resnet.py): kaiming fan_out for convs, BN γ=1 β=0, Linear N(0, 0.01).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for blk in self.body:
                for bn in blk.norm2.modules():
                    if isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.affine:
                        nn.init.zeros_(bn.weight)


class SpikingResNet34(_ResNet34Base):
    """Plain spiking ResNet-34 (docs/reference.md §4.2): 7×7/2 stem + max pool, BasicBlocks [3, 4, 6, 3] at
    64/128/256/512, add before the neuron, downsample conv1×1 + norm without a neuron. 33 neuron layers."""

    block = BasicBlock


class SEWResNet34(_ResNet34Base):
    """SEW-ResNet-34 (docs/reference.md §4.3): same stem, stages and head with SEW-ADD blocks (neuron before
    the add, a neuron on the downsample path). 36 neuron layers."""

    block = SEWBlock


__all__ = ["BasicBlock", "ResNet19", "SEWBlock", "SEWResNet34", "SpikingResNet34"]
