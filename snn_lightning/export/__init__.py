"""Export of trained networks for inference (plain PyTorch): binary spikes (``fold``), conv/BatchNorm
fusion (``fuse``), and the result as a NIR graph (``nir_graph.to_nir``; ``nir_runtime.from_nir`` runs
one) or as TorchScript (``torchscript.to_torchscript``). README "Export" says what each target keeps."""
from .fold import fold_module, fold_thresholds
from .fuse import conv_norm_pairs, fuse_conv_norm
from .nir_graph import nir_nodes, to_nir
from .nir_runtime import InferenceLIF, NIRNetwork, from_nir
from .torchscript import inference_network, to_torchscript

__all__ = [
    "InferenceLIF",
    "NIRNetwork",
    "conv_norm_pairs",
    "fold_module",
    "fold_thresholds",
    "from_nir",
    "fuse_conv_norm",
    "inference_network",
    "nir_nodes",
    "to_nir",
    "to_torchscript",
]
