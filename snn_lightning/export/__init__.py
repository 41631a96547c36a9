"""Export of trained networks for inference with binary spikes (plain PyTorch); see ``fold``."""
from .fold import fold_module, fold_thresholds

__all__ = ["fold_module", "fold_thresholds"]
