"""Export of trained networks for inference (plain PyTorch): binary spikes (``fold``) and
conv/BatchNorm fusion (``fuse``)."""
from .fold import fold_module, fold_thresholds
from .fuse import fuse_conv_norm

__all__ = ["fold_module", "fold_thresholds", "fuse_conv_norm"]
