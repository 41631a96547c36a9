"""The console scripts, thin peers over :mod:`snn_lightning.experiment` and :mod:`snn_lightning.runs`.

Each one parses its arguments, calls the layers below, and leaves the failure policy to
:func:`snn_lightning.cli._common.guarded`. They never import each other.
"""
