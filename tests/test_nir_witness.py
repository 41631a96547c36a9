"""A peer's NIR importer as a witness: snnTorch runs our hard-reset export and gives our spikes and logits.

What agrees and where snnTorch's semantics differ is recorded here as assertions (README "Export").
snnTorch (with nirtorch) is in the ``dev`` extra.
"""
import copy

import pytest
import torch

from snn_lightning.export import fold_thresholds, to_nir

from export_models import T, trained_like  # noqa: E402

from snntorch.import_nir import import_from_nir  # noqa: E402
from snntorch.utils import reset as snntorch_reset  # noqa: E402


def zero_v_init(model):
    """snnTorch starts every neuron at 0: our MP-Init U[0] must be 0 for the spikes to agree."""
    model = copy.deepcopy(model)
    for _, m in model.neuron_layers():
        m.mp_init_mean.zero_()
    return model


def ours(model, x):
    """Per-step logits and every neuron's 0/1 spikes of the folded model."""
    folded = fold_thresholds(model)
    spikes = []
    hooks = [m.register_forward_hook(lambda mod, i, o: spikes.append(o)) for _, m in folded.neuron_layers()]
    with torch.no_grad():
        y = folded(x)
    for h in hooks:
        h.remove()
    return y, spikes


def peers(graph, x):
    """snnTorch's import of ``graph`` run step by step on one sample at a time (see the Flatten note)."""
    net = import_from_nir(graph)
    leaky = [m for m in net.modules() if type(m).__name__ == "Leaky"]
    logits, spikes = [], []
    for b in range(x.shape[0]):
        snntorch_reset(net)
        per_layer = [[] for _ in leaky]
        hooks = [m.register_forward_hook(lambda mod, i, o, k=k: per_layer[k].append(o.reshape(1, -1))) for k, m in enumerate(leaky)]
        steps = []
        with torch.no_grad():
            for _ in range(T):  # direct encoding: the same image at every step
                out, _state = net(x[b : b + 1])
                steps.append(out.reshape(1, -1))  # Flatten(0) also dropped the batch dim
        for h in hooks:
            h.remove()
        logits.append(torch.stack(steps))
        spikes.append([torch.stack(s) for s in per_layer])
    joined = [torch.cat([s[k] for s in spikes], dim=1) for k in range(len(leaky))]
    return torch.cat(logits, dim=1), joined


@pytest.mark.parametrize("name", ["small_cnn", "cnn7"])
def test_snntorch_gives_our_spikes_and_logits_for_a_hard_reset_export(name):
    model, cin, size = trained_like(name, neuron={"reset": "hard"}, dtype=torch.float32)
    model = zero_v_init(model)
    x = torch.randn(4, cin, size, size, generator=torch.Generator().manual_seed(0)) * 2
    ref, ref_spikes = ours(model, x)
    got, got_spikes = peers(to_nir(model, input_size=size), x)
    assert len(got_spikes) == len(ref_spikes) == len(model.neuron_layers())
    for a, b in zip(ref_spikes, got_spikes):
        assert a.flatten(2).shape == b.shape
        assert torch.equal(a.flatten(2), b)
    assert sum(bool(s.any()) for s in ref_spikes) == len(ref_spikes)  # every layer fired
    assert (got - ref).abs().max() < 1e-4
    assert ref.std(dim=1).max() > 1e-2


def test_where_snntorch_differs():
    """snnTorch 1.0 ignores v_init and soft reset (metadata), cannot import Scale nodes (residual
    shortcuts) and maps NIR Flatten dims onto the batched tensor (so one sample at a time)."""
    model, cin, size = trained_like("small_cnn", neuron={"reset": "hard"}, dtype=torch.float32)
    x = torch.randn(3, cin, size, size, generator=torch.Generator().manual_seed(1)) * 2
    assert any(float(m.mp_init_mean) != 0 for _, m in model.neuron_layers())
    ref, _ = ours(model, x)
    got, _ = peers(to_nir(model, input_size=size), x)
    assert (got - ref).abs().max() > 1e-2  # MP-Init's U[0] is lost: different logits

    soft, _, _ = trained_like("small_cnn", dtype=torch.float32)
    soft = zero_v_init(soft)
    ref, _ = ours(soft, x)
    got, _ = peers(to_nir(soft, input_size=size), x)
    assert (got - ref).abs().max() > 1e-2  # soft reset becomes reset-to-zero

    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        import_from_nir(to_nir(model, input_size=size))(x[:2])  # Flatten(0) merges the batch

    resnet, cin, size = trained_like("resnet19", neuron={"reset": "hard"}, dtype=torch.float32)
    with pytest.raises(ValueError, match="Scale"):
        import_from_nir(to_nir(resnet, input_size=size))
