"""Stateful modules: declare state once, reset it with one call."""
from __future__ import annotations

from torch import nn


class StatefulModule(nn.Module):
    """A module whose per-sequence state is declared with ``register_state`` and cleared by ``reset``."""

    def __init__(self):
        super().__init__()
        self._state_defaults: dict[str, object] = {}

    def register_state(self, name: str, default=None) -> None:
        self._state_defaults[name] = default
        setattr(self, name, default)

    def reset(self) -> None:
        for name, default in self._state_defaults.items():
            setattr(self, name, default)


def reset_net(net: nn.Module) -> None:
    """Reset the state of every stateful module inside ``net``."""
    for m in net.modules():
        if isinstance(m, StatefulModule):
            m.reset()
