"""Operation and energy counts of every evaluation epoch: ``val/ops_ac``, ``val/ops_mac``, ``val/energy_uj``, ``val/fr_mean`` (and ``test/…``)."""
from __future__ import annotations

import lightning.pytorch as pl

from ..energy import E_AC_PJ, E_MAC_PJ, OperationCounter, energy_pj


class OperationCountCallback(pl.Callback):
    """Counts AC and MAC operations per sample (``snn_lightning.energy``) on the module's own evaluation
    forwards — no extra forward — and logs ``<stage>/ops_ac``, ``<stage>/ops_mac`` and
    ``<stage>/energy_uj`` (µJ per sample at ``e_ac``/``e_mac`` pJ) at the end of each validation / test epoch,
    with ``<stage>/fr_mean``, the firing rate over every neuron that produced them (Fig. 8's x-axis).

    Logged through ``pl_module.log``, so the numbers reach every logger and the run's final metrics
    (``metrics.json``, which ``snn-aggregate`` reads). Counted over the first ``max_batches`` batches of
    the epoch (all when None); the per-layer counts of the last epoch stay in ``self.last[stage]``.
    """

    def __init__(self, on_validation: bool = True, on_test: bool = True, max_batches: int | None = None,
                 e_ac: float = E_AC_PJ, e_mac: float = E_MAC_PJ):
        super().__init__()
        if max_batches is not None and (isinstance(max_batches, bool) or int(max_batches) < 1):
            raise ValueError(f"max_batches must be a positive integer or null, got {max_batches!r}")
        energy_pj({"ac": 0, "mac": 0}, e_ac, e_mac)  # validates the energies
        self.stages = {"val": bool(on_validation), "test": bool(on_test)}
        self.max_batches = int(max_batches) if max_batches is not None else None
        self.e_ac, self.e_mac = float(e_ac), float(e_mac)
        self.counter: OperationCounter | None = None
        self.last: dict[str, object] = {}
        self._batches = 0

    def _start(self, stage: str, trainer, pl_module) -> None:
        self._stop()
        if not self.stages[stage] or trainer.sanity_checking:
            return
        self.counter = OperationCounter(getattr(pl_module, "net", pl_module))
        self.counter.attach()
        self._batches = 0

    def _batch_end(self) -> None:
        if self.counter is None:
            return
        self._batches += 1
        if self.max_batches is not None and self._batches >= self.max_batches:
            self.counter.detach()

    def _end(self, stage: str, pl_module) -> None:
        if self.counter is None:
            return
        self.counter.detach()
        counts = self.counter.result()
        self.counter = None
        if not counts.per_layer:
            return
        self.last[stage] = counts
        values = {"ops_ac": counts.ac, "ops_mac": counts.mac, "energy_uj": energy_pj(counts, self.e_ac, self.e_mac) * 1e-6,
                  "fr_mean": counts.mean_firing_rate}
        for key, value in values.items():
            pl_module.log(f"{stage}/{key}", float(value), on_epoch=True, sync_dist=True)

    def _stop(self) -> None:
        if self.counter is not None:
            self.counter.detach()
            self.counter = None

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._stop()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._stop()

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start("val", trainer, pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch_end()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._end("val", pl_module)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start("test", trainer, pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch_end()

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._end("test", pl_module)
