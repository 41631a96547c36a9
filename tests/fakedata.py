"""Tiny fabricated datasets in the exact on-disk formats the real loaders read.

Every writer is fast (well under a second) and deterministic for a given ``seed``, so other tests
(for example training smoke tests) can import them:

    try:
        from tests import fakedata
    except ImportError:  # pytest puts tests/ itself on sys.path (no tests/__init__.py)
        import fakedata
    root = fakedata.write_fake_cifar10(tmp_path / "cifar10", n_train=20, n_test=10)
    dm = CIFAR10DataModule(root=str(root), batch_size=4, verify_md5=False)

* ``write_fake_cifar10``  -> ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
* ``write_fake_cifar100`` -> ``<root>/cifar-100-python/{train,test,meta}``
* ``write_fake_imagenet`` -> ``<root>/train/<wnid>/*.JPEG`` and ``<root>/val/<wnid>/*.JPEG``
* ``write_fake_cifar10_dvs`` -> ``<root>/CIFAR10DVS/<class>/*.aedat4`` plus ``CIFAR10DVS.zip``
* ``write_aedat4`` / ``make_events`` -> one AEDAT4 file written in pure Python.
* ``write_fake_nmnist`` -> ``<root>/NMNIST/{Train,Test}/<digit>/*.bin`` (40-bit events, ``write_bin_events``)
* ``write_fake_ncaltech101`` -> ``<root>/NCALTECH101/Caltech101/<class>/image_NNNN.bin``
* ``write_fake_dvs_gesture`` -> ``<root>/DVSGesture/ibmGesture{Train,Test}/user<NN>_<light>/<class>.npy``

The CIFAR pickles are not the official files, so their md5 sums differ: load them with
``verify_md5=False``.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
# the order tonic uses (airplane=0 ... truck=9)
CIFAR10_DVS_CLASSES = list(CIFAR10_CLASSES)

AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("_pad", "V3")])
assert EVENT_DTYPE.itemsize == 16


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 pickles
# --------------------------------------------------------------------------------------------
def _cifar_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """uint8 (n, 3072): 1024 R, 1024 G, 1024 B values, each plane row-major 32x32."""
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_fake_cifar10(root, n_train: int = 20, n_test: int = 10, seed: int = 0) -> Path:
    """Write a tiny CIFAR-10 (``n_train`` images spread over the 5 training batches).

    Labels cycle 0..9 so every class is present once ``n >= 10``. Returns ``root``.
    """
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train = _cifar_images(rng, n_train)
    train_labels = [i % 10 for i in range(n_train)]
    chunks = np.array_split(np.arange(n_train), 5)
    for b, idx in enumerate(chunks, start=1):
        _dump(
            folder / f"data_batch_{b}",
            {
                "batch_label": f"training batch {b} of 5",
                "labels": [train_labels[i] for i in idx],
                "data": train[idx],
                "filenames": [f"train_{i}.png" for i in idx],
            },
        )
    test = _cifar_images(rng, n_test)
    _dump(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": [i % 10 for i in range(n_test)],
            "data": test,
            "filenames": [f"test_{i}.png" for i in range(n_test)],
        },
    )
    _dump(
        folder / "batches.meta",
        {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": max(1, n_train // 5), "num_vis": 3072},
    )
    return root


def write_fake_cifar100(root, n_train: int = 20, n_test: int = 10, seed: int = 0) -> Path:
    """Write a tiny CIFAR-100 (fine labels cycle 0..99, coarse = fine // 5). Returns ``root``."""
    root = Path(root)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = [i % 100 for i in range(n)]
        _dump(
            folder / split,
            {
                "filenames": [f"{split}_{i}.png" for i in range(n)],
                "batch_label": f"{split}ing batch 1 of 1",
                "fine_labels": fine,
                "coarse_labels": [f // 5 for f in fine],
                "data": _cifar_images(rng, n),
            },
        )
    _dump(
        folder / "meta",
        {
            "fine_label_names": [f"fine_{i:02d}" for i in range(100)],
            "coarse_label_names": [f"coarse_{i:02d}" for i in range(20)],
        },
    )
    return root


def cifar_pixels(root, dataset: str = "cifar10", split: str = "test") -> tuple[np.ndarray, list[int]]:
    """Read the fabricated pixels back as uint8 (N, 32, 32, 3) HWC and labels (independent of torchvision)."""
    root = Path(root)
    if dataset == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        folder, key = root / "cifar-10-batches-py", "labels"
    else:
        files = [split]
        folder, key = root / "cifar-100-python", "fine_labels"
    data, labels = [], []
    for name in files:
        with open(folder / name, "rb") as f:
            d = pickle.load(f, encoding="latin1")
        data.append(d["data"])
        labels.extend(d[key])
    x = np.concatenate(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, labels


# --------------------------------------------------------------------------------------------
# ImageNet-style ImageFolder tree
# --------------------------------------------------------------------------------------------
def write_fake_imagenet(
    root,
    n_classes: int = 3,
    n_train_per_class: int = 4,
    n_val_per_class: int = 2,
    size: int = 40,
    layout: str = "flat",
    seed: int = 0,
) -> Path:
    """Write small RGB JPEGs as ``<root>/{train,val}/<wnid>/*.JPEG``.

    ``layout="ilsvrc"`` writes ``<root>/ILSVRC2012/{train,val}`` instead. Image sizes vary a little
    around ``size`` (non-square) to exercise the resize/crop code. Returns ``root``.
    """
    from PIL import Image

    root = Path(root)
    base = root / "ILSVRC2012" if layout == "ilsvrc" else root
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train_per_class), ("val", n_val_per_class)):
        for c in range(n_classes):
            d = base / split / f"n{c:08d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h = size + int(rng.integers(0, 9))
                w = size + int(rng.integers(0, 13))
                arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"n{c:08d}_{i}.JPEG", quality=90)
    return root


# --------------------------------------------------------------------------------------------
# AEDAT4 writer (pure Python, minimal FlatBuffers)
# --------------------------------------------------------------------------------------------
def _pad_to(buf: bytearray, align: int) -> None:
    while len(buf) % align:
        buf.append(0)


def _ioheader_flatbuffer(description: str, compression: int = 0, data_position: int = -1) -> bytes:
    """FlatBuffer ``Ioheader {compression: int32; file_data_position: int64; description: string}``
    with file identifier ``IOHE`` (not size prefixed; the file writes the size in front of it)."""
    desc = description.encode("utf-8")
    buf = bytearray()
    buf += struct.pack("<I", 24)          # 0: root uoffset -> table at 24
    buf += b"IOHE"                        # 4: file identifier
    # 8: vtable: size 10, table size 20, field offsets (compression 4, position 8, description 16)
    buf += struct.pack("<HHHHH", 10, 20, 4, 8, 16)
    _pad_to(buf, 8)                       # -> 24
    assert len(buf) == 24
    buf += struct.pack("<i", 24 - 8)      # 24: soffset to the vtable (table - vtable)
    buf += struct.pack("<i", compression)  # 28
    buf += struct.pack("<q", data_position)  # 32
    buf += struct.pack("<I", 44 - 40)     # 40: uoffset to the string at 44
    buf += struct.pack("<I", len(desc)) + desc + b"\x00"  # 44: string
    _pad_to(buf, 8)
    return bytes(buf)


def _event_packet_flatbuffer(events: np.ndarray) -> bytes:
    """Size-prefixed FlatBuffer ``EventPacket {elements: [Event]}`` with identifier ``EVTS``.

    Offsets and alignment are relative to the start of the size prefix (as the FlatBuffers builder
    lays out size-prefixed buffers): the 16-byte structs start 8-byte aligned.
    """
    buf = bytearray()
    buf += b"\x00\x00\x00\x00"            # 0: size prefix, patched below
    buf += struct.pack("<I", 20 - 4)      # 4: root uoffset -> table at 20
    buf += b"EVTS"                        # 8: file identifier
    buf += struct.pack("<HHH", 6, 8, 4)   # 12: vtable: size 6, table size 8, elements at +4
    _pad_to(buf, 4)                       # -> 20
    assert len(buf) == 20
    buf += struct.pack("<i", 20 - 12)     # 20: soffset to the vtable
    buf += struct.pack("<I", 28 - 24)     # 24: uoffset to the vector at 28
    buf += struct.pack("<I", len(events))  # 28: vector length; elements start at 32 (8-aligned)
    buf += events.tobytes()
    struct.pack_into("<I", buf, 0, len(buf) - 4)
    return bytes(buf)


def _description_xml(width: int, height: int, stream_id: int = 0) -> str:
    p = "/mainloop/output_file/outInfo/"
    return (
        '<dv version="2.0">'
        f'<node name="outInfo" path="{p}">'
        f'<node name="{stream_id}" path="{p}{stream_id}/">'
        '<attr key="compression" type="string">NONE</attr>'
        '<attr key="originalModuleName" type="string">capture</attr>'
        '<attr key="originalOutputName" type="string">events</attr>'
        '<attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>'
        '<attr key="typeIdentifier" type="string">EVTS</attr>'
        f'<node name="info" path="{p}{stream_id}/info/">'
        f'<attr key="sizeX" type="int">{width}</attr>'
        f'<attr key="sizeY" type="int">{height}</attr>'
        '<attr key="source" type="string">DAVIS346_fake</attr>'
        "</node></node></node></dv>"
    )


def write_aedat4(
    path,
    t,
    x,
    y,
    p,
    width: int = 128,
    height: int = 128,
    packet_size: int = 1000,
    stream_id: int = 0,
) -> Path:
    """Write events (timestamps in µs, pixel coordinates, polarity 0/1) to an uncompressed AEDAT4 file.

    Events are split into packets of at most ``packet_size`` events. Returns ``path``.
    """
    path = Path(path)
    n = len(t)
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["t"] = np.asarray(t, dtype=np.int64)
    ev["x"] = np.asarray(x, dtype=np.int16)
    ev["y"] = np.asarray(y, dtype=np.int16)
    ev["on"] = np.asarray(p).astype(bool).astype(np.uint8)
    header = _ioheader_flatbuffer(_description_xml(width, height, stream_id))
    with open(path, "wb") as f:
        f.write(AEDAT4_MAGIC)
        f.write(struct.pack("<I", len(header)))
        f.write(header)
        for start in range(0, max(n, 1), packet_size):
            chunk = ev[start : start + packet_size]
            if len(chunk) == 0:
                break
            packet = _event_packet_flatbuffer(chunk)
            f.write(struct.pack("<iI", stream_id, len(packet)))
            f.write(packet)
    return path


def make_events(n_events: int = 400, seed: int = 0, width: int = 128, height: int = 128) -> dict:
    """Random sorted events as a dict of numpy arrays ``t`` (µs, uint64), ``x``, ``y``, ``p``."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 1_000_000, size=n_events)).astype(np.uint64)
    t[0] = 0
    return {
        "t": t,
        "x": rng.integers(0, width, size=n_events).astype(np.uint16),
        "y": rng.integers(0, height, size=n_events).astype(np.uint16),
        "p": rng.integers(0, 2, size=n_events).astype(bool),
    }


def write_fake_cifar10_dvs(
    root,
    n_per_class: int = 100,
    n_unique_per_class: int = 3,
    n_events: int = 400,
    seed: int = 0,
) -> Path:
    """Write ``<root>/CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat4`` for the 10 classes and an
    empty ``CIFAR10DVS.zip`` marker (tonic only checks that the zip exists).

    Only ``n_unique_per_class`` files per class are written; the remaining samples are hard links
    to them (copies where links are impossible), which keeps writing 1000 files to ~0.1 s.
    tonic skips downloading only when at least 1000 ``*.aedat4`` files exist, so keep
    ``n_per_class >= 100`` when the data goes through ``tonic.datasets.CIFAR10DVS``.
    Each class's events are biased towards one image region so classes differ. Returns ``root``.
    """
    import shutil

    root = Path(root)
    base = root / "CIFAR10DVS"
    base.mkdir(parents=True, exist_ok=True)
    (base / "CIFAR10DVS.zip").touch()
    n_unique = max(1, min(n_unique_per_class, n_per_class))
    for c, name in enumerate(CIFAR10_DVS_CLASSES):
        d = base / name
        d.mkdir(exist_ok=True)
        uniques = []
        for i in range(n_unique):
            ev = make_events(n_events, seed=seed * 100_003 + c * 1009 + i)
            # bias: a class-specific 32x32 patch gets extra events
            k = n_events // 2
            ev["x"][:k] = (ev["x"][:k] % 32) + (c % 4) * 32
            ev["y"][:k] = (ev["y"][:k] % 32) + (c // 4) * 32
            f = write_aedat4(d / f"cifar10_{name}_{i}.aedat4", ev["t"], ev["x"], ev["y"], ev["p"])
            uniques.append(f)
        for i in range(n_unique, n_per_class):
            dst = d / f"cifar10_{name}_{i}.aedat4"
            if dst.exists():
                dst.unlink()
            src = uniques[i % n_unique]
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
    return root


def read_aedat4_events(path) -> np.ndarray:
    """Read a file back through tonic's reader (the one ``tonic.datasets.CIFAR10DVS`` uses)."""
    from tonic.io import read_aedat4

    ev = read_aedat4(str(path))
    ev.dtype.names = ["t", "x", "y", "p"]
    return ev


# --------------------------------------------------------------------------------------------
# N-MNIST / N-Caltech101 40-bit event files, DVS128 Gesture (tonic's preprocessed .npy layout)
# --------------------------------------------------------------------------------------------
NCALTECH101_BACKGROUND = "BACKGROUND_Google"


def encode_bin_events(x, y, t, p) -> bytes:
    """The 40-bit event encoding of N-MNIST and N-Caltech101 (Orchard et al.): 5 bytes per event,
    ``x`` (8 bit), ``y`` (8 bit), then polarity in bit 7 of byte 3 and the timestamp (µs, 23 bit)
    in the remaining 7 + 8 + 8 bits, most significant first. ``y == 240`` is reserved (tonic reads
    it as a timestamp-overflow marker), so ``y < 240``."""
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (x, y, t, p))
    if len(x) and (x.min() < 0 or x.max() > 255 or y.min() < 0 or y.max() >= 240):
        raise ValueError("x must be in [0, 255] and y in [0, 239]")
    if len(t) and (t.min() < 0 or t.max() >= 2**23):
        raise ValueError("t must be in [0, 2**23) µs")
    raw = np.zeros((len(x), 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = ((p.astype(bool).astype(np.int64) << 7) | (t >> 16)) & 0xFF
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    return raw.tobytes()


def write_bin_events(path, x, y, t, p) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_bin_events(x, y, t, p))
    return path


def make_xytp(n_events: int, width: int, height: int, seed: int = 0, x0: int = 0, y0: int = 0,
              duration_us: int = 300_000) -> dict:
    """Random time-sorted events on ``[x0, x0 + width) x [y0, y0 + height)``: int64 arrays ``x, y,
    t`` (µs, starting at 0) and ``p`` (0/1). The corners ``(x0, y0)`` and the far corner are hit
    so the extent is exactly ``width x height``."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, duration_us, size=n_events)).astype(np.int64)
    t[0] = 0
    x = rng.integers(0, width, size=n_events).astype(np.int64) + x0
    y = rng.integers(0, height, size=n_events).astype(np.int64) + y0
    x[0], y[0] = x0, y0
    x[-1], y[-1] = x0 + width - 1, y0 + height - 1
    return {"x": x, "y": y, "t": t, "p": rng.integers(0, 2, size=n_events).astype(np.int64)}


def write_fake_nmnist(root, n_train_per_class: int = 2, n_test_per_class: int = 1, n_events: int = 300,
                      seed: int = 0) -> Path:
    """Write ``<root>/NMNIST/{Train,Test}/<digit>/<NNNNN>.bin`` (tonic ``NMNIST``'s layout) with
    events on the 34x34 sensor. Returns ``root``."""
    root = Path(root)
    k = 0
    for split, n in (("Train", n_train_per_class), ("Test", n_test_per_class)):
        for digit in range(10):
            for i in range(n):
                k += 1
                ev = make_xytp(n_events, 34, 34, seed=seed * 7919 + k)
                write_bin_events(root / "NMNIST" / split / str(digit) / f"{k:05d}.bin", ev["x"], ev["y"], ev["t"], ev["p"])
    return root


def ncaltech101_class_names(n_object_classes: int = 100) -> list[str]:
    """Stand-in class folder names (the real ones are Caltech101's categories minus ``Faces``)."""
    return [NCALTECH101_BACKGROUND] + [f"category_{c:03d}" for c in range(n_object_classes)]


def write_fake_ncaltech101(root, n_per_class: int = 2, n_events: int = 200, seed: int = 0,
                           n_object_classes: int = 100) -> Path:
    """Write ``<root>/NCALTECH101/Caltech101/<class>/image_NNNN.bin`` (tonic ``NCALTECH101``'s
    layout) for ``BACKGROUND_Google`` and ``n_object_classes`` stand-in classes. Each recording has
    its own extent (width 30..60, height 20..45) at a non-zero offset, like the real ones. Returns
    ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for c, name in enumerate(ncaltech101_class_names(n_object_classes)):
        for i in range(n_per_class):
            w, h = int(rng.integers(30, 61)), int(rng.integers(20, 46))
            ev = make_xytp(n_events, w, h, seed=seed * 104_729 + c * 31 + i, x0=int(rng.integers(1, 20)),
                           y0=int(rng.integers(1, 20)))
            path = root / "NCALTECH101" / "Caltech101" / name / f"image_{i + 1:04d}.bin"
            write_bin_events(path, ev["x"], ev["y"], ev["t"], ev["p"])
    return root


def write_gesture_npy(path, x, y, p, t_ms, dtype=np.float64) -> Path:
    """One DVS128 Gesture sample as tonic's preprocessed archives store it: an ``[N, 4]`` array of
    ``x, y, p, t`` with ``t`` in milliseconds (tonic multiplies by 1000)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.stack([np.asarray(a) for a in (x, y, p, t_ms)], axis=1).astype(dtype))
    return path


def write_fake_dvs_gesture(root, n_train_users: int = 2, n_test_users: int = 1, n_events: int = 400,
                           classes=range(11), seed: int = 0, dtype=np.float64) -> Path:
    """Write ``<root>/DVSGesture/{ibmGestureTrain,ibmGestureTest}/user<NN>_<lighting>/<class>.npy``
    (tonic ``DVSGesture``'s layout: train users from 1, test users from 24). Returns ``root``."""
    root = Path(root)
    lightings = ["fluorescent", "led", "natural", "lab", "fluorescent_led"]
    for split, users, first in (("ibmGestureTrain", n_train_users, 1), ("ibmGestureTest", n_test_users, 24)):
        for u in range(users):
            folder = root / "DVSGesture" / split / f"user{first + u:02d}_{lightings[u % len(lightings)]}"
            for c in classes:
                ev = make_xytp(n_events, 128, 128, seed=seed * 65_537 + (first + u) * 101 + c, duration_us=6_000_000)
                write_gesture_npy(folder / f"{c}.npy", ev["x"], ev["y"], ev["p"], ev["t"] // 1000, dtype=dtype)
    return root
