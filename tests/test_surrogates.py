import math

import pytest
import torch

from snn_lightning.surrogates import ATan, Rectangular, Sigmoid, Triangular, build_surrogate, spike

SHAPES = [Rectangular(1.0), Rectangular(0.5), Triangular(1.0), Triangular(2.0), Sigmoid(4.0), Sigmoid(1.0), ATan(2.0)]


@pytest.mark.parametrize("sg", SHAPES, ids=lambda s: repr(s))
def test_hand_written_derivative_matches_autograd_of_primitive(sg):
    assert sg.self_check() < 1e-9


@pytest.mark.parametrize("sg", SHAPES, ids=lambda s: repr(s))
def test_spike_forward_is_heaviside_and_backward_is_derivative(sg):
    x = torch.tensor([-1.3, -0.2, 0.0, 0.1, 0.4, 2.0], dtype=torch.float64, requires_grad=True)
    s = spike(x, sg)
    assert s.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]  # strict: H(0) = 0
    g = torch.randn(6, dtype=torch.float64)
    (gx,) = torch.autograd.grad(s, x, g)
    assert torch.allclose(gx, g * sg.derivative(x.detach()))


def test_paper_formulas():
    x = torch.tensor([-0.6, -0.4, 0.0, 0.3, 0.49, 0.51], dtype=torch.float64)
    # rectangular (1/γ)1(|x| < γ/2), γ = 1
    assert Rectangular(1.0).derivative(x).tolist() == [0, 1, 1, 1, 1, 0]
    # triangular (1/γ²) max(0, γ − |x|), γ = 2
    assert torch.allclose(Triangular(2.0).derivative(x), (2 - x.abs()).clamp(min=0) / 4)
    s = torch.sigmoid(4 * x)
    assert torch.allclose(Sigmoid(4.0).derivative(x), 4 * s * (1 - s))
    # each integrates to 1 (a proper surrogate for the Dirac delta)
    grid = torch.linspace(-20, 20, 400001, dtype=torch.float64)
    for sg in SHAPES[:-1]:
        assert math.isclose(torch.trapezoid(sg.derivative(grid), grid).item(), 1.0, rel_tol=1e-3)


def test_build_surrogate_by_name_and_errors():
    assert isinstance(build_surrogate("Triangular"), Triangular)
    assert build_surrogate({"name": "sigmoid", "alpha": 2.0}).alpha == 2.0
    with pytest.raises(ValueError, match="unknown surrogate 'box'.*rectangular"):
        build_surrogate("box")
    with pytest.raises(ValueError, match="gamma"):
        Rectangular(-1.0)
