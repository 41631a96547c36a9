"""Operation and energy counts of every evaluation epoch: ``val/ops_ac``, ``val/ops_mac``, ``val/energy_uj``, ``val/fr_mean`` (and ``test/…``)."""
from __future__ import annotations

from .._checks import positive_int
from ..energy import E_AC_PJ, E_MAC_PJ, OperationCounter, energy_pj
from ._base import StageCallback


class OperationCountCallback(StageCallback):
    """Counts AC and MAC operations per sample (``snn_lightning.energy``) on the module's own evaluation
    forwards — no extra forward — and logs ``<stage>/ops_ac``, ``<stage>/ops_mac`` and
    ``<stage>/energy_uj`` (µJ per sample at ``e_ac``/``e_mac`` pJ) at the end of each validation / test epoch,
    with ``<stage>/fr_mean``, the firing rate over every neuron that produced them (Fig. 8's x-axis).

    Logged through ``pl_module.log`` (averaged over ranks), so the numbers reach every logger and the
    run's final metrics (``metrics.json``, which ``snn-aggregate`` reads). Counted over the first
    ``max_batches`` batches of the epoch (all when None). The per-layer counts go to the stage data
    file (part ``operations``) and stay in ``self.last[stage]``.
    """

    def __init__(self, on_validation: bool = True, on_test: bool = True, max_batches: int | None = None,
                 e_ac: float = E_AC_PJ, e_mac: float = E_MAC_PJ, dirpath: str | None = None):
        super().__init__(on_validation, on_test, dirpath)
        self.max_batches = None if max_batches is None else positive_int("max_batches", max_batches)
        energy_pj({"ac": 0, "mac": 0}, e_ac, e_mac)  # validates the energies
        self.e_ac, self.e_mac = float(e_ac), float(e_mac)
        self.counter: OperationCounter | None = None
        self.last: dict[str, object] = {}
        self._batches = 0

    def eval_start(self, stage, trainer, pl_module):
        self.eval_stop()
        self.counter = OperationCounter(getattr(pl_module, "net", pl_module))
        self.counter.attach()
        self._batches = 0

    def eval_batch_end(self, stage, trainer, pl_module, outputs, batch) -> None:
        self._batches += 1
        if self.max_batches is not None and self._batches >= self.max_batches:
            self.counter.detach()

    def eval_end(self, stage, trainer, pl_module) -> None:
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
        self.write_stage(trainer, stage, operations={**counts.as_dict(), "energy_uj": values["energy_uj"],
                                                     "e_ac_pj": self.e_ac, "e_mac_pj": self.e_mac})

    def eval_stop(self) -> None:
        if self.counter is not None:
            self.counter.detach()
            self.counter = None
