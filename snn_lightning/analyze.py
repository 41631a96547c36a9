"""`python -m snn_lightning.analyze` runs `snn-analyze` (the command lives in :mod:`snn_lightning.cli.analyze`)."""
from .cli.analyze import main

if __name__ == "__main__":
    main()
