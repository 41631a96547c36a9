"""Export of trained networks for inference (plain PyTorch): binary spikes (``fold``), conv/BatchNorm
fusion (``fuse``) and the NIR graph of the result (``nir_graph``: ``to_nir``; ``nir_runtime``: ``from_nir``)."""
from .fold import fold_module, fold_thresholds
from .fuse import conv_norm_pairs, fuse_conv_norm
from .nir_graph import nir_nodes, to_nir
from .nir_runtime import NIRNetwork, from_nir

__all__ = ["NIRNetwork", "conv_norm_pairs", "fold_module", "fold_thresholds", "from_nir", "fuse_conv_norm", "nir_nodes", "to_nir"]
