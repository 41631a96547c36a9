"""``python -m snn_lightning.aggregate``: the same as ``snn-aggregate`` (:mod:`snn_lightning.cli.aggregate`)."""
from .cli.aggregate import main

if __name__ == "__main__":
    main()
