"""Monitors of a spiking network: reductions behind the observability callbacks and `snn-analyze` (plain PyTorch).

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

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from .neurons import LIF

# rows of one layer's accumulator (each a length-T vector)
SUM_ALL, SQ_ALL, SUM_ACT, SQ_ACT, SPIKES, N_ALL, N_ACT = range(7)


def find_neuron_layers(module: nn.Module) -> list[tuple[str, LIF]]:
    """(name, LIF) for every neuron layer in forward order, named relative to the network.

    A LightningModule with ``.net`` is searched through its network, so the names are the stable
    qualified names of the backbone (``stem.lif``, ``body.0.lif``, ``layer1.0.sn1`` …).
    """
    net = getattr(module, "net", module)
    if hasattr(net, "neuron_layers"):
        return list(net.neuron_layers())
    return [(name or "neuron", m) for name, m in net.named_modules() if isinstance(m, LIF)]


def pick_layers(names: Sequence[str], spec, default_count: int = 1) -> list[str]:
    """Resolve a layer choice: ``"auto"`` (``default_count`` evenly spaced layers; the middle one
    for 1), ``"all"``, ``None``/``[]`` (none), an int n (n evenly spaced layers), a name, or a list.
    Unknown names raise ValueError listing the allowed ones."""
    names = list(names)
    if spec is None or spec == [] or spec == "none" or not names:
        return []
    if spec == "all":
        return names
    if spec == "auto":
        spec = int(default_count)
    if isinstance(spec, bool):
        raise ValueError(f"layer choice must be 'auto', 'all', a count, a name or a list of names, got {spec!r}")
    if isinstance(spec, int):
        n = min(max(spec, 0), len(names))
        if n == 0:
            return []
        if n == 1:
            return [names[(len(names) - 1) // 2]]
        idx = sorted({round(i * (len(names) - 1) / (n - 1)) for i in range(n)})
        return [names[i] for i in idx]
    if isinstance(spec, str):
        spec = [spec]
    chosen = [str(s) for s in spec]
    unknown = [s for s in chosen if s not in names]
    if unknown:
        raise ValueError(f"unknown neuron layer {unknown[0]!r}; allowed: {', '.join(names)}")
    return chosen


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
    sel = m[:, active]
    return torch.stack([torch.histc(sel[t], bins, lo, hi) for t in range(T)]).round_().long()


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
            raise ValueError("neuron layer names must be unique")
        unknown = [h for h in hist_layers if h not in names]
        if unknown:
            raise ValueError(f"unknown neuron layer {unknown[0]!r} for histograms; allowed: {', '.join(names)}")
        lo, hi = (float(v) for v in hist_range)
        if not hi > lo:
            raise ValueError(f"hist_range must be [low, high] with high > low, got {list(hist_range)!r}")
        if int(hist_bins) < 1:
            raise ValueError(f"hist_bins must be a positive integer, got {hist_bins!r}")
        self.hist_layers = set(hist_layers)
        self.hist_bins = int(hist_bins)
        self.hist_range = (lo, hi)
        self.hist_relative = bool(hist_relative)
        if hist_max_samples is not None and int(hist_max_samples) < 1:
            raise ValueError(f"hist_max_samples must be a positive integer or None, got {hist_max_samples!r}")
        self.hist_max_samples = int(hist_max_samples) if hist_max_samples is not None else None
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
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return
        for store in (self._acc, self._hist):
            for key in sorted(store):
                dist.all_reduce(store[key])

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


def layer_parameters(layers: Iterable[tuple[str, LIF]]) -> dict[str, dict[str, float]]:
    """MP-Init running mean, V_thr and τ of each layer, read with one device-to-host copy."""
    layers = list(layers)
    if not layers:
        return {}
    params = [p.detach().float().reshape(()) for _, lif in layers for p in (lif.mp_init_mean, lif.v_threshold, lif.tau)]
    vals = torch.stack(params).cpu().view(-1, 3).tolist()
    return {n: {"mp_init": v[0], "v_threshold": v[1], "tau": v[2]} for (n, _), v in zip(layers, vals)}


def neuron_metrics(summary: dict[str, dict], prefix: str = "neuron", params: bool = True) -> dict[str, float]:
    """Flat metric dict: ``<prefix>/<layer>/{fr,v_mean,v_std,v_mean_active,v_std_active}_t<t>``,
    ``<prefix>/<layer>/active_frac`` (share of (sample, neuron) pairs that fired at least once) and,
    with ``params``, ``mp_init/<layer>``, ``v_threshold/<layer>``, ``tau/<layer>``."""
    out: dict[str, float] = {}
    for layer, st in summary.items():
        for key in ("fr", "v_mean", "v_std", "v_mean_active", "v_std_active"):
            for t, v in enumerate(st[key], start=1):
                out[f"{prefix}/{layer}/{key}_t{t}"] = float(v)
        out[f"{prefix}/{layer}/active_frac"] = float(st["active_fraction"])
        if params:
            for key in ("mp_init", "v_threshold", "tau"):
                out[f"{key}/{layer}"] = float(st[key])
    return out


def drift(summary: dict[str, dict]) -> dict:
    """Temporal drift |E[M[1]] − E[M[T]]| per layer over active pairs and over all, and the means over layers."""
    per_layer = {}
    for layer, st in summary.items():
        a, b = st["v_mean_active"], st["v_mean"]
        per_layer[layer] = {"active": abs(a[0] - a[-1]), "all": abs(b[0] - b[-1])}

    def mean(key):
        vals = [d[key] for d in per_layer.values() if not math.isnan(d[key])]
        return sum(vals) / len(vals) if vals else float("nan")

    return {"per_layer": per_layer, "mean_active": mean("active"), "mean_all": mean("all")}


def overall_firing_rate(summary: dict[str, dict]) -> list[float]:
    """Firing rate per t over every neuron of every layer (weighted by layer size)."""
    if not summary:
        return []
    T = len(next(iter(summary.values()))["fr"])
    total = sum(st["neurons"] for st in summary.values())
    return [sum(st["fr"][t] * st["neurons"] for st in summary.values()) / max(total, 1.0) for t in range(T)]


class PredictionRecorder:
    """Class-prediction histograms and accuracy at every timestep, plus logits of a few classes for PCA.

    ``instant``: the prediction from the logits of step t alone; ``cumulative``: from the mean of
    logits 1..t (an early exit at t, the module's ``acc_t<t>``). Counts live on the logits' device.
    """

    def __init__(self, num_classes: int | None = None, pca_classes: int | Sequence[int] | None = 4, pca_max_samples: int = 256):
        self.num_classes = num_classes
        self.pca_classes = pca_classes
        self.pca_max_samples = int(pca_max_samples)
        self.reset()

    def reset(self) -> None:
        self.counts: dict[str, torch.Tensor] = {}
        self.correct: dict[str, torch.Tensor] = {}
        self.total = 0
        self._pca: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._pca_n = 0

    def _classes(self, K: int) -> list[int]:
        spec = self.pca_classes
        if not spec:
            return []
        if isinstance(spec, int):
            return list(range(min(spec, K)))
        return [int(c) for c in spec if 0 <= int(c) < K]

    @torch.no_grad()
    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        logits = logits.detach()
        T, B, K = logits.shape
        if self.num_classes is None:
            self.num_classes = K
        steps = torch.arange(1, T + 1, device=logits.device, dtype=logits.dtype).view(T, 1, 1)
        preds = {"instant": logits.argmax(-1), "cumulative": (logits.cumsum(0) / steps).argmax(-1)}
        for mode, p in preds.items():
            c = torch.zeros(T, K, dtype=torch.long, device=logits.device)
            c.scatter_add_(1, p, torch.ones_like(p))
            ok = (p == y.view(1, B)).sum(1)
            if mode in self.counts:
                self.counts[mode] += c
                self.correct[mode] += ok
            else:
                self.counts[mode], self.correct[mode] = c, ok
        self.total += B
        classes = self._classes(K)
        if classes and self._pca_n < self.pca_max_samples:
            keep = torch.isin(y, torch.tensor(classes, device=y.device))
            idx = keep.nonzero().flatten()[: self.pca_max_samples - self._pca_n]
            if idx.numel():
                self._pca.append((logits[:, idx].float().clone(), y[idx].clone()))
                self._pca_n += idx.numel()

    def all_reduce(self) -> None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return
        for store in (self.counts, self.correct):
            for key in sorted(store):
                dist.all_reduce(store[key])
        n = torch.tensor(float(self.total), device=next(iter(self.counts.values())).device if self.counts else "cpu")
        dist.all_reduce(n)
        self.total = int(n.item())

    def summary(self) -> dict:
        """``counts`` {mode: [T][K]}, ``accuracy`` {mode: [T]}, ``entropy`` {mode: [T]} (normalized
        entropy of the prediction distribution: 1 = balanced, 0 = one class), ``samples``."""
        out = {"counts": {}, "accuracy": {}, "entropy": {}, "samples": self.total}
        for mode, c in self.counts.items():
            c = c.cpu()
            out["counts"][mode] = c.tolist()
            out["accuracy"][mode] = (self.correct[mode].cpu().double() / max(self.total, 1)).tolist()
            out["entropy"][mode] = normalized_entropy(c)
        return out

    def pca(self) -> dict | None:
        """Per-timestep 2-D PCA of the collected logits: ``points`` [T][n][2], ``labels`` [n],
        ``explained`` [T][2] (fraction of variance). None when nothing was collected."""
        if not self._pca:
            return None
        logits = torch.cat([l.cpu() for l, _ in self._pca], dim=1)  # [T, n, K]
        labels = torch.cat([y.cpu() for _, y in self._pca])
        points, explained = [], []
        for t in range(logits.shape[0]):
            p, e = pca_2d(logits[t])
            points.append(p.tolist())
            explained.append(e.tolist())
        return {"points": points, "labels": labels.tolist(), "explained": explained}


def normalized_entropy(counts: torch.Tensor) -> list[float]:
    """Entropy of each row's distribution divided by log K."""
    c = counts.double()
    p = c / c.sum(-1, keepdim=True).clamp_min(1.0)
    h = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
    K = counts.shape[-1]
    return (h / math.log(K)).tolist() if K > 1 else [0.0] * counts.shape[0]


def pca_2d(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project rows of ``x`` [n, d] onto their first two principal components (SVD of the centred
    data, signs fixed so the largest loading is positive); returns points [n, 2] and the fraction
    of variance each explains."""
    x = x.double()
    xc = x - x.mean(0, keepdim=True)
    n, d = xc.shape
    if n == 0:
        return torch.zeros(0, 2), torch.zeros(2)
    _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    k = min(2, vh.shape[0])
    comps = vh[:k]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True))).clamp_min(0) * 2 - 1
    comps = comps * signs
    pts = xc @ comps.T
    var = s**2
    frac = var[:k] / var.sum().clamp_min(1e-300)
    if k < 2:
        pts = torch.cat([pts, torch.zeros(n, 2 - k, dtype=pts.dtype)], 1)
        frac = torch.cat([frac, torch.zeros(2 - k, dtype=frac.dtype)])
    return pts.float(), frac.float()
