"""Surrogate shapes f'(x) for the Heaviside spike (plain PyTorch)."""
from .shapes import (
    ATan,
    Rectangular,
    Sigmoid,
    Surrogate,
    Triangular,
    SURROGATES,
    build_surrogate,
    spike,
)

__all__ = [
    "ATan",
    "Rectangular",
    "Sigmoid",
    "Surrogate",
    "Triangular",
    "SURROGATES",
    "build_surrogate",
    "spike",
]
