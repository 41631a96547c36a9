"""Data modules: digits, CIFAR-10/100, ImageNet, the registry and root resolution.

CIFAR and ImageNet run through the real torchvision readers on tiny files written in the exact
on-disk formats (tests/fakedata.py). CIFAR10-DVS lives in test_data_dvs.py.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

try:
    from tests import fakedata
except ImportError:  # tests/ is on sys.path (pytest rootdir-less import)
    import fakedata

from conftest import assert_one_line
from snn_lightning.config import CONF_DIR
from snn_lightning.data import (
    CIFAR10DataModule,
    CIFAR10DVSDataModule,
    CIFAR100DataModule,
    DatasetNotFoundError,
    DigitsDataModule,
    ImageNetDataModule,
)


def build_datamodule(name: str, **kwargs):
    """The data module ``conf/data/<name>.yaml`` selects (the config group is the one registry)."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    return get_class(OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml")._target_)(**kwargs)


DATAMODULES = {
    name: build_datamodule(name, root="/nonexistent/x", batch_size=2).__class__
    for name in ("digits", "cifar10", "cifar100", "imagenet", "cifar10_dvs")
}


# docs/reference.md §5.1 (written out here so a wrong constant in the package fails the tests)
CIFAR10_MEAN, CIFAR10_STD = (0.4913, 0.4821, 0.4465), (0.2470, 0.2434, 0.2615)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2673, 0.2564, 0.2762)


# ================================================================================================
# digits
# ================================================================================================
def test_digits_batch_shapes_labels_and_split_sizes():
    dm = DigitsDataModule(batch_size=16, seed=0)
    assert (dm.name, dm.num_classes, dm.in_channels, dm.input_size, dm.is_event) == ("digits", 10, 1, 8, False)
    dm.prepare_data()
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (16,) and y.dtype == torch.int64
    assert int(y.min()) >= 0 and int(y.max()) <= 9
    n_tr, n_va, n_te = len(dm.train_set), len(dm.val_set), len(dm.test_set)
    assert n_tr + n_va + n_te == 1797
    assert n_te == 270 and n_va == 270 and n_tr == 1257  # 15% / 15% (sklearn rounds test up)
    # disjoint and stratified: every class is in each split in proportion (within 2 samples)
    idx = dm.split_indices
    assert not set(idx["train"]) & set(idx["val"]) and not set(idx["train"]) & set(idx["test"])
    assert not set(idx["val"]) & set(idx["test"])
    from sklearn.datasets import load_digits

    labels = load_digits().target
    for split, frac in (("val", 0.15), ("test", 0.15)):
        counts = np.bincount(labels[idx[split]], minlength=10)
        expected = np.bincount(labels, minlength=10) * frac
        assert np.all(np.abs(counts - expected) <= 2), (split, counts, expected)
    # labels of the in-memory tensors are the real digits labels
    assert torch.equal(dm.test_set.y, torch.from_numpy(labels[idx["test"]]))
    xv, yv = next(iter(dm.val_dataloader()))
    assert xv.shape[1:] == (1, 8, 8) and torch.equal(yv, torch.from_numpy(labels[idx["val"][: len(yv)]]))


def test_digits_values_scaled_and_normalized_with_train_stats():
    from sklearn.datasets import load_digits

    dm = DigitsDataModule(batch_size=8, seed=3)
    dm.setup()
    raw = load_digits().images.astype(np.float32) / 16.0
    tr = raw[dm.split_indices["train"]]
    assert dm.mean == pytest.approx(float(tr.mean()), rel=1e-5)
    assert dm.std == pytest.approx(float(torch.from_numpy(tr).std()), rel=1e-5)
    assert float(dm.train_set.x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(dm.train_set.x.std()) == pytest.approx(1.0, abs=1e-4)
    j = int(dm.split_indices["test"][5])
    expected = (torch.from_numpy(raw[j]) - dm.mean) / dm.std
    assert torch.allclose(dm.test_set[5][0][0], expected, atol=1e-6)


def test_digits_resize_is_bilinear_to_image_size():
    from sklearn.datasets import load_digits

    dm = DigitsDataModule(batch_size=4, image_size=16)
    assert dm.input_size == 16
    dm.setup()
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 1, 16, 16)
    j = int(dm.split_indices["test"][0])
    img = torch.from_numpy(load_digits().images[j].astype(np.float32) / 16.0)[None, None]
    up = F.interpolate(img, size=(16, 16), mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(x[0, 0] * dm.std + dm.mean, up, atol=1e-5)


def test_digits_split_deterministic_per_seed():
    a, b, c = DigitsDataModule(batch_size=8, seed=1), DigitsDataModule(batch_size=8, seed=1), DigitsDataModule(batch_size=8, seed=2)
    for dm in (a, b, c):
        dm.setup()
    for k in ("train", "val", "test"):
        assert np.array_equal(a.split_indices[k], b.split_indices[k])
    assert not np.array_equal(a.split_indices["test"], c.split_indices["test"])
    # the shuffled training order is seeded too
    xa, ya = next(iter(a.train_dataloader()))
    xb, yb = next(iter(b.train_dataloader()))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # and it is a shuffle (not the stored order)
    assert not torch.equal(xa, a.train_set.x[: len(xa)])


def test_digits_val_fraction_zero_uses_test_split():
    dm = DigitsDataModule(batch_size=8, val_fraction=0.0, test_fraction=0.2)
    dm.setup()
    assert dm.val_set is dm.test_set
    assert len(dm.train_set) + len(dm.test_set) == 1797


def test_digits_augment_shifts_by_at_most_one_pixel():
    torch.manual_seed(0)
    dm = DigitsDataModule(batch_size=8, augment=True, image_size=8)
    dm.setup()
    base = dm.train_set.x[7]
    fill = dm.train_set.fill
    padded = F.pad(base, (1, 1, 1, 1), value=fill)
    shifts = [padded[:, i : i + 8, j : j + 8] for i in range(3) for j in range(3)]
    seen = set()
    for _ in range(40):
        x, _ = dm.train_set[7]
        match = [k for k, s in enumerate(shifts) if torch.equal(x, s)]
        assert match, "augmented image is not a ±1 px shift of the original"
        seen.add(match[0])
    assert len(seen) >= 3  # it does move
    # evaluation data is never augmented
    assert torch.equal(dm.test_set[0][0], dm.test_set.x[0])
    assert DigitsDataModule(batch_size=8).augment is False


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"T": 0}, "T"),
        ({"T": -2}, "T"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -8}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"image_size": 0}, "image_size"),
    ],
)
def test_digits_bad_arguments(kwargs, needle):
    args = {"batch_size": 4, **kwargs}
    with pytest.raises(ValueError) as ei:
        DigitsDataModule(**args)
    msg = assert_one_line(ei.value)
    assert needle in msg and repr(kwargs[needle]) in msg


# ================================================================================================
# CIFAR-10 / CIFAR-100
# ================================================================================================
@pytest.fixture(scope="module")
def cifar10_root(tmp_path_factory):
    return fakedata.write_fake_cifar10(tmp_path_factory.mktemp("c10"), n_train=25, n_test=12, seed=1)


@pytest.fixture(scope="module")
def cifar100_root(tmp_path_factory):
    return fakedata.write_fake_cifar100(tmp_path_factory.mktemp("c100"), n_train=15, n_test=8, seed=2)


def _normalized(pixels_hwc: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(pixels_hwc).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_cifar10_batches_values_and_labels(cifar10_root, no_download):
    dm = CIFAR10DataModule(root=str(cifar10_root), batch_size=5, verify_md5=False)
    assert (dm.name, dm.num_classes, dm.in_channels, dm.input_size, dm.is_event) == ("cifar10", 10, 3, 32, False)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 25 and len(dm.test_set) == 12
    assert dm.val_set is dm.test_set  # validation = test split, as in the paper
    pix, labels = fakedata.cifar_pixels(cifar10_root, "cifar10", "test")
    xs, ys = zip(*list(dm.test_dataloader()))
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (12, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(y, torch.tensor(labels))
    assert torch.allclose(x, _normalized(pix, CIFAR10_MEAN, CIFAR10_STD), atol=1e-5)
    xt, yt = next(iter(dm.train_dataloader()))
    assert xt.shape == (5, 3, 32, 32) and xt.dtype == torch.float32
    assert set(yt.tolist()) <= set(range(10))


def test_cifar10_train_augmentation_is_crop4_and_flip(cifar10_root):
    torch.manual_seed(1)
    dm = CIFAR10DataModule(root=str(cifar10_root), batch_size=4, verify_md5=False)
    dm.setup("fit")
    pix, _ = fakedata.cifar_pixels(cifar10_root, "cifar10", "train")
    orig = _normalized(pix[:3], CIFAR10_MEAN, CIFAR10_STD)
    zero = _normalized(np.zeros((1, 1, 1, 3), np.uint8), CIFAR10_MEAN, CIFAR10_STD)[0]  # padded pixel
    moved = 0
    for i in range(3):
        padded = zero.expand(3, 40, 40).clone()
        padded[:, 4:36, 4:36] = orig[i]
        candidates = [
            c.flip(-1) if f else c
            for f in (False, True)
            for c in (padded[:, a : a + 32, b : b + 32] for a in range(9) for b in range(9))
        ]
        for _ in range(4):
            x, _ = dm.train_set[i]
            assert any(torch.allclose(x, c, atol=1e-5) for c in candidates)
            moved += not torch.allclose(x, orig[i], atol=1e-5)
    assert moved >= 6


def test_cifar10_val_fraction_carves_seeded_slice_of_train(cifar10_root):
    dm = CIFAR10DataModule(root=str(cifar10_root), batch_size=4, verify_md5=False, val_fraction=0.2, seed=5)
    dm.setup("fit")
    assert len(dm.val_set) == 5 and len(dm.train_set) == 20 and len(dm.test_set) == 12
    assert not set(dm.val_set.indices) & set(dm.train_set.indices)
    assert sorted(dm.val_set.indices + dm.train_set.indices) == list(range(25))
    # validation samples come from train with the test (un-augmented) transform
    pix, labels = fakedata.cifar_pixels(cifar10_root, "cifar10", "train")
    j = dm.val_set.indices[0]
    x, y = dm.val_set[0]
    assert y == labels[j]
    assert torch.allclose(x, _normalized(pix[j : j + 1], CIFAR10_MEAN, CIFAR10_STD)[0], atol=1e-5)
    same = CIFAR10DataModule(root=str(cifar10_root), batch_size=4, verify_md5=False, val_fraction=0.2, seed=5)
    other = CIFAR10DataModule(root=str(cifar10_root), batch_size=4, verify_md5=False, val_fraction=0.2, seed=6)
    same.setup()
    other.setup()
    assert same.val_set.indices == dm.val_set.indices
    assert other.val_set.indices != dm.val_set.indices


def test_cifar10_md5_checked_by_default(cifar10_root, no_download):
    dm = CIFAR10DataModule(root=str(cifar10_root), batch_size=4)  # verify_md5=True: fake files fail
    with pytest.raises(DatasetNotFoundError) as ei:
        dm.setup("fit")
    msg = assert_one_line(ei.value)
    assert "md5" in msg and "verify_md5=false" in msg and str(cifar10_root) in msg


def test_cifar10_missing_folder_one_line_no_download(tmp_path, no_download):
    root = tmp_path / "nothing"
    dm = CIFAR10DataModule(root=str(root), batch_size=4)
    for call in (dm.prepare_data, dm.setup):
        with pytest.raises(DatasetNotFoundError) as ei:
            call()
        msg = assert_one_line(ei.value)
        assert str(root / "cifar-10-batches-py") in msg
        assert "https://www.cs.toronto.edu/~kriz/cifar.html" in msg and "data.download=true" in msg
    assert isinstance(ei.value, FileNotFoundError)
    assert not root.exists()  # nothing was created or fetched


def test_cifar10_partial_files_named(tmp_path, no_download):
    root = fakedata.write_fake_cifar10(tmp_path, n_train=10, n_test=5)
    (root / "cifar-10-batches-py" / "test_batch").unlink()
    dm = CIFAR10DataModule(root=str(root), batch_size=4, verify_md5=False)
    with pytest.raises(DatasetNotFoundError) as ei:
        dm.setup()
    msg = assert_one_line(ei.value)
    assert "test_batch" in msg and "data_batch_1" not in msg


def test_cifar10_download_true_with_files_present_does_not_download(cifar10_root, no_download):
    dm = CIFAR10DataModule(root=str(cifar10_root), batch_size=4, verify_md5=False, download=True)
    dm.prepare_data()
    dm.setup()
    assert len(dm.train_set) == 25


def test_cifar100_batches_values_and_labels(cifar100_root, no_download):
    dm = CIFAR100DataModule(root=str(cifar100_root), batch_size=8, verify_md5=False)
    assert (dm.name, dm.num_classes, dm.in_channels, dm.input_size) == ("cifar100", 100, 3, 32)
    dm.setup("fit")
    pix, labels = fakedata.cifar_pixels(cifar100_root, "cifar100", "test")
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (8, 3, 32, 32) and y.dtype == torch.int64
    assert torch.equal(y, torch.tensor(labels[:8]))  # fine labels
    assert torch.allclose(x, _normalized(pix[:8], CIFAR100_MEAN, CIFAR100_STD), atol=1e-5)
    assert not torch.allclose(x, _normalized(pix[:8], CIFAR10_MEAN, CIFAR10_STD), atol=1e-3)
    xt, _ = next(iter(dm.train_dataloader()))
    assert xt.shape == (8, 3, 32, 32)
    assert dm.train_set.base.classes[:2] == ["fine_00", "fine_01"]


def test_cifar100_missing_names_its_folder(tmp_path, no_download):
    with pytest.raises(DatasetNotFoundError) as ei:
        CIFAR100DataModule(root=str(tmp_path), batch_size=4).setup()
    msg = assert_one_line(ei.value)
    assert str(tmp_path / "cifar-100-python") in msg and "CIFAR-100" in msg


# ================================================================================================
# ImageNet
# ================================================================================================
@pytest.mark.parametrize("layout", ["flat", "ilsvrc"])
def test_imagenet_both_layouts_shapes_and_labels(tmp_path, layout):
    root = fakedata.write_fake_imagenet(tmp_path, n_classes=3, n_train_per_class=4, n_val_per_class=2, layout=layout)
    dm = ImageNetDataModule(root=str(root), batch_size=4, image_size=32)
    assert (dm.name, dm.num_classes, dm.in_channels, dm.input_size, dm.is_event) == ("imagenet", 3, 3, 32, False)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 12 and len(dm.val_set) == 6 and dm.test_set is dm.val_set
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    xs, ys = zip(*list(dm.val_dataloader()))
    assert torch.cat(ys).tolist() == [0, 0, 1, 1, 2, 2]
    xv = torch.cat(xs)
    assert xv.shape == (6, 3, 32, 32)
    # un-normalizing gives [0, 1] pixels (ImageNet mean/std were used)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    raw = xv * std + mean
    assert float(raw.min()) >= -1e-5 and float(raw.max()) <= 1 + 1e-5


def test_imagenet_val_is_resize_then_center_crop(tmp_path):
    from PIL import Image

    root = fakedata.write_fake_imagenet(tmp_path, n_classes=2, n_train_per_class=1, n_val_per_class=1, size=60)
    dm = ImageNetDataModule(root=str(root), batch_size=2, image_size=28)
    assert dm.resize_size == 32  # 28 * 256 / 224
    dm.setup("validate")
    assert dm.train_set is None  # validate does not scan train/
    path, _ = dm.val_set.samples[0]
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = 32 / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.BILINEAR)
    w, h = img.size
    left, top = int(round((w - 28) / 2.0)), int(round((h - 28) / 2.0))
    arr = np.asarray(img.crop((left, top, left + 28, top + 28)), dtype=np.float32) / 255.0
    x = dm.val_set[0][0]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.allclose(x * std + mean, torch.from_numpy(arr).permute(2, 0, 1), atol=2 / 255)


def test_imagenet_missing_one_line(tmp_path, no_download):
    dm = ImageNetDataModule(root=str(tmp_path / "in"), batch_size=4)
    assert dm.num_classes == 1000
    with pytest.raises(DatasetNotFoundError) as ei:
        dm.prepare_data()
    msg = assert_one_line(ei.value)
    assert str(tmp_path / "in" / "train") in msg and "ILSVRC2012" in msg


def test_imagenet_class_mismatch_raises(tmp_path):
    root = fakedata.write_fake_imagenet(tmp_path, n_classes=2, n_train_per_class=1, n_val_per_class=1)
    (root / "val" / "n00000001").rename(root / "val" / "n99999999")
    with pytest.raises(ValueError, match="n99999999"):
        ImageNetDataModule(root=str(root), batch_size=2, image_size=16).setup("fit")


def test_imagenet_throughput_options_reach_the_loader(tmp_path):
    root = fakedata.write_fake_imagenet(tmp_path, n_classes=2, n_train_per_class=2, n_val_per_class=1)
    dm = ImageNetDataModule(
        root=str(root), batch_size=2, image_size=16, num_workers=2, pin_memory=True,
        persistent_workers=True, prefetch_factor=3,
    )
    dm.setup("fit")
    dl = dm.train_dataloader()  # not iterated: no workers are started
    assert (dl.num_workers, dl.pin_memory, dl.persistent_workers, dl.prefetch_factor) == (2, True, True, 3)
    dm0 = ImageNetDataModule(root=str(root), batch_size=2, image_size=16, persistent_workers=True, prefetch_factor=3)
    dm0.setup("fit")
    dl0 = dm0.val_dataloader()  # with 0 workers the worker-only options are dropped (else DataLoader raises)
    assert dl0.num_workers == 0 and dl0.persistent_workers is False
    x, _ = next(iter(dl0))
    assert x.shape == (2, 3, 16, 16)


# ================================================================================================
# registry, root resolution, pickling
# ================================================================================================
def test_registry_contents_and_attributes():
    expected = {
        "digits": (10, 1, 8, False),
        "cifar10": (10, 3, 32, False),
        "cifar100": (100, 3, 32, False),
        "imagenet": (1000, 3, 224, False),
        "cifar10_dvs": (10, 2, 48, True),
    }
    for name, cls in DATAMODULES.items():
        dm = build_datamodule(name, root="/nonexistent/x", batch_size=4, T=4)
        assert isinstance(dm, cls) and dm.name == name and dm.T == 4
        assert (dm.num_classes, dm.in_channels, dm.input_size, dm.is_event) == expected[name]


def test_every_data_config_targets_a_data_module():
    from snn_lightning.data.common import BaseDataModule

    names = sorted(f.stem for f in (CONF_DIR / "data").glob("*.yaml"))
    assert set(DATAMODULES) <= set(names)
    for name in names:
        dm = build_datamodule(name, root="/nonexistent/x", batch_size=2)
        assert isinstance(dm, BaseDataModule) and dm.name == name, name


@pytest.mark.parametrize("name", list(DATAMODULES))
def test_every_module_rejects_bad_T_and_batch_size(name):
    for bad in ({"T": 0}, {"batch_size": 0}):
        with pytest.raises(ValueError) as ei:
            build_datamodule(name, **{"batch_size": 4, **bad})
        key = next(iter(bad))
        msg = assert_one_line(ei.value)
        assert key in msg and ">= 1" in msg and "got 0" in msg


def test_root_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("SNN_DATA_ROOT", str(tmp_path / "env"))
    assert CIFAR10DataModule(batch_size=2).root == str(tmp_path / "env" / "cifar10")
    assert CIFAR100DataModule(batch_size=2).root == str(tmp_path / "env" / "cifar100")
    assert CIFAR10DVSDataModule(batch_size=2).root == str(tmp_path / "env" / "cifar10_dvs")
    assert CIFAR10DataModule(root=str(tmp_path / "explicit"), batch_size=2).root == str(tmp_path / "explicit")
    monkeypatch.delenv("SNN_DATA_ROOT")
    monkeypatch.chdir(tmp_path)
    assert ImageNetDataModule(batch_size=2).root == str(tmp_path / "data" / "imagenet")
    assert CIFAR10DVSDataModule(batch_size=2).root == str(tmp_path / "data" / "cifar10_dvs")


def test_env_root_is_used_for_loading(tmp_path, monkeypatch, no_download):
    fakedata.write_fake_cifar10(tmp_path / "cifar10", n_train=10, n_test=4)
    monkeypatch.setenv("SNN_DATA_ROOT", str(tmp_path))
    dm = build_datamodule("cifar10", batch_size=2, verify_md5=False)
    dm.setup()
    assert len(dm.test_set) == 4


def test_datamodules_and_loaders_pickle(cifar10_root, tmp_path):
    fakedata.write_fake_imagenet(tmp_path / "in", n_classes=2, n_train_per_class=2, n_val_per_class=1)
    modules = [
        DigitsDataModule(batch_size=4, augment=True),
        CIFAR10DataModule(root=str(cifar10_root), batch_size=4, verify_md5=False, val_fraction=0.2),
        ImageNetDataModule(root=str(tmp_path / "in"), batch_size=2, image_size=16),
    ]
    for dm in modules:
        pickle.loads(pickle.dumps(dm))  # before setup (what ddp_spawn sends)
        dm.setup("fit")
        clone = pickle.loads(pickle.dumps(dm))
        x, y = next(iter(clone.val_dataloader()))
        x0, y0 = next(iter(dm.val_dataloader()))
        assert torch.equal(x, x0) and torch.equal(y, y0)
        pickle.loads(pickle.dumps(dm.train_dataloader().dataset))


def test_digits_with_worker_processes():
    dm = DigitsDataModule(batch_size=64, num_workers=2, persistent_workers=False)
    dm.setup()
    n = sum(len(y) for _, y in dm.val_dataloader())
    assert n == len(dm.val_set)


import lightning.pytorch as pl  # noqa: E402


class TinyLinear(pl.LightningModule):
    """Top-level (picklable for ddp_spawn) linear classifier that checks the batch layout."""

    def __init__(self, in_features: int = 64, expected_shape: tuple = (1, 8, 8)):
        super().__init__()
        self.fc = torch.nn.Linear(in_features, 10)
        self.expected_shape = tuple(expected_shape)

    def training_step(self, batch, _):
        x, y = batch
        assert tuple(x.shape[1:]) == self.expected_shape, x.shape
        return F.cross_entropy(self.fc(x.flatten(1)), y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.fc(x.flatten(1)), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_trainer_fits_on_digits(tmp_path):
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=3, limit_val_batches=2,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path),
    )
    trainer.fit(TinyLinear(), datamodule=DigitsDataModule(batch_size=32))
    assert trainer.global_step == 3 and "val_loss" in trainer.callback_metrics




@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_cifar10_corrupt_pickle_names_the_file(tmp_path, no_download, damage):
    root = fakedata.write_fake_cifar10(tmp_path, n_train=10, n_test=4, seed=3)
    bad = next(root.rglob("data_batch_1"))
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"not a pickle at all" * 10)
    dm = CIFAR10DataModule(root=str(root), batch_size=4, verify_md5=False)
    with pytest.raises(DatasetNotFoundError) as ei:
        dm.setup("fit")
    msg = assert_one_line(ei.value)
    assert str(bad) in msg and "cannot be read" in msg
