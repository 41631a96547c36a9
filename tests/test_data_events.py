"""The event data modules N-MNIST, DVS128 Gesture and N-Caltech101: batches, splits, the keyed
cache, augmentation, missing/corrupt data and the opt-in download (network calls fail the test)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

try:
    from tests import fakedata
except ImportError:  # tests/ is on sys.path (pytest rootdir-less import)
    import fakedata

from conftest import assert_one_line
from snn_lightning.data import (
    DatasetNotFoundError,
    DVSGestureDataModule,
    EventFileError,
    NCaltech101DataModule,
    NMNISTDataModule,
)
from snn_lightning.data.transforms import Compose, RandomShiftCrop

pytestmark = pytest.mark.filterwarnings("ignore:.*the full dataset has:UserWarning")

WRITERS = {
    NMNISTDataModule: lambda root: fakedata.write_fake_nmnist(root, n_train_per_class=2, n_test_per_class=1),
    DVSGestureDataModule: lambda root: fakedata.write_fake_dvs_gesture(root, n_train_users=2, n_test_users=1),
    NCaltech101DataModule: lambda root: fakedata.write_fake_ncaltech101(root, n_per_class=3),
}
# (name, num_classes, default image size, train files, test files) of the fixtures above
EXPECT = {
    NMNISTDataModule: ("nmnist", 10, 34, 20, 10),
    DVSGestureDataModule: ("dvs_gesture", 11, 64, 22, 11),
    NCaltech101DataModule: ("ncaltech101", 101, 48, 202, 101),
}
CLASSES = list(WRITERS)
IDS = [c.__name__ for c in CLASSES]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return {cls: WRITERS[cls](tmp_path_factory.mktemp(cls.__name__)) for cls in CLASSES}


def dm_for(cls, root, tmp_path, **kw):
    args = dict(root=str(root), batch_size=4, T=3, cache_dir=str(tmp_path / "cache"))
    args.update(kw)
    return cls(**args)


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_batches_attributes_and_split_sizes(cls, roots, tmp_path, no_download):
    name, k, size, n_train, n_test = EXPECT[cls]
    dm = dm_for(cls, roots[cls], tmp_path)
    assert (dm.name, dm.num_classes, dm.in_channels, dm.input_size, dm.is_event) == (name, k, 2, size, True)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.test_set)) == (n_train, n_test) and dm.val_set is dm.test_set
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 2, size, size) and x.dtype == torch.float32
    assert y.shape == (4,) and y.dtype == torch.int64 and int(y.max()) < k
    assert set(dm.train_set.paths).isdisjoint(dm.test_set.paths)
    clone = pickle.loads(pickle.dumps(dm))  # ddp_spawn / worker processes
    assert torch.equal(clone.test_set[1][0], dm.test_set[1][0])


@pytest.mark.parametrize("cls", [NMNISTDataModule, DVSGestureDataModule], ids=["nmnist", "gesture"])
def test_official_split_is_the_datasets_own_folders(cls, roots, tmp_path):
    dm = dm_for(cls, roots[cls], tmp_path)
    dm.setup()
    train_dir, test_dir = (dm.subset_folder(s) + os.sep for s in ("train", "test"))
    assert all(p.startswith(train_dir) for p in dm.train_set.paths)
    assert all(p.startswith(test_dir) for p in dm.test_set.paths)
    with pytest.raises(ValueError) as ei:
        dm_for(cls, roots[cls], tmp_path, split="ratio")
    assert "'ratio'" in assert_one_line(ei.value) and "'official'" in str(ei.value)


def test_ncaltech101_split_is_seeded_per_class(roots, tmp_path):
    root = roots[NCaltech101DataModule]
    a, b, c = (dm_for(NCaltech101DataModule, root, tmp_path, seed=s, train_ratio=0.67) for s in (1, 1, 2))
    for dm in (a, b, c):
        dm.setup()
    # 3 recordings per class, 2:1 -> every one of the 101 classes has 2 train and 1 test recordings
    assert np.bincount(a.train_set.targets).tolist() == [2] * 101
    assert np.bincount(a.test_set.targets).tolist() == [1] * 101
    assert a.test_set.paths == b.test_set.paths and a.test_set.paths != c.test_set.paths
    nobg = dm_for(NCaltech101DataModule, root, tmp_path, include_background=False)
    nobg.setup()
    assert nobg.num_classes == 100 and len(nobg.train_set) + len(nobg.test_set) == 300
    assert not any("BACKGROUND_Google" in p for p in nobg.train_set.paths + nobg.test_set.paths)


def test_ncaltech101_wrong_number_of_class_folders(tmp_path, no_download):
    root = fakedata.write_fake_ncaltech101(tmp_path, n_per_class=1, n_object_classes=3)
    with pytest.raises(DatasetNotFoundError) as ei:
        dm_for(NCaltech101DataModule, root, tmp_path).setup()
    msg = assert_one_line(ei.value)
    assert "4 class folders, expected 101" in msg and str(root / "NCALTECH101" / "Caltech101") in msg


# ------------------------------------------------------------------------------------------------
# cache
# ------------------------------------------------------------------------------------------------
def test_cache_dirs_are_keyed_by_dataset_T_slicing_size_and_split(tmp_path):
    base = dm_for(NCaltech101DataModule, tmp_path, tmp_path)
    variants = [
        dm_for(NCaltech101DataModule, tmp_path, tmp_path, T=6),
        dm_for(NCaltech101DataModule, tmp_path, tmp_path, slicing="time"),
        dm_for(NCaltech101DataModule, tmp_path, tmp_path, image_size=32),
        dm_for(NCaltech101DataModule, tmp_path, tmp_path, seed=9),
        dm_for(NCaltech101DataModule, tmp_path, tmp_path, train_ratio=0.8),
        dm_for(NCaltech101DataModule, tmp_path, tmp_path, include_background=False),
        dm_for(NMNISTDataModule, tmp_path, tmp_path, image_size=48),  # same settings, other dataset
        dm_for(DVSGestureDataModule, tmp_path, tmp_path, image_size=48),
    ]
    dirs = [base.cache_dir] + [v.cache_dir for v in variants]
    assert len(set(dirs)) == len(dirs) and all(d.startswith(str(tmp_path / "cache")) for d in dirs)
    assert os.path.basename(base.cache_dir) == "ncaltech101-event_count_T3_48px_ratio0.9-seed0"
    assert os.path.basename(variants[-2].cache_dir) == "nmnist-event_count_T3_48px_official"
    assert dm_for(NMNISTDataModule, tmp_path, tmp_path, cache=False).cache_dir is None
    assert NMNISTDataModule(root=str(tmp_path)).cache_dir.startswith(str(tmp_path / "cache"))


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_cached_frames_equal_fresh_ones_and_are_read_back(cls, tmp_path):
    root = WRITERS[cls](tmp_path / "d")
    dm = dm_for(cls, root, tmp_path)
    dm.setup()
    ds = dm.test_set
    cpath = ds.cache_path(0)
    rel = os.path.relpath(ds.path(0), dm.data_folder)
    assert cpath == os.path.join(dm.cache_dir, os.path.splitext(rel)[0] + ".pt") and not os.path.exists(cpath)
    first, _ = ds[0]
    assert os.path.isfile(cpath) and torch.equal(first, ds.compute_frames(0))
    blob = torch.load(cpath, weights_only=True)
    torch.save({"frames": blob["frames"] + 1, "source": blob["source"]}, cpath)
    assert torch.equal(ds[0][0], first + 1)  # the cache file is what is read
    st = os.stat(ds.path(0))
    os.utime(ds.path(0), ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert torch.equal(ds[0][0], first)  # a changed source is recomputed
    other_T = dm_for(cls, root, tmp_path, T=5)
    other_T.setup()
    assert other_T.test_set[0][0].shape[0] == 5 and other_T.test_set.cache_path(0) != cpath


# ------------------------------------------------------------------------------------------------
# augmentation
# ------------------------------------------------------------------------------------------------
def test_gesture_never_flips(roots, tmp_path):
    dm = dm_for(DVSGestureDataModule, roots[DVSGestureDataModule], tmp_path)
    assert dm.train_transform() == Compose((RandomShiftCrop(4),))
    for bad in (0.5, 1, "0.5"):
        with pytest.raises(ValueError) as ei:
            dm_for(DVSGestureDataModule, roots[DVSGestureDataModule], tmp_path, hflip=bad)
        msg = assert_one_line(ei.value)
        assert f"hflip={bad!r}" in msg and "left- and right-hand" in msg and "allowed: 0" in msg


def test_training_augmentation_is_a_shift_shared_by_all_frames(roots, tmp_path):
    torch.manual_seed(0)
    dm = dm_for(NCaltech101DataModule, roots[NCaltech101DataModule], tmp_path, cache=False, crop_padding=2, hflip=0.0)
    dm.setup()
    clean = dm.train_set.compute_frames(3)
    padded = torch.nn.functional.pad(clean, (2, 2, 2, 2))
    candidates = [padded[..., a : a + 48, b : b + 48] for a in range(5) for b in range(5)]
    outs = [dm.train_set[3][0] for _ in range(6)]
    assert all(any(torch.equal(o, c) for c in candidates) for o in outs)
    assert sum(not torch.equal(o, clean) for o in outs) >= 3
    assert torch.equal(dm.test_set[3][0], dm.test_set.compute_frames(3))  # evaluation: no augmentation
    nmnist = dm_for(NMNISTDataModule, roots[NMNISTDataModule], tmp_path)
    assert nmnist.train_transform() == Compose()  # digits: off by default


# ------------------------------------------------------------------------------------------------
# missing, corrupt, download
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, folder, hint",
    [
        (NMNISTDataModule, "NMNIST/Train", "train.zip"),
        (DVSGestureDataModule, "DVSGesture/ibmGestureTrain", "ibmGestureTrain.tar.gz"),
        (NCaltech101DataModule, "NCALTECH101/Caltech101", "Caltech101.zip"),
    ],
    ids=IDS,
)
def test_missing_data_is_one_line_and_downloads_nothing(cls, folder, hint, tmp_path, no_download):
    dm = dm_for(cls, tmp_path / "none", tmp_path)
    for call in (dm.prepare_data, dm.setup):
        with pytest.raises(DatasetNotFoundError) as ei:
            call()
        msg = assert_one_line(ei.value)
        assert str(tmp_path / "none" / folder) in msg and hint in msg and "data.download=true" in msg
    assert not (tmp_path / "none").exists()


def test_download_true_fetches_through_tonic_into_the_folder_read(tmp_path, monkeypatch):
    import tonic.dataset

    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kw):  # what tonic would unpack
        calls.append(filename)
        sub = "Train" if filename == "train.zip" else "Test"
        for d in range(10):
            ev = fakedata.make_xytp(50, 34, 34, seed=d)
            path = os.path.join(download_root, sub, str(d), "00001.bin")
            fakedata.write_bin_events(path, ev["x"], ev["y"], ev["t"], ev["p"])

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", fake_download)
    dm = dm_for(NMNISTDataModule, tmp_path / "fresh", tmp_path, download=True)
    dm.prepare_data()
    dm.setup()
    assert calls == ["train.zip", "test.zip"] and len(dm.train_set) == len(dm.test_set) == 10
    present = dm_for(NMNISTDataModule, tmp_path / "fresh", tmp_path, download=True)
    present.prepare_data()
    assert calls == ["train.zip", "test.zip"]  # data present: nothing fetched again


def test_partial_data_warns_with_the_count(roots, tmp_path):
    dm = dm_for(DVSGestureDataModule, roots[DVSGestureDataModule], tmp_path)
    with pytest.warns(UserWarning, match=r"DVS128 Gesture: 22 files in .*ibmGestureTrain, the full dataset has 1077"):
        dm.check_exists()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_corrupt_file_error_names_the_file_also_from_a_worker(num_workers, tmp_path):
    root = fakedata.write_fake_nmnist(tmp_path / "d", n_train_per_class=1, n_test_per_class=1)
    dm = dm_for(NMNISTDataModule, root, tmp_path, cache=False, num_workers=num_workers, batch_size=10)
    dm.setup()
    victim = dm.test_set.path(4)
    with open(victim, "ab") as f:
        f.write(b"\x01\x02")  # no longer a whole number of 5-byte events
    batches = iter(dm.test_dataloader())
    with pytest.raises(EventFileError) as ei:
        next(batches)
    msg = assert_one_line(ei.value)
    assert msg.startswith("cannot read N-MNIST event file") and victim in msg and "Caught" not in msg
    del ei, batches  # the traceback holds the iterator: let it stop its workers now


@pytest.mark.parametrize(
    "content, needle",
    [(b"not a numpy file", "cannot read DVS128 Gesture event file"), (None, "cannot read DVS128 Gesture event file")],
    ids=["garbage", "wrong-shape"],
)
def test_gesture_corrupt_npy(content, needle, tmp_path):
    root = fakedata.write_fake_dvs_gesture(tmp_path / "d", n_train_users=1, n_test_users=1, classes=range(2))
    victim = root / "DVSGesture" / "ibmGestureTest" / "user24_fluorescent" / "1.npy"
    if content is None:
        np.save(victim, np.zeros((10, 3)))  # three columns instead of x, y, p, t
    else:
        victim.write_bytes(content)
    dm = dm_for(DVSGestureDataModule, root, tmp_path, cache=False)
    dm.setup()
    with pytest.raises(EventFileError) as ei:
        dm.test_set[dm.test_set.paths.index(str(victim))]
    msg = assert_one_line(ei.value)
    assert needle in msg and str(victim) in msg
    stray = victim.with_name("notes.npy")
    np.save(stray, np.zeros((1, 4)))
    with pytest.raises(EventFileError, match="0.npy ... 10.npy"):
        dm_for(DVSGestureDataModule, root, tmp_path).setup()
