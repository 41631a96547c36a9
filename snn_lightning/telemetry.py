"""Gradient telemetry of spiking layers: where the surrogate gradient flows, per layer and timestep (plain PyTorch).

What AS-SG, RS-SG and TrSG differ in is the backward pass (paper Eqs. 7, 9, 11), so the forward
statistics of ``snn_lightning.monitor`` cannot show it. :class:`GradientRecorder` reduces, on the
steps that record, inside hooks that keep nothing activation-sized:

* **surrogate-window occupancy** ``window[t]``: the share of neurons with f′(x[t]) > 0, x the SG
  argument of M[t] (Eq. 5 or 8) — the neurons through which any gradient can pass at step t. Read from
  the neuron's forward monitor, which every backend feeds (a surrogate with unbounded support, e.g.
  the sigmoid, has occupancy 1 everywhere);
* **‖∂L/∂M[t]‖ and ‖∂L/∂U[t]‖**, the gradient flow through time. Both come from one tensor hook on the
  neuron's *input* current I, so they work on every backend without touching the neuron: by Eq. 1,
  M[t] = (1 − 1/τ)·U[t−1] + I[t]/τ, and I[t] enters nothing else, hence ∂L/∂M[t] = τ·∂L/∂I[t]; U[t]
  enters only M[t+1], hence ∂L/∂U[t] = (1 − 1/τ)·∂L/∂M[t+1] = (τ − 1)·∂L/∂I[t+1] for t < T. (U[T] feeds
  only the MP-Init statistic, which is detached, so ∂L/∂U[T] = 0 unless the state is carried.) Norms
  are the root of the summed squares over every recorded backward pass;
* **∂L/∂V_thr and ∂L/∂τ** of each layer and their size relative to the parameter, |∂L/∂V_thr|·/V_thr and
  |∂L/∂τ|/τ, read from the raw parameters' ``.grad`` by the chain rule: V_thr = softplus(θ) gives
  ∂L/∂V_thr = ∂L/∂θ / sigmoid(θ); τ = 1/sigmoid(w) gives dτ/dw = −(τ − 1), so ∂L/∂τ = −∂L/∂w / (τ − 1).
  TrSG makes ∂L/∂M independent of V_thr (Eq. 11), which the relative size shows across layers.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .errors import InvalidValue
from .neurons import LIF
from .neurons import functional as F


def window_occupancy_sums(lif: LIF, m_seq: torch.Tensor) -> torch.Tensor:
    """Per-timestep count of neurons whose surrogate derivative is positive: ``[T]`` (float64)."""
    m = m_seq if m_seq.dtype == torch.float64 else m_seq.float()  # half precision would blur the window's edge
    x = F.sg_argument(m, lif.v_threshold.detach().to(m.dtype), lif.sg_mode)
    return (lif.surrogate.derivative(x) > 0).reshape(m_seq.shape[0], -1).sum(dim=1, dtype=torch.float64)


def grad_sq_sums(grad: torch.Tensor) -> torch.Tensor:
    """Per-timestep sum of squares of a ``[T, B, ...]`` gradient: ``[T]`` (float64)."""
    g = grad.reshape(grad.shape[0], -1)
    dtype = torch.float64 if g.dtype == torch.float64 else torch.float32
    return torch.linalg.vector_norm(g, dim=1, dtype=dtype).double().square()


def parameter_gradients(lif: LIF) -> dict[str, float]:
    """∂L/∂V_thr and ∂L/∂τ from the raw parameters' ``.grad`` (NaN where a parameter is frozen or has no grad)."""
    out = {"v_threshold": math.nan, "v_threshold_rel": math.nan, "tau": math.nan, "tau_rel": math.nan}
    vals = []
    raw_thr, raw_tau = lif.raw_threshold, lif.raw_tau
    g_thr = raw_thr.grad if isinstance(raw_thr, torch.nn.Parameter) else None
    g_tau = raw_tau.grad if isinstance(raw_tau, torch.nn.Parameter) else None
    nan = torch.tensor(math.nan, dtype=torch.float64)
    with torch.no_grad():
        v_thr = F.v_threshold_from_raw(raw_thr.detach().double())
        tau = F.tau_from_raw(raw_tau.detach().double())
        d_thr = g_thr.double() / torch.sigmoid(raw_thr.detach().double()) if g_thr is not None else nan.to(v_thr.device)
        d_tau = -g_tau.double() / (tau - 1.0) if g_tau is not None else nan.to(tau.device)
        vals = torch.stack([d_thr, d_thr.abs() / v_thr, d_tau, d_tau.abs() / tau]).cpu().tolist()
    return dict(zip(out, vals))


class GradientRecorder:
    """Installs the telemetry hooks on chosen LIF layers while attached; ``summary()`` gives plain numbers.

    ``attach()`` before the forward of a recorded step, ``record_parameters()`` after its backward (before
    the optimizer zeroes the grads), ``detach()`` after the backward (it removes the hooks a forward left
    on its input tensors); ``reset()`` starts a new recording. The forward
    monitor is chained: a monitor already installed (e.g. a ``NeuronRecorder``'s) keeps being called.
    """

    def __init__(self, layers: Iterable[tuple[str, LIF]]):
        self.layers = list(layers)
        names = [n for n, _ in self.layers]
        if len(set(names)) != len(names):
            raise InvalidValue("neuron layer names must be unique")
        self._handles: list = []
        self._tensor_hooks: list = []
        self._wrappers: dict[str, object] = {}
        self._window: dict[str, torch.Tensor] = {}
        self._count: dict[str, torch.Tensor] = {}
        self._grad_sq: dict[str, torch.Tensor] = {}
        self._tau: dict[str, float] = {}
        self._params: dict[str, dict[str, float]] = {}
        self.backward_calls = 0

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> None:
        if self.attached:
            return
        for name, lif in self.layers:
            self._handles.append(lif.register_forward_pre_hook(self._make_input_hook(name)))
            self._wrappers[name] = wrapper = self._make_monitor(name, lif.monitor)
            lif.monitor = wrapper

    def detach(self) -> None:
        for h in self._handles + self._tensor_hooks:
            h.remove()
        self._handles.clear()
        self._tensor_hooks.clear()
        for name, lif in self.layers:
            wrapper = self._wrappers.pop(name, None)
            if wrapper is not None and lif.monitor is wrapper:
                lif.monitor = wrapper.previous  # someone who wrapped us later restores their own saved monitor
            elif wrapper is not None:
                wrapper.active = False  # left in a chain: only pass through from now on

    def reset(self) -> None:
        self._window.clear()
        self._count.clear()
        self._grad_sq.clear()
        self._params.clear()
        self.backward_calls = 0

    # -- hooks -------------------------------------------------------------------------------
    def _make_monitor(self, name: str, previous):
        recorder = self

        @torch.compiler.disable
        def monitor(lif: LIF, m_seq: torch.Tensor, s_seq: torch.Tensor) -> None:
            if monitor.previous is not None:
                monitor.previous(lif, m_seq, s_seq)
            if monitor.active:
                with torch.no_grad():
                    recorder._add(recorder._window, name, window_occupancy_sums(lif, m_seq))
                    n = torch.full((m_seq.shape[0],), m_seq[0].numel(), dtype=torch.float64, device=m_seq.device)
                    recorder._add(recorder._count, name, n)

        monitor.previous = previous
        monitor.active = True
        return monitor

    def _make_input_hook(self, name: str):
        def pre_hook(lif: LIF, args):
            x = args[0]
            if not (torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad):
                return None
            self._tau[name] = float(lif.tau.detach())  # one host read per recorded call, not per element

            def grad_hook(grad: torch.Tensor) -> None:
                with torch.no_grad():
                    self._add(self._grad_sq, name, grad_sq_sums(grad))
                    self.backward_calls += 1

            # a tensor keeps its hooks: remembered so detach() removes them (a later backward through x
            # must not count again)
            self._tensor_hooks.append(x.register_hook(grad_hook))
            return None

        return pre_hook

    @staticmethod
    def _add(store: dict, name: str, value: torch.Tensor) -> None:
        acc = store.get(name)
        if acc is None or acc.shape != value.shape:
            store[name] = value.clone()
        else:
            acc.add_(value)

    def record_parameters(self) -> None:
        """Read ∂L/∂V_thr and ∂L/∂τ of every layer now (after backward, before ``zero_grad``)."""
        for name, lif in self.layers:
            self._params[name] = parameter_gradients(lif)

    # -- results -----------------------------------------------------------------------------
    def summary(self) -> dict[str, dict]:
        """Per layer: ``window`` [T], ``m_norm`` [T], ``u_norm`` [T−1] and the parameter gradients.

        Layers that saw no recorded forward (or backward) are left out of the corresponding keys.
        """
        out: dict[str, dict] = {}
        for name, _ in self.layers:
            st: dict = {}
            if name in self._window:
                st["window"] = (self._window[name] / self._count[name]).tolist()
            if name in self._grad_sq:
                tau = self._tau[name]
                norm_i = self._grad_sq[name].sqrt()
                st["m_norm"] = (norm_i * tau).tolist()
                st["u_norm"] = (norm_i[1:] * (tau - 1.0)).tolist()
            if name in self._params:
                st.update(self._params[name])
            if st:
                out[name] = st
        return out


def gradient_pass(net, batches, loss_fn, layers=None) -> dict[str, dict]:
    """Telemetry of a trained network: forward and backward on ``batches`` (``(x, y)`` pairs, time-major
    x as the network takes it) in eval mode — BatchNorm and MP-Init statistics fixed, no optimizer step —
    with ``loss_fn(logits, y)``. The parameters' ``.grad`` are left as they were found. Returns the
    :meth:`GradientRecorder.summary`, with the parameter gradients summed over the batches."""
    params = [p for p in net.parameters() if p.requires_grad]
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    was_training = net.training
    rec = GradientRecorder(layers if layers is not None else net.neuron_layers())
    rec.attach()
    try:
        net.eval()
        with torch.enable_grad():
            for x, y in batches:
                loss_fn(net(x), y).backward()
        rec.record_parameters()
    finally:
        rec.detach()
        net.train(was_training)
        for p, g in zip(params, saved):
            p.grad = g
    if rec.backward_calls == 0:
        raise InvalidValue("gradient_pass got no batch (or no input that requires a gradient)")
    return rec.summary()


def gradient_metrics(summary: dict[str, dict]) -> dict[str, float]:
    """Flat metric dict: ``neuron/<layer>/window_t<t>``, ``grad/<layer>/{m_norm,u_norm}_t<t>`` and
    ``grad/<layer>/{v_threshold,v_threshold_rel,tau,tau_rel}`` (frozen parameters left out)."""
    out: dict[str, float] = {}
    for layer, st in summary.items():
        for t, v in enumerate(st.get("window", ()), start=1):
            out[f"neuron/{layer}/window_t{t}"] = float(v)
        for key in ("m_norm", "u_norm"):
            for t, v in enumerate(st.get(key, ()), start=1):
                out[f"grad/{layer}/{key}_t{t}"] = float(v)
        for key in ("v_threshold", "v_threshold_rel", "tau", "tau_rel"):
            if key in st and not math.isnan(st[key]):
                out[f"grad/{layer}/{key}"] = float(st[key])
    return out


__all__ = ["GradientRecorder", "gradient_metrics", "gradient_pass", "grad_sq_sums", "parameter_gradients", "window_occupancy_sums"]
