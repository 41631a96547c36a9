"""Time-aware normalization layers (plain PyTorch); see ``layers`` for why they wrap a BatchNorm."""
from .layers import NORM_KINDS, TAB, TDBN, TEBN, NoNorm, PerFrameBN, TimeNorm, build_norm

__all__ = ["NORM_KINDS", "TAB", "TDBN", "TEBN", "NoNorm", "PerFrameBN", "TimeNorm", "build_norm"]
