"""Tiny "trained" backbones for the export tests (fold, fuse, NIR): one definition, three test files."""
import copy
import functools

import torch
from torch import nn

from snn_lightning.models import create_model

# name -> (in_channels, spatial size, extra kwargs)
TINY = {
    "resnet19": (3, 8, {}),
    "cnn7": (2, 16, {"input_size": 16}),
    "sew_resnet34": (3, 16, {}),
    "resnet34": (3, 16, {}),
    "small_cnn": (1, 8, {}),
}
T, B = 2, 2


def trained_like(name, seed=0, norm="tdbn", neuron=None, dtype=torch.float64):
    """A fresh copy of a model in a 'trained' state (built once per set of arguments)."""
    return copy.deepcopy(_trained_like(name, seed, norm, tuple(sorted((neuron or {}).items())), dtype))


@functools.lru_cache(maxsize=3)
def _trained_like(name, seed, norm, neuron, dtype):
    """Thresholds V_thr ∈ [0.3, 3] per layer, non-zero MP-Init means, non-trivial norm affines and
    BatchNorm running statistics gathered by train-mode forwards on static images and on frames."""
    neuron = dict(neuron) or None
    torch.manual_seed(seed)
    cin, size, extra = TINY[name]
    model = create_model(name, num_classes=10, in_channels=cin, T=T, norm=norm, neuron=neuron, **extra).to(dtype)
    with torch.no_grad():
        for _, lif in model.neuron_layers():
            v = torch.empty((), dtype=dtype).uniform_(0.3, 3.0)
            lif.raw_threshold.copy_(torch.log(torch.expm1(v)))  # inverse softplus
            lif.mp_init_mean.fill_(torch.empty(()).uniform_(-0.4, 0.4).item())
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # cumulative average: running stats = the data's statistics
                m.weight.uniform_(0.8, 2.0)  # strong enough drive that every layer fires
                m.bias.uniform_(-0.2, 0.4)
            elif isinstance(m, nn.Linear):
                m.weight.mul_(20.0)  # cnn7's hidden FC neuron needs a real drive too
            if hasattr(m, "p") and isinstance(m.p, nn.Parameter):
                m.p.uniform_(0.7, 1.4)
        model.train()
        model(torch.randn(4, cin, size, size, dtype=dtype) * 2)
        model(torch.randn(T, 4, cin, size, size, dtype=dtype) * 2)
    return model.eval(), cin, size
