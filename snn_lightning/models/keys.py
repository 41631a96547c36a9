"""The state_dict key map from older checkpoints to the current attribute names.

Why: the residual blocks once named their layers ``bn1``/``sn1``/``bn2``/``sn2`` and their shortcut
layers by position (``shortcut.0``, ``downsample.2``), while the stem and the plain CNNs used
``conv``/``norm``/``lif``. Every block now follows one convention — ``conv*``, ``norm*``, ``lif*`` —
so that a reader (and ``snn_lightning.export``) sees the same names everywhere. Renaming attributes
renames ``state_dict`` keys; this map keeps checkpoints written before the rename loadable.
:class:`~snn_lightning.models.SpikingNetwork` applies it on every ``load_state_dict``, so Lightning
checkpoints (keys under ``net.``) upgrade on load without the caller doing anything.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping

# (old key segment, new key segment), matched on whole dotted segments
RENAMES: tuple[tuple[str, str], ...] = (
    (r"\.bn(\d+)\.", r".norm\1."),
    (r"\.sn(\d+)\.", r".lif\1."),
    (r"\.shortcut\.0\.", ".shortcut.conv."),
    (r"\.shortcut\.1\.", ".shortcut.norm."),
    (r"\.downsample\.0\.", ".downsample.conv."),
    (r"\.downsample\.1\.", ".downsample.norm."),
    (r"\.downsample\.2\.", ".downsample.lif."),
)
_COMPILED = tuple((re.compile(old), new) for old, new in RENAMES)


def upgrade_key(key: str) -> str:
    """The current name of a ``state_dict`` key (unchanged when it is already current)."""
    dotted = f".{key}."
    for old, new in _COMPILED:
        dotted = old.sub(new, dotted)
    return dotted[1:-1]


def upgrade_state_dict(state_dict: Mapping) -> OrderedDict:
    """A copy of ``state_dict`` with every key under its current name (order and ``_metadata`` kept).

    Idempotent: current keys pass through. Raises ``ValueError`` if two keys would collide, which
    means the dict mixes old and new names for one layer.
    """
    out, origin = OrderedDict(), {}
    for key, value in state_dict.items():
        new = upgrade_key(key)
        if new in out:
            raise ValueError(f"state_dict has both {origin[new]!r} and {key!r}, which both mean {new!r}; keep one of them")
        out[new], origin[new] = value, key
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        out._metadata = OrderedDict((upgrade_key(k) if k else k, v) for k, v in metadata.items())
    return out


def upgrade_in_place(state_dict: dict, prefix: str = "", expected=None) -> None:
    """Rename, inside ``state_dict``, the keys under ``prefix`` that use an old name.

    For ``_load_from_state_dict``: ``nn.Module.load_state_dict`` hands every module the one dict
    it loads from, so renaming there before the children read it is enough. With ``expected`` (the
    keys the loading module has, without ``prefix``) a key is renamed only when its old name is not
    expected and its new one is, so a model of someone else's that really has a ``bn1`` keeps it.
    """
    moved = []
    for key in [k for k in state_dict if k.startswith(prefix)]:
        tail = key[len(prefix):]
        new_tail = upgrade_key(tail)
        if new_tail == tail or (expected is not None and (tail in expected or new_tail not in expected)):
            continue
        new = prefix + new_tail
        if new in state_dict:
            raise ValueError(f"state_dict has both {key!r} and its current name {new!r}; keep one of them")
        state_dict[new] = state_dict.pop(key)
        moved.append(key)
    metadata = getattr(state_dict, "_metadata", None)  # per-module versions, keyed by module prefix
    if metadata is not None and moved:
        for key in [k for k in metadata if k.startswith(prefix)]:
            new = prefix + upgrade_key(key[len(prefix):])
            if new != key:
                metadata.setdefault(new, metadata.pop(key))
