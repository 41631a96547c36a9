"""DVS128 Gesture (Amir et al. 2017) in tonic's preprocessed form: one ``.npy`` per gesture."""

from __future__ import annotations

import glob
import os

import numpy as np

from ..errors import InvalidValue
from .common import EventFileError
from .events import EventDataModule, check_probability

# tonic.datasets.DVSGesture.train_url / test_url: the preprocessed archives tonic reads
GESTURE_TRAIN_URL = "https://figshare.com/ndownloader/files/38022171"
GESTURE_TEST_URL = "https://figshare.com/ndownloader/files/38020584"
SENSOR_SIZE = (128, 128)
NUM_GESTURES = 11  # tonic.datasets.DVSGesture.classes; 1 and 2 (right/left hand wave), 3-6 are handed


def read_dvs_gesture(path: str) -> np.ndarray:
    """What ``tonic.datasets.DVSGesture.__getitem__`` does: ``np.load`` an ``[N, 4]`` array of
    ``x, y, p, t`` (t in ms), convert t to µs and view it with tonic's ``DVSGesture.dtype``."""
    import numpy.lib.recfunctions as rfn
    import tonic

    events = np.load(path)
    events[:, 3] *= 1000  # ms -> µs
    return rfn.unstructured_to_structured(events, tonic.datasets.DVSGesture.dtype)


class DVSGestureDataModule(EventDataModule):
    """``dvs_gesture``: ``<root>/DVSGesture/{ibmGestureTrain,ibmGestureTest}/user<NN>_<lighting>/<class>.npy``
    (tonic ``DVSGesture(save_to=root)``'s layout of the preprocessed archives).

    The official split: users 1-23 train (1077 samples), users 24-29 test (264); validation uses
    the test split. 11 classes (tonic's order, the file name is the label). Each sample -> T frames
    on the 128x128 sensor -> resized to ``image_size`` (64; 48 and 32 also fit the backbones).
    Training augmentation: ``RandomShiftCrop(crop_padding)`` only -- a horizontal flip would turn
    the right-hand gestures into left-hand ones, so ``hflip`` must stay 0.
    """

    name = "dvs_gesture"
    folder = "dvs_gesture"
    title = "DVS128 Gesture"
    num_classes = NUM_GESTURES
    tonic_folder = "DVSGesture"
    subsets = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
    splits = ("official",)
    sensor_size = SENSOR_SIZE
    official_counts = {"train": 1077, "test": 264}
    how_to_get = (
        f"download ibmGestureTrain.tar.gz ({GESTURE_TRAIN_URL}) and ibmGestureTest.tar.gz ({GESTURE_TEST_URL}) "
        "and extract them there (ibmGestureTrain/user01_fluorescent/0.npy ...)"
    )
    repair_hint = "re-extract it from ibmGestureTrain.tar.gz / ibmGestureTest.tar.gz"
    reader = staticmethod(read_dvs_gesture)

    def __init__(
        self,
        T: int = 16,
        image_size: int = 64,
        split: str = "official",
        crop_padding: int = 4,
        hflip: float = 0.0,
        **kwargs,
    ):
        if check_probability("hflip", hflip) > 0:
            raise InvalidValue(
                f"hflip={hflip!r} is not allowed for dvs_gesture: a horizontal flip swaps its left- and "
                "right-hand gesture classes; allowed: 0"
            )
        super().__init__(T=T, image_size=image_size, split=split, crop_padding=crop_padding, hflip=hflip, **kwargs)

    def scan(self, folder: str) -> tuple[list[str], list[int]]:
        pairs = []
        for path in glob.glob(os.path.join(glob.escape(folder), "*", "*.npy")):
            stem = os.path.splitext(os.path.basename(path))[0]
            if not stem.isdigit() or int(stem) >= NUM_GESTURES:
                raise EventFileError(
                    f"{path} is not a DVS128 Gesture sample: tonic's layout names each file by its class, "
                    f"0.npy ... {NUM_GESTURES - 1}.npy"
                )
            pairs.append((path, int(stem)))
        return self.sort_samples(pairs, folder)

    def download_with_tonic(self) -> None:
        import tonic

        for train in (True, False):  # each downloads and extracts its archive when missing
            tonic.datasets.DVSGesture(save_to=self.root, train=train)
