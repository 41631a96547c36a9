"""data/transforms.py: the pure functions against hand-made expectations, the dataclasses' draws."""

from __future__ import annotations

import pickle

import pytest
import torch

from snn_lightning.data.transforms import Compose, HFlipFrames, RandomShiftCrop, frame_augmentation, hflip, shift_crop


def clip() -> torch.Tensor:
    return torch.arange(3 * 2 * 4 * 5, dtype=torch.float32).reshape(3, 2, 4, 5) + 1


def test_shift_crop_moves_content_by_the_offset():
    x = clip()
    assert torch.equal(shift_crop(x, 1, 1, pad=1), x)  # the centre offset is the identity
    down_right = shift_crop(x, 0, 0, pad=1)  # content moves down and right by one pixel
    assert torch.equal(down_right[..., 1:, 1:], x[..., :-1, :-1])
    assert (down_right[..., 0, :] == 0).all() and (down_right[..., :, 0] == 0).all()
    up_left = shift_crop(x, 2, 2, pad=1, fill=-1.0)
    assert torch.equal(up_left[..., :-1, :-1], x[..., 1:, 1:]) and (up_left[..., -1, :] == -1).all()
    with pytest.raises(ValueError, match=r"\(3, 0\).*\[0, 2\]"):
        shift_crop(x, 3, 0, pad=1)


def test_hflip_mirrors_width_only():
    x = clip()
    assert torch.equal(hflip(x)[..., 0], x[..., -1]) and torch.equal(hflip(hflip(x)), x)


def test_random_shift_crop_is_one_offset_for_every_frame_and_covers_all_offsets():
    x = clip()
    aug = RandomShiftCrop(1)
    g = torch.Generator().manual_seed(0)
    candidates = {(a, b): shift_crop(x, a, b, 1) for a in range(3) for b in range(3)}
    seen = set()
    for _ in range(60):
        out = aug(x, generator=g)
        hits = [k for k, c in candidates.items() if torch.equal(out, c)]  # whole clip, all T and P
        assert hits, "the T frames were not shifted together"
        seen.update(hits)
    assert len(seen) == 9
    assert RandomShiftCrop(0)(x) is x


def test_hflip_frames_probability_and_extremes():
    x = clip()
    g = torch.Generator().manual_seed(1)
    flips = sum(torch.equal(HFlipFrames(0.5)(x, generator=g), hflip(x)) for _ in range(200))
    assert 70 < flips < 130
    assert all(torch.equal(HFlipFrames(1.0)(x), hflip(x)) for _ in range(5))
    assert all(HFlipFrames(0.0)(x) is x for _ in range(5))


@pytest.mark.parametrize("bad", [lambda: RandomShiftCrop(-1), lambda: RandomShiftCrop(1.5), lambda: HFlipFrames(1.5)])
def test_bad_parameters_name_the_value(bad):
    with pytest.raises(ValueError, match=r"-1|1\.5"):
        bad()


def test_frame_augmentation_composition_is_plain_picklable_data():
    aug = frame_augmentation(4, 0.5)
    assert aug == Compose((RandomShiftCrop(4), HFlipFrames(0.5)))
    assert frame_augmentation(0, 0.0) == Compose() and len(frame_augmentation(4, 0.0)) == 1
    assert pickle.loads(pickle.dumps(aug)) == aug
    out = aug(clip().expand(2, -1, -1, -1, -1)[0])
    assert out.is_contiguous() and out.shape == (3, 2, 4, 5)
    with pytest.raises(Exception):
        aug.transforms = ()  # frozen
