"""Finding and choosing the neuron layers a monitor watches (plain PyTorch)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from ..errors import InvalidValue
from ..neurons import LIF


def find_neuron_layers(module: nn.Module) -> list[tuple[str, LIF]]:
    """(name, LIF) for every neuron layer in forward order, named relative to the network.

    A wrapper with ``.net`` (e.g. the LightningModule) is searched through its network, so the names
    are the stable qualified names of the backbone (``stem.lif``, ``body.0.lif``, ``body.0.lif1`` …).
    """
    net = getattr(module, "net", module)
    if hasattr(net, "neuron_layers"):
        return list(net.neuron_layers())
    return [(name or "neuron", m) for name, m in net.named_modules() if isinstance(m, LIF)]


def evenly_spaced(names: Sequence[str], n: int) -> list[str]:
    """``n`` evenly spaced entries of ``names`` including both ends (the middle one for n = 1)."""
    names = list(names)
    n = min(max(n, 0), len(names))
    if n == 0:
        return []
    if n == 1:
        return [names[(len(names) - 1) // 2]]
    idx = sorted({round(i * (len(names) - 1) / (n - 1)) for i in range(n)})
    return [names[i] for i in idx]


def pick_layers(names: Sequence[str], spec, default_count: int = 1) -> list[str]:
    """Resolve a layer choice: ``"auto"`` (``default_count`` evenly spaced layers; the middle one
    for 1), ``"all"``, ``None``/``[]``/``"none"`` (none), an int n (n evenly spaced layers), a name,
    or a list of names. Unknown names raise :class:`~snn_lightning.errors.InvalidValue` (a ValueError)
    listing the allowed ones."""
    names = list(names)
    if spec is None or spec == [] or spec == "none" or not names:
        return []
    if spec == "all":
        return names
    if spec == "auto":
        spec = int(default_count)
    if isinstance(spec, bool):
        raise InvalidValue(f"layer choice must be 'auto', 'all', a count, a name or a list of names, got {spec!r}")
    if isinstance(spec, int):
        return evenly_spaced(names, spec)
    if isinstance(spec, str):
        spec = [spec]
    chosen = [str(s) for s in spec]
    unknown = [s for s in chosen if s not in names]
    if unknown:
        raise InvalidValue(f"unknown neuron layer {unknown[0]!r}; allowed: {', '.join(names)}")
    return chosen


def layer_parameters(layers: Iterable[tuple[str, LIF]]) -> dict[str, dict[str, float]]:
    """MP-Init running mean, V_thr and τ of each layer, read with one device-to-host copy."""
    layers = list(layers)
    if not layers:
        return {}
    params = [p.detach().float().reshape(()) for _, lif in layers for p in (lif.mp_init_mean, lif.v_threshold, lif.tau)]
    vals = torch.stack(params).cpu().view(-1, 3).tolist()
    return {n: {"mp_init": v[0], "v_threshold": v[1], "tau": v[2]} for (n, _), v in zip(layers, vals)}
