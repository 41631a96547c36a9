"""snn-lightning: MP-Init and TrSG spiking neural networks on PyTorch Lightning + Hydra."""
__version__ = "0.1.0"
