"""CIFAR10-DVS: the pure-Python AEDAT4 writer, tonic reading, frames, splits, cache and errors."""

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
from snn_lightning.data import CIFAR10DVSDataModule, DatasetNotFoundError, EventFileError
from snn_lightning.data.framing import events_to_frames, resize_frames

# the fixtures hold 1000 of the 10000 recordings: the module says so (tested once, below)
pytestmark = pytest.mark.filterwarnings("ignore:.*the full dataset has:UserWarning")


@pytest.fixture(scope="module")
def dvs_root(tmp_path_factory):
    """1000 samples (100 per class, 3 distinct recordings per class, the rest hard links)."""
    return fakedata.write_fake_cifar10_dvs(tmp_path_factory.mktemp("dvs"), n_per_class=100)


def dm_for(root, tmp_path, **kw) -> CIFAR10DVSDataModule:
    args = dict(root=str(root), batch_size=4, T=4, cache_dir=str(tmp_path / "cache"))
    args.update(kw)
    return CIFAR10DVSDataModule(**args)


# ------------------------------------------------------------------------------------------------
# the AEDAT4 writer
# ------------------------------------------------------------------------------------------------
def test_aedat4_writer_round_trips_exactly(tmp_path):
    import aedat
    from tonic.io import read_aedat4

    ev = fakedata.make_events(2345, seed=7)
    ev["x"][0], ev["y"][0] = 127, 127  # the corners survive
    ev["x"][1], ev["y"][1] = 0, 0
    path = fakedata.write_aedat4(tmp_path / "a.aedat4", ev["t"], ev["x"], ev["y"], ev["p"], packet_size=1000)
    with open(path, "rb") as f:
        assert f.read(14) == b"#!AER-DAT4.0\r\n"
    dec = aedat.Decoder(str(path))
    assert dec.id_to_stream() == {0: {"type": "events", "width": 128, "height": 128}}
    packets = list(aedat.Decoder(str(path)))
    assert [len(p["events"]) for p in packets] == [1000, 1000, 345]
    got = read_aedat4(str(path))
    assert len(got) == 2345
    for ours, theirs in (("t", "t"), ("x", "x"), ("y", "y"), ("p", "on")):
        assert np.array_equal(got[theirs], ev[ours]), ours
    # through tonic's CIFAR10DVS dataset reader as well (field names renamed to t, x, y, p)
    read = fakedata.read_aedat4_events(path)
    assert read.dtype.names == ("t", "x", "y", "p") and np.array_equal(read["t"], ev["t"])


def test_aedat4_writer_header_fields(tmp_path):
    ev = fakedata.make_events(10, seed=1)
    path = fakedata.write_aedat4(tmp_path / "b.aedat4", ev["t"], ev["x"], ev["y"], ev["p"])
    raw = path.read_bytes()
    n = int.from_bytes(raw[14:18], "little")
    header = raw[18 : 18 + n]
    assert header[4:8] == b"IOHE"
    assert int.from_bytes(header[28:32], "little", signed=True) == 0  # compression NONE
    assert int.from_bytes(header[32:40], "little", signed=True) == -1  # data position
    xml = header[48 : 48 + int.from_bytes(header[44:48], "little")].decode()
    for needle in ("EVTS", 'key="sizeX" type="int">128', "originalOutputName", 'key="source"'):
        assert needle in xml
    stream_id, size = int.from_bytes(raw[18 + n : 22 + n], "little"), int.from_bytes(raw[22 + n : 26 + n], "little")
    assert stream_id == 0 and size == len(raw) - (26 + n) and raw[26 + n + 8 : 26 + n + 12] == b"EVTS"


def test_tonic_reads_the_fake_tree_without_downloading(dvs_root, no_download):
    import tonic

    ds = tonic.datasets.CIFAR10DVS(save_to=str(dvs_root))
    assert len(ds) == 1000
    assert np.bincount(ds.targets, minlength=10).tolist() == [100] * 10
    for path, target in zip(ds.data[::97], ds.targets[::97]):
        assert fakedata.CIFAR10_DVS_CLASSES[target] == os.path.basename(os.path.dirname(path))
    events, target = ds[0]
    assert len(events) == 400 and events.dtype.names == ("t", "x", "y", "p")


def test_our_listing_and_reader_equal_tonics(dvs_root, tmp_path, no_download):
    import tonic

    from snn_lightning.data.cifar10_dvs import CLASSES, read_cifar10_dvs

    theirs = tonic.datasets.CIFAR10DVS(save_to=str(dvs_root))
    assert {c: i for i, c in enumerate(CLASSES)} == dict(theirs.classes)
    paths, labels = dm_for(dvs_root, tmp_path).samples("all")
    assert sorted(zip(paths, labels)) == sorted(zip(theirs.data, theirs.targets))
    j = theirs.data.index(paths[123])
    ev, _ = theirs[j]
    ours = read_cifar10_dvs(paths[123])
    assert ours.dtype.names == ev.dtype.names and all(np.array_equal(ours[k], ev[k]) for k in "txyp")


# ------------------------------------------------------------------------------------------------
# frames and batches
# ------------------------------------------------------------------------------------------------
def test_batch_shapes_dtypes_and_attributes(dvs_root, tmp_path, no_download):
    dm = dm_for(dvs_root, tmp_path, T=5)
    assert (dm.name, dm.num_classes, dm.in_channels, dm.input_size, dm.is_event) == ("cifar10_dvs", 10, 2, 48, True)
    dm.prepare_data()
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 5, 2, 48, 48) and x.dtype == torch.float32
    assert y.shape == (4,) and y.dtype == torch.int64
    xv, yv = next(iter(dm.val_dataloader()))
    assert xv.shape == (4, 5, 2, 48, 48)
    assert dm.val_set is dm.test_set
    # labels are the folder classes
    for i in (0, 7, 55):
        cls = os.path.basename(os.path.dirname(dm.test_set.path(i)))
        assert fakedata.CIFAR10_DVS_CLASSES[dm.test_set[i][1]] == cls


def test_frames_match_an_independent_count_by_event_number(dvs_root, tmp_path):
    import aedat

    dm = dm_for(dvs_root, tmp_path, T=4, image_size=128, cache=False)
    dm.setup("test")
    path = dm.test_set.path(3)
    x, _ = dm.test_set[3]
    ev = np.concatenate([p["events"] for p in aedat.Decoder(path)])
    expected = np.zeros((4, 2, 128, 128), np.float32)
    per_bin = len(ev) // 4
    for b in range(4):
        e = ev[b * per_bin : (b + 1) * per_bin]
        np.add.at(expected, (b, e["on"].astype(int), e["y"].astype(int), e["x"].astype(int)), 1)
    assert torch.equal(x, torch.from_numpy(expected))
    assert [int(x[b].sum()) for b in range(4)] == [100] * 4


def test_resize_and_time_slicing(dvs_root, tmp_path):
    full = dm_for(dvs_root, tmp_path, T=3, image_size=128, cache=False)
    small = dm_for(dvs_root, tmp_path, T=3, image_size=48, cache=False)
    timed = dm_for(dvs_root, tmp_path, T=3, image_size=128, cache=False, slicing="time")
    for dm in (full, small, timed):
        dm.setup("test")
    big, sm, tm = full.test_set[0][0], small.test_set[0][0], timed.test_set[0][0]
    assert sm.shape == (3, 2, 48, 48)
    assert torch.allclose(sm, resize_frames(big, 48))
    assert float(sm.sum()) == pytest.approx(float(big.sum()) * (48 / 128) ** 2, rel=0.05)
    assert tm.shape == (3, 2, 128, 128) and not torch.equal(tm, big)
    # time bins: each frame holds the events of its third of the recording's duration
    ev = fakedata.read_aedat4_events(timed.test_set.path(0))
    edges = np.linspace(int(ev["t"][0]), int(ev["t"][-1]), 4)
    counts = np.histogram(ev["t"].astype(np.int64), bins=edges)[0]
    assert np.abs(tm.sum(dim=(1, 2, 3)).numpy() - counts).max() <= 1


def test_train_augmentation_is_identical_across_timesteps(dvs_root, tmp_path):
    torch.manual_seed(0)
    dm = dm_for(dvs_root, tmp_path, T=4, cache=False)
    dm.setup("fit")
    clean = dm.train_set.compute_frames(0)
    padded = torch.nn.functional.pad(clean, (4, 4, 4, 4))
    candidates = [
        (c.flip(-1) if f else c)
        for f in (False, True)
        for c in (padded[..., a : a + 48, b : b + 48] for a in range(9) for b in range(9))
    ]
    changed = 0
    for _ in range(8):
        x, _ = dm.train_set[0]
        # one crop offset and one flip decision for all T frames and both polarities
        assert any(torch.equal(x, c) for c in candidates)
        changed += not torch.equal(x, clean)
    assert changed >= 5
    assert torch.equal(dm.test_set[0][0], dm.test_set.compute_frames(0))  # test: resize only


# ------------------------------------------------------------------------------------------------
# splits
# ------------------------------------------------------------------------------------------------
def _split_files(dm):
    return [dm.train_set.path(i) for i in range(len(dm.train_set))], [dm.test_set.path(i) for i in range(len(dm.test_set))]


def test_ratio_split_is_per_class_9_to_1_and_seeded(dvs_root, tmp_path):
    a = dm_for(dvs_root, tmp_path, seed=1)
    a.setup("fit")
    assert len(a.train_set) == 900 and len(a.test_set) == 100
    assert np.bincount(a.train_set.targets, minlength=10).tolist() == [90] * 10
    assert np.bincount(a.test_set.targets, minlength=10).tolist() == [10] * 10
    tr, te = _split_files(a)
    assert not set(tr) & set(te) and len(set(tr) | set(te)) == 1000
    b = dm_for(dvs_root, tmp_path, seed=1)
    c = dm_for(dvs_root, tmp_path, seed=2)
    b.setup("fit")
    c.setup("fit")
    assert _split_files(b) == (tr, te)
    assert set(_split_files(c)[1]) != set(te)
    # not simply the first or last 10 files of each class
    names = {int(os.path.splitext(p)[0].rsplit("_", 1)[1]) for p in te}
    assert names != set(range(10)) and names != set(range(90, 100))


def test_first100_split_uses_sorted_file_order(tmp_path, no_download):
    root = fakedata.write_fake_cifar10_dvs(tmp_path / "d", n_per_class=110)
    dm = dm_for(root, tmp_path, split="first100")
    dm.setup("fit")
    assert len(dm.test_set) == 1000 and len(dm.train_set) == 100
    tr, te = _split_files(dm)
    idx = lambda p: int(os.path.splitext(p)[0].rsplit("_", 1)[1])  # noqa: E731
    for c in range(10):
        cls = fakedata.CIFAR10_DVS_CLASSES[c]
        assert sorted(idx(p) for p in te if f"/{cls}/" in p) == list(range(100))
        assert sorted(idx(p) for p in tr if f"/{cls}/" in p) == list(range(100, 110))
    small = dm_for(root, tmp_path, split="first100", first_n_test=3)
    small.setup("fit")
    assert len(small.test_set) == 30 and len(small.train_set) == 1070
    assert sorted({idx(p) for p in _split_files(small)[1]}) == [0, 1, 2]


# ------------------------------------------------------------------------------------------------
# cache
# ------------------------------------------------------------------------------------------------
def test_cache_paths_are_keyed_by_T_slicing_size_and_split(dvs_root, tmp_path):
    base = dm_for(dvs_root, tmp_path).cache_dir
    variants = [
        dm_for(dvs_root, tmp_path, T=6).cache_dir,
        dm_for(dvs_root, tmp_path, slicing="time").cache_dir,
        dm_for(dvs_root, tmp_path, image_size=32).cache_dir,
        dm_for(dvs_root, tmp_path, split="first100").cache_dir,
        dm_for(dvs_root, tmp_path, seed=9).cache_dir,
    ]
    assert len({base, *variants}) == 6
    assert base.startswith(str(tmp_path / "cache"))
    assert dm_for(dvs_root, tmp_path, cache=False).cache_dir is None
    default = CIFAR10DVSDataModule(root=str(dvs_root), batch_size=2, T=4)
    assert default.cache_dir.startswith(os.path.join(str(dvs_root), "cache"))


def test_cached_read_equals_fresh_read_and_is_used(tmp_path, no_download):
    root = fakedata.write_fake_cifar10_dvs(tmp_path / "d", n_per_class=100)
    dm = dm_for(root, tmp_path, T=4)
    dm.setup("fit")
    ds = dm.test_set
    cpath = ds.cache_path(2)
    assert cpath.startswith(dm.cache_dir) and not os.path.exists(cpath)
    first, _ = ds[2]
    assert os.path.isfile(cpath)
    second, _ = ds[2]
    assert torch.equal(first, second) and torch.equal(second, ds.compute_frames(2))
    # the cache file is what gets read: tamper with it (same source stamp) and see it come back
    blob = torch.load(cpath, weights_only=True)
    torch.save({"frames": blob["frames"] + 1, "source": blob["source"]}, cpath)
    assert torch.equal(ds[2][0], first + 1)
    # a changed source recording invalidates the entry
    src = ds.path(2)
    st = os.stat(src)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert torch.equal(ds[2][0], first)
    # changing T reads from another folder: never the stale 4-frame tensors
    dm6 = dm_for(root, tmp_path, T=6)
    dm6.setup("fit")
    x6, _ = dm6.test_set[2]
    assert x6.shape == (6, 2, 48, 48) and dm6.test_set.cache_path(2) != cpath
    # a truncated cache file is recomputed, not an error
    with open(cpath, "wb") as f:
        f.write(b"garbage")
    assert torch.equal(ds[2][0], first)


def test_cache_with_worker_processes(dvs_root, tmp_path):
    dm = dm_for(dvs_root, tmp_path, T=2, num_workers=2, batch_size=8)
    dm.setup("fit")
    loader = dm.test_dataloader()
    xs = torch.cat([x for x, _ in loader])
    assert xs.shape == (100, 2, 2, 48, 48)
    n_files = sum(len(f) for _, _, f in os.walk(dm.cache_dir))
    assert n_files == 100
    again = torch.cat([x for x, _ in dm.test_dataloader()])
    assert torch.equal(xs, again)


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
def test_corrupt_event_file_error_names_the_file(tmp_path, no_download):
    root = fakedata.write_fake_cifar10_dvs(tmp_path / "d", n_per_class=100)
    dm = dm_for(root, tmp_path, cache=False)
    dm.setup("fit")
    victim = dm.test_set.path(0)
    os.unlink(victim)  # break the hard link before overwriting
    with open(victim, "wb") as f:
        f.write(b"this is not an aedat4 file at all")
    with pytest.raises(EventFileError) as ei:
        dm.test_set[0]
    msg = assert_one_line(ei.value)
    assert victim in msg
    # a truncated file (valid header, cut packet)
    victim2 = dm.test_set.path(1)
    data = open(victim2, "rb").read()
    os.unlink(victim2)
    with open(victim2, "wb") as f:
        f.write(data[: len(data) - 50])
    with pytest.raises(EventFileError) as ei:
        dm.test_set[1]
    assert victim2 in assert_one_line(ei.value)
    assert torch.is_tensor(dm.test_set[2][0])  # the other files still load


def test_missing_dataset_one_line_no_download(tmp_path, no_download):
    dm = dm_for(tmp_path / "none", tmp_path)
    for call in (dm.prepare_data, dm.setup):
        with pytest.raises(DatasetNotFoundError) as ei:
            call()
        msg = assert_one_line(ei.value)
        assert str(tmp_path / "none" / "CIFAR10DVS") in msg and "data.download=true" in msg
    assert not (tmp_path / "none").exists()


def test_a_partial_tree_loads_with_a_warning_and_needs_no_zip(tmp_path, no_download):
    # our own listing of tonic's layout: no archive marker and no 1000-file threshold (tonic's
    # download trigger); a count other than the full 10000 is reported, not hidden
    few = fakedata.write_fake_cifar10_dvs(tmp_path / "few", n_per_class=5)
    (few / "CIFAR10DVS" / "CIFAR10DVS.zip").unlink()
    dm = dm_for(few, tmp_path)
    with pytest.warns(UserWarning, match=r"CIFAR10-DVS: 50 files in .*CIFAR10DVS.*10000"):
        dm.setup()
    assert len(dm.train_set) + len(dm.test_set) == 50
    assert np.bincount(dm.test_set.targets, minlength=10).tolist() == [1] * 10  # round(5 * 0.1) -> 1 each


def test_an_empty_tree_is_missing(tmp_path, no_download):
    (tmp_path / "empty" / "CIFAR10DVS" / "airplane").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as ei:
        dm_for(tmp_path / "empty", tmp_path).setup()
    msg = assert_one_line(ei.value)
    assert "no event files" in msg and str(tmp_path / "empty" / "CIFAR10DVS") in msg


def test_download_true_with_data_present_does_not_download(dvs_root, tmp_path, no_download):
    dm = dm_for(dvs_root, tmp_path, download=True)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 900


@pytest.mark.parametrize(
    "kwargs, needle, allowed",
    [
        ({"slicing": "foo"}, "'foo'", "event_count"),
        ({"split": "bar"}, "'bar'", "first100"),
        ({"T": 0}, "T", ">= 1"),
        ({"batch_size": 0}, "batch_size", ">= 1"),
        ({"image_size": -1}, "image_size", ">= 1"),
        ({"train_ratio": 1.0}, "train_ratio", "1.0"),
    ],
)
def test_bad_arguments(kwargs, needle, allowed, tmp_path):
    with pytest.raises(ValueError) as ei:
        CIFAR10DVSDataModule(**{"batch_size": 2, "root": str(tmp_path), **kwargs})
    msg = assert_one_line(ei.value)
    assert needle in msg and allowed in msg


def test_pickles_for_ddp_spawn(dvs_root, tmp_path):
    dm = dm_for(dvs_root, tmp_path, T=2)
    pickle.loads(pickle.dumps(dm))
    dm.setup("fit")
    clone = pickle.loads(pickle.dumps(dm))
    assert torch.equal(clone.test_set[5][0], dm.test_set[5][0])


def test_events_to_frames_pads_missing_bins():
    ev = np.zeros(2, dtype=[("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("p", "?")])
    ev["t"] = [0, 10]
    frames = events_to_frames(ev, 5, "event_count")
    assert frames.shape == (5, 2, 128, 128) and frames.dtype == torch.float32
