"""conv → BatchNorm fusion for inference gives the same logits."""
import pytest
import torch
from torch import nn

from snn_lightning.export import fold_thresholds, fuse_conv_norm
from snn_lightning.models import create_model
from snn_lightning.norm.layers import TDBN, TEBN, PerFrameBN

CASES = [
    ("small_cnn", 1, 8, "tdbn"),
    ("small_cnn", 1, 8, "bn"),
    ("small_cnn", 1, 8, "tebn"),
    ("resnet19", 3, 8, "tdbn"),
    ("cnn7", 3, 16, "tdbn"),
    ("sew_resnet34", 3, 32, "tdbn"),
]


def trained(name, cin, size, norm):
    torch.manual_seed(0)
    extra = {"input_size": size} if name == "cnn7" else {}
    net = create_model(name, num_classes=5, in_channels=cin, T=2, norm=norm,
                       neuron={"v_threshold": 0.5, "backend": "torch"}, **extra).double()
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        net.train()
        for _ in range(3):
            net(torch.randn(4, cin, size, size, dtype=torch.float64))
    return net.eval()


@pytest.mark.parametrize("name,cin,size,norm", CASES)
def test_fused_logits_equal(name, cin, size, norm):
    net = trained(name, cin, size, norm)
    fused = fuse_conv_norm(net)
    x = torch.randn(3, cin, size, size, dtype=torch.float64)
    assert torch.allclose(fused(x), net(x), atol=1e-9)
    left = [m for m in fused.modules() if isinstance(m, (TDBN, PerFrameBN)) and not isinstance(m, TEBN)]
    assert not left  # every tdBN/BN after a conv was fused
    if norm == "tebn":
        assert any(isinstance(m, TEBN) for m in fused.modules())  # time-dependent: kept


def test_fuse_then_fold_binary_spikes():
    net = trained("resnet19", 3, 8, "tdbn")
    deployed = fold_thresholds(fuse_conv_norm(net))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    assert torch.allclose(deployed(x), net(x), atol=1e-9)
