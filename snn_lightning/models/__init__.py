"""Spiking network backbones and the ``create_model`` registry (plain PyTorch).

Why a registry of names: configs and the experiment layer pick a network by a string
(``model.name=resnet19``), and one function validates the name and turns the ``neuron`` dict and the
``norm`` kind into the per-layer factories every backbone takes.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from .._checks import choice
from .base import GlobalAvgPool, SpikingNetwork, Stem, TimeDistributed, layer_factories, neuron_factory, norm_factory
from .convnets import CNN7, ConvNormLIF, SmallCNN
from .light import MEMORY_MODES, make_light, memory_mode
from .resnet import BasicBlock, ResNet19, SEWBlock, SEWResNet34, SpikingResNet34

MODELS: dict[str, type[SpikingNetwork]] = {
    "resnet19": ResNet19,
    "cnn7": CNN7,
    "resnet34": SpikingResNet34,
    "sew_resnet34": SEWResNet34,
    "small_cnn": SmallCNN,
}


def create_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    T: int,
    norm: str | Callable[[int], nn.Module] = "tdbn",
    neuron: Mapping | Callable[[], nn.Module] | None = None,
    memory: str | None = None,
    **kwargs,
) -> SpikingNetwork:
    """Build model ``name`` with one fresh ``LIF(**neuron)`` and one ``norm`` layer per layer.

    ``kwargs`` go to the backbone (e.g. ``input_size`` for cnn7, ``channels`` for small_cnn,
    ``conv_bias``, ``zero_init_residual`` for the ResNet-34s). ``memory="light"`` converts the network
    with :func:`make_light` (spikes kept as bits for backward); ``None``/``"off"`` keeps the default.
    """
    choice("model", name, sorted(MODELS))
    light = memory_mode(memory) == "light"
    net = MODELS[name](num_classes=num_classes, in_channels=in_channels, T=T, neuron=neuron, norm=norm, **kwargs)
    if light:
        make_light(net)
    return net


__all__ = [
    "CNN7",
    "MEMORY_MODES",
    "MODELS",
    "BasicBlock",
    "ConvNormLIF",
    "GlobalAvgPool",
    "ResNet19",
    "SEWBlock",
    "SEWResNet34",
    "SmallCNN",
    "SpikingNetwork",
    "SpikingResNet34",
    "Stem",
    "TimeDistributed",
    "create_model",
    "layer_factories",
    "make_light",
    "neuron_factory",
    "norm_factory",
]
