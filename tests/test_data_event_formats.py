"""N-MNIST, N-Caltech101 and DVS128 Gesture: fixtures in the exact on-disk formats, read by tonic.

Each test writes tiny files the way the real archives lay them out, then checks that tonic's own
dataset class (its download check switched off: it wants the archive and thousands of files) sees
the same files, labels and events as our listing and readers, and that the frames equal a count
made here from the arrays that were written (not from anything read back).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

try:
    from tests import fakedata
except ImportError:  # tests/ is on sys.path (pytest rootdir-less import)
    import fakedata

from snn_lightning.data import DVSGestureDataModule, NCaltech101DataModule, NMNISTDataModule
from snn_lightning.data.dvs_gesture import read_dvs_gesture
from snn_lightning.data.ncaltech101 import read_ncaltech101
from snn_lightning.data.nmnist import read_nmnist

pytestmark = pytest.mark.filterwarnings("ignore:.*the full dataset has:UserWarning")


def count_frames(x, y, p, T: int, width: int, height: int) -> np.ndarray:
    """Event-count framing written out by hand: bin b holds events [b n//T, (b+1) n//T)."""
    per = len(x) // T
    out = np.zeros((T, 2, height, width), np.float32)
    for b in range(T):
        s = slice(b * per, (b + 1) * per)
        np.add.at(out, (b, np.asarray(p[s]).astype(int), np.asarray(y[s]), np.asarray(x[s])), 1)
    return out


def tonic_without_download(monkeypatch, cls):
    monkeypatch.setattr(cls, "_check_exists", lambda self: True)
    return cls


# ------------------------------------------------------------------------------------------------
# the 40-bit .bin encoding
# ------------------------------------------------------------------------------------------------
def test_bin_encoding_round_trips_through_tonic_reader(tmp_path):
    import tonic
    from tonic.io import read_mnist_file

    ev = fakedata.make_xytp(777, 240, 180, seed=4)
    ev["t"][-1] = 2**23 - 1  # the largest 23-bit timestamp
    path = fakedata.write_bin_events(tmp_path / "a.bin", ev["x"], ev["y"], ev["t"], ev["p"])
    raw = path.read_bytes()
    assert len(raw) == 5 * 777
    assert raw[-5:] == bytes([239, 179, 0x80 * int(ev["p"][-1]) | 0x7F, 0xFF, 0xFF])
    got = read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)
    for k in "xytp":
        assert np.array_equal(got[k], ev[k]), k
    with pytest.raises(ValueError):
        fakedata.encode_bin_events([0], [240], [0], [0])  # y == 240 is tonic's overflow marker


# ------------------------------------------------------------------------------------------------
# N-MNIST
# ------------------------------------------------------------------------------------------------
def test_nmnist_listing_and_reader_equal_tonics(tmp_path, monkeypatch):
    import tonic

    root = fakedata.write_fake_nmnist(tmp_path, n_train_per_class=2, n_test_per_class=1)
    dm = NMNISTDataModule(root=str(root), batch_size=2, T=4, cache=False)
    cls = tonic_without_download(monkeypatch, tonic.datasets.NMNIST)
    for subset, train in (("train", True), ("test", False)):
        ours = dm.samples(subset)
        theirs = cls(save_to=str(root), train=train)
        assert sorted(zip(*ours)) == sorted(zip(theirs.data, theirs.targets))
        assert len(ours[0]) == (20 if train else 10)
        j = theirs.data.index(ours[0][3])
        ev, _ = theirs[j]
        assert all(np.array_equal(read_nmnist(ours[0][3])[k], ev[k]) for k in "xytp")


def test_nmnist_frames_equal_an_independent_count(tmp_path):
    ev = fakedata.make_xytp(403, 34, 34, seed=9)  # 403 = 4 * 100 + 3: the remainder is dropped
    fakedata.write_bin_events(tmp_path / "NMNIST" / "Train" / "7" / "00001.bin", ev["x"], ev["y"], ev["t"], ev["p"])
    fakedata.write_bin_events(tmp_path / "NMNIST" / "Test" / "7" / "00002.bin", ev["x"], ev["y"], ev["t"], ev["p"])
    dm = NMNISTDataModule(root=str(tmp_path), batch_size=1, T=4, cache=False)
    dm.setup()
    x, y = dm.train_set[0]
    assert y == 7 and x.shape == (4, 2, 34, 34)
    assert torch.equal(x, torch.from_numpy(count_frames(ev["x"], ev["y"], ev["p"], 4, 34, 34)))


# ------------------------------------------------------------------------------------------------
# N-Caltech101
# ------------------------------------------------------------------------------------------------
def test_ncaltech101_listing_and_reader_equal_tonics(tmp_path, monkeypatch):
    import tonic

    root = fakedata.write_fake_ncaltech101(tmp_path, n_per_class=2)
    dm = NCaltech101DataModule(root=str(root), batch_size=2, T=4, cache=False)
    paths, labels = dm.samples("all")
    theirs = tonic_without_download(monkeypatch, tonic.datasets.NCALTECH101)(save_to=str(root))
    classes = dm.class_folders(dm.subset_folder("all"))
    assert len(classes) == 101 and classes[0] == "BACKGROUND_Google"  # tonic's walk order: sorted names
    assert sorted(zip(paths, (classes[c] for c in labels))) == sorted(zip(theirs.data, theirs.targets))
    j = theirs.data.index(paths[57])
    ev, _ = theirs[j]
    ours = read_ncaltech101(paths[57])
    assert all(np.array_equal(ours[k], ev[k]) for k in "xytp") and ours["x"].min() == 0 and ours["y"].min() == 0


def test_ncaltech101_frames_on_the_recordings_own_extent(tmp_path):
    fakedata.write_fake_ncaltech101(tmp_path, n_per_class=1)
    ev = fakedata.make_xytp(500, 40, 40, seed=2, x0=13, y0=7)  # a 40x40 extent away from the origin
    victim = tmp_path / "NCALTECH101" / "Caltech101" / "category_005" / "image_0001.bin"
    fakedata.write_bin_events(victim, ev["x"], ev["y"], ev["t"], ev["p"])
    native = NCaltech101DataModule(root=str(tmp_path), batch_size=1, T=5, image_size=40, cache=False, train_ratio=0.5)
    native.setup()
    ds = native.train_set if str(victim) in native.train_set.paths else native.test_set
    i = ds.paths.index(str(victim))
    expected = count_frames(ev["x"] - 13, ev["y"] - 7, ev["p"], 5, 40, 40)
    assert torch.equal(ds.compute_frames(i), torch.from_numpy(expected))
    assert ds.targets[i] == 1 + 5  # BACKGROUND_Google sorts first
    # every recording, whatever its extent, is resized to the square image_size
    j = next(k for k, p in enumerate(ds.paths) if p != str(victim))
    w, h = (int(v.max()) + 1 for v in (ds.reader(ds.paths[j])["x"], ds.reader(ds.paths[j])["y"]))
    assert w != h
    small = NCaltech101DataModule(root=str(tmp_path), batch_size=1, T=5, image_size=24, cache=False, train_ratio=0.5)
    small.setup()
    sds = small.train_set if ds is native.train_set else small.test_set
    assert sds.paths[j] == ds.paths[j] and sds.compute_frames(j).shape == (5, 2, 24, 24)


# ------------------------------------------------------------------------------------------------
# DVS128 Gesture
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.int64])
def test_gesture_listing_and_reader_equal_tonics(tmp_path, monkeypatch, dtype):
    import tonic

    root = fakedata.write_fake_dvs_gesture(tmp_path, n_train_users=2, n_test_users=1, dtype=dtype)
    assert (root / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent" / "10.npy").is_file()
    dm = DVSGestureDataModule(root=str(root), batch_size=2, T=4, cache=False)
    cls = tonic_without_download(monkeypatch, tonic.datasets.DVSGesture)
    for subset, train in (("train", True), ("test", False)):
        ours = dm.samples(subset)
        theirs = cls(save_to=str(root), train=train)
        assert sorted(zip(*ours)) == sorted(zip(theirs.data, theirs.targets))
        assert sorted(set(ours[1])) == list(range(11))
        j = theirs.data.index(ours[0][5])
        ev, _ = theirs[j]
        mine = read_dvs_gesture(ours[0][5])
        assert mine.dtype == ev.dtype and all(np.array_equal(mine[k], ev[k]) for k in "xytp")
    assert all("/user24_" in p for p in dm.samples("test")[0])


def test_gesture_frames_equal_an_independent_count_by_number_and_time(tmp_path):
    ev = fakedata.make_xytp(600, 128, 128, seed=5, duration_us=3_000_000)
    t_ms = ev["t"] // 1000
    for split in ("ibmGestureTrain", "ibmGestureTest"):
        fakedata.write_gesture_npy(tmp_path / "DVSGesture" / split / "user01_led" / "4.npy", ev["x"], ev["y"], ev["p"], t_ms)
    dm = DVSGestureDataModule(root=str(tmp_path), batch_size=1, T=3, image_size=128, cache=False)
    dm.setup()
    x, y = dm.test_set[0]
    assert y == 4 and torch.equal(x, torch.from_numpy(count_frames(ev["x"], ev["y"], ev["p"], 3, 128, 128)))
    # time bins on the µs timestamps tonic makes of the stored milliseconds
    timed = DVSGestureDataModule(root=str(tmp_path), batch_size=1, T=3, image_size=128, cache=False, slicing="time")
    timed.setup()
    t_us = t_ms * 1000
    width = (t_us[-1] - t_us[0]) // 3
    edges = t_us[0] + width * np.arange(4)
    counts = [int(((t_us >= edges[b]) & (t_us < edges[b + 1])).sum()) for b in range(3)]
    assert timed.test_set[0][0].sum(dim=(1, 2, 3)).tolist() == counts
    # resized for the backbones: 128 -> 64 keeps the mean count per pixel (up to the filter's edge)
    small = DVSGestureDataModule(root=str(tmp_path), batch_size=1, T=3, cache=False)
    small.setup()
    assert small.test_set[0][0].shape == (3, 2, 64, 64)
    assert float(small.test_set[0][0].sum()) == pytest.approx(float(x.sum()) / 4, rel=0.01)
