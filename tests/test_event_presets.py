"""conf/experiment presets for DVS128 Gesture, N-MNIST and N-Caltech101: the recipe values they
promise, and that their data config builds the data module and a network that takes its frames."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers import compose_cfg
from snn_lightning.experiment import build_net

# (preset, data module, model, T, image size, classes, optimizer, lr, epochs, batch)
PRESETS = [
    ("dvs_gesture_resnet19_t16", "DVSGestureDataModule", "resnet19", 16, 64, 11, "Adam", 1e-3, 64, 16),
    ("nmnist_resnet19_t10", "NMNISTDataModule", "resnet19", 10, 34, 10, "Adam", 1e-3, 50, 64),
    ("ncaltech101_cnn7_t10", "NCaltech101DataModule", "cnn7", 10, 48, 101, "SGD", 0.02, 200, 64),
]


@pytest.mark.parametrize("row", PRESETS, ids=[r[0] for r in PRESETS])
def test_preset_recipe_and_its_data_module(row, tmp_path):
    name, dm_cls, model, T, size, k, opt, lr, epochs, batch = row
    cfg = compose_cfg(tmp_path, [f"experiment={name}"])
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.data._target_ == f"snn_lightning.data.{dm_cls}" and cfg.model.name == model
    assert (cfg.T, cfg.data.image_size, cfg.trainer.max_epochs, cfg.batch_size) == (T, size, epochs, batch)
    assert cfg.optimizer._target_ == f"torch.optim.{opt}" and cfg.optimizer.lr == lr
    if opt == "Adam":
        assert "momentum" not in cfg.optimizer  # Adam takes no momentum argument
    # the paper's method on top of every recipe
    assert cfg.neuron.mp_init is True and cfg.neuron.sg_mode == "trsg" and cfg.norm.kind == "tdbn"
    dm = instantiate(cfg.data, root=str(tmp_path / "data"), batch_size=2, T=cfg.T)
    assert type(dm).__name__ == dm_cls and (dm.num_classes, dm.input_size, dm.T) == (k, size, T)
    if dm_cls == "DVSGestureDataModule":
        assert dm.hflip == 0.0 and dm.train_transform().transforms  # a shift, never a flip
    net = build_net(cfg, dm)
    assert len(net.neuron_layers()) > 0


def test_the_cnn7_preset_takes_its_frame_size(tmp_path):
    cfg = compose_cfg(tmp_path, ["experiment=ncaltech101_cnn7_t10", "T=2"])
    dm = instantiate(cfg.data, root=str(tmp_path / "data"), batch_size=1, T=2)
    net = build_net(cfg, dm).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, 2, dm.input_size, dm.input_size))  # time-major [T, B, 2, S, S]
    assert out.shape == (2, 1, 101)
