"""`python -m snn_lightning.train` runs `snn-train` (the command lives in :mod:`snn_lightning.cli.train`)."""
from .cli.train import main

if __name__ == "__main__":
    main()
