"""Membrane and spike statistics of LIF layers, reduced inside the neuron's monitor (plain PyTorch).

Why reduce inside the neuron's monitor: the pre-fire membrane M[1..T] of every layer is as large as
the activations themselves. :class:`NeuronRecorder` turns each call into a few per-timestep sums
(a ``[7, T]`` vector per layer: sums, sums of squares, counts, spikes) added to a float64
accumulator on the same device, so nothing activation-sized outlives the forward, nothing is copied
to the host until a summary is asked for, and a step that does not record pays nothing because the
monitor is only installed around the steps that do.

Active neuron: a (sample, neuron) pair that fired at least once in the T steps of that sample
(the paper's Sec. 3.2 and Fig. 1); silent pairs are excluded from the ``*_active`` statistics.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import math

import torch

from .._checks import positive_int
from ..errors import InvalidValue
from ..neurons import LIF
from ._dist import all_reduce_stores, is_distributed

# rows of one layer's accumulator (each a length-T vector)
SUM_ALL, SQ_ALL, SUM_ACT, SQ_ACT, SPIKES, N_ALL, N_ACT = range(7)


def batch_reduction(m_seq: torch.Tensor, s_seq: torch.Tensor) -> torch.Tensor:
    """Per-timestep sums of one ``[T, B, ...]`` call as a ``[7, T]`` tensor (rows: see module top).

    ``N_ALL``/``N_ACT`` are counts of (sample, neuron) pairs (the same for every t). Written as
    sums over ``[T, B·N]`` rows and matrix-vector products with the active mask, which needs a
    single temporary of the input's size (M²).
    """
    T, B = m_seq.shape[:2]
    m = m_seq.reshape(T, -1).float()
    s = s_seq.reshape(T, -1).to(m.dtype)
    active = s.view(T, B, -1).amax(dim=0).reshape(-1)  # [B·N]: 1 where the pair fired at least once
    sq = m * m
    out = torch.empty(7, T, dtype=m.dtype, device=m.device)
    out[SUM_ALL] = m.sum(dim=1)
    out[SQ_ALL] = sq.sum(dim=1)
    out[SUM_ACT] = m @ active
    out[SQ_ACT] = sq @ active
    out[SPIKES] = s.sum(dim=1)
    out[N_ALL] = float(m.shape[1])
    out[N_ACT] = active.sum()
    return out


def batch_histogram(m_seq: torch.Tensor, s_seq: torch.Tensor, lo: float, hi: float, bins: int) -> torch.Tensor:
    """Fixed-bin counts ``[T, bins]`` of M[t] over active pairs; values outside [lo, hi] are dropped."""
    T, B = m_seq.shape[:2]
    m = m_seq.reshape(T, -1).float()
    active = s_seq.reshape(T, B, -1).amax(dim=0).reshape(-1) > 0
    if not (math.isfinite(lo) and math.isfinite(hi)):  # a range scaled by a V_thr that went non-finite
        return torch.zeros(T, bins, dtype=torch.long, device=m_seq.device)
    sel = m[:, active]
    # non-finite membranes are left out: a run going NaN must be reported by the non-finite check, not crash here
    return torch.stack([torch.histc(row[torch.isfinite(row)], bins, lo, hi) for row in sel]).round_().long()


def moments(total: torch.Tensor, sq: torch.Tensor, n: torch.Tensor) -> tuple[list[float], list[float]]:
    """Mean and (population) std per t from sums; NaN where the count is 0."""
    mean = total / n
    var = (sq / n - mean * mean).clamp_min(0.0)
    nan = torch.full_like(mean, float("nan"))
    ok = n > 0
    return torch.where(ok, mean, nan).tolist(), torch.where(ok, var.sqrt(), nan).tolist()


class NeuronRecorder:
    """Installs monitors on chosen LIF layers and accumulates per-layer, per-timestep statistics.

    ``attach()`` installs, ``detach()`` removes (restoring whatever monitor was there before),
    ``reset()`` zeroes the accumulators, ``summary()`` returns plain Python numbers. Histograms of
    M[t] (active pairs) are kept for ``hist_layers``, with edges ``hist_range`` (relative to each
    layer's V_thr when ``hist_relative``, fixed when the recording starts), from at most
    ``hist_max_samples`` samples of each batch (all when None).
    """

    def __init__(
        self,
        layers: Iterable[tuple[str, LIF]],
        hist_layers: Sequence[str] = (),
        hist_bins: int = 64,
        hist_range: Sequence[float] = (-2.0, 2.0),
        hist_relative: bool = True,
        hist_max_samples: int | None = None,
    ):
        self.layers = list(layers)
        names = [n for n, _ in self.layers]
        if len(set(names)) != len(names):
            raise InvalidValue(f"neuron layer names must be unique, got {names}")
        unknown = [h for h in hist_layers if h not in names]
        if unknown:
            raise InvalidValue(f"unknown neuron layer {unknown[0]!r} for histograms; allowed: {', '.join(names)}")
        lo, hi = (float(v) for v in hist_range)
        if not hi > lo:
            raise InvalidValue(f"hist_range must be [low, high] with high > low, got {list(hist_range)!r}")
        self.hist_layers = set(hist_layers)
        self.hist_bins = positive_int("hist_bins", hist_bins)
        self.hist_range = (lo, hi)
        self.hist_relative = bool(hist_relative)
        self.hist_max_samples = None if hist_max_samples is None else positive_int("hist_max_samples", hist_max_samples)
        self._acc: dict[str, torch.Tensor] = {}
        self._hist: dict[str, torch.Tensor] = {}
        self._edges: dict[str, tuple[float, float]] = {}
        self._saved: dict[str, object] = {}
        self.calls = 0

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.layers]

    @property
    def attached(self) -> bool:
        return bool(self._saved)

    # -- installing ---------------------------------------------------------------------------
    def attach(self) -> None:
        if self.attached:
            return
        for name, lif in self.layers:
            self._saved[name] = lif.monitor
            lif.monitor = self._make_monitor(name)

    def detach(self) -> None:
        for name, lif in self.layers:
            if name in self._saved:
                lif.monitor = self._saved.pop(name)
        self._saved.clear()

    def reset(self) -> None:
        self._acc.clear()
        self._hist.clear()
        self._edges.clear()
        self.calls = 0

    def _make_monitor(self, name: str):
        want_hist = name in self.hist_layers

        def monitor(lif: LIF, m_seq: torch.Tensor, s_seq: torch.Tensor) -> None:
            with torch.no_grad():
                self._add(name, lif, m_seq, s_seq, want_hist)

        # under torch.compile the monitor runs eagerly (a clean graph break), never traced
        return torch.compiler.disable(monitor)

    def _add(self, name: str, lif: LIF, m_seq: torch.Tensor, s_seq: torch.Tensor, want_hist: bool) -> None:
        red = batch_reduction(m_seq, s_seq).double()
        acc = self._acc.get(name)
        if acc is None or acc.shape != red.shape:
            self._acc[name] = red
        else:
            acc.add_(red)
        self.calls += 1
        if want_hist:
            if name not in self._edges:
                lo, hi = self.hist_range
                if self.hist_relative:
                    v = float(lif.v_threshold.detach())
                    lo, hi = lo * v, hi * v
                self._edges[name] = (lo, hi)
            lo, hi = self._edges[name]
            if self.hist_max_samples is not None:  # a subsample of each batch is plenty for a histogram
                m_seq, s_seq = m_seq[:, : self.hist_max_samples], s_seq[:, : self.hist_max_samples]
            counts = batch_histogram(m_seq, s_seq, lo, hi, self.hist_bins)
            h = self._hist.get(name)
            if h is None or h.shape != counts.shape:
                self._hist[name] = counts
            else:
                h.add_(counts)

    # -- reading ------------------------------------------------------------------------------
    def all_reduce(self) -> None:
        """Sum the accumulators across processes (every rank must call it at the same point)."""
        if is_distributed():
            all_reduce_stores((self._acc, self._hist))

    def summary(self) -> dict[str, dict]:
        """Per layer: ``v_mean``, ``v_std``, ``v_mean_active``, ``v_std_active``, ``fr`` (lists over t),
        ``active_fraction``, ``mp_init``, ``v_threshold``, ``tau`` and ``neurons`` (pairs per call)."""
        out: dict[str, dict] = {}
        names = [n for n in self.names if n in self._acc]
        if not names:
            return out
        params = [p for n, lif in self.layers if n in self._acc for p in (lif.mp_init_mean, lif.v_threshold, lif.tau)]
        flat = torch.stack([p.detach().double().reshape(()).to(self._acc[names[0]].device) for p in params])
        cpu = torch.cat([self._acc[n].reshape(-1) for n in names] + [flat]).cpu()
        T_of = {n: self._acc[n].shape[1] for n in names}
        i = 0
        accs = {}
        for n in names:
            size = 7 * T_of[n]
            accs[n] = cpu[i : i + size].view(7, T_of[n])
            i += size
        par = cpu[i:].view(-1, 3).tolist()
        for k, n in enumerate(names):
            a = accs[n]
            v_mean, v_std = moments(a[SUM_ALL], a[SQ_ALL], a[N_ALL])
            v_mean_act, v_std_act = moments(a[SUM_ACT], a[SQ_ACT], a[N_ACT])
            n_all = float(a[N_ALL, 0])
            out[n] = {
                "v_mean": v_mean,
                "v_std": v_std,
                "v_mean_active": v_mean_act,
                "v_std_active": v_std_act,
                "fr": (a[SPIKES] / max(n_all, 1.0)).tolist(),
                "active_fraction": float(a[N_ACT, 0]) / max(n_all, 1.0),
                "neurons": n_all,
                "mp_init": par[k][0],
                "v_threshold": par[k][1],
                "tau": par[k][2],
            }
        return out

    def histograms(self) -> dict[str, dict]:
        """Per histogram layer: ``counts`` ``[T][bins]`` (ints) and ``edges`` (bins + 1 floats)."""
        out = {}
        for name, h in self._hist.items():
            lo, hi = self._edges[name]
            edges = torch.linspace(lo, hi, self.hist_bins + 1, dtype=torch.float64).tolist()
            out[name] = {"counts": h.cpu().tolist(), "edges": edges}
        return out

    def tensors_held(self) -> int:
        """How many tensors the recorder keeps (for leak checks): one per layer (+ one per histogram)."""
        return len(self._acc) + len(self._hist)
