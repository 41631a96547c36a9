"""`python -m snn_lightning.eval` runs `snn-eval` (the command lives in :mod:`snn_lightning.cli.eval`)."""
from .cli.eval import main

if __name__ == "__main__":
    main()
