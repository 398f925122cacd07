"""Float masks written by the comparison kernel (urrlkit/augment/masks.py) equal the bool spelling."""

from __future__ import annotations

import pytest
import torch

from urrlkit.augment import geometry
from urrlkit.augment.masks import indicator, mask_dtype, within


@pytest.mark.parametrize("compare", [torch.ge, torch.gt, torch.le, torch.lt, torch.eq])
def test_indicator_equals_the_cast_bool_comparison(compare) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 8, (5, 3, 4, 4), generator=g).float()  # many ties, so == and ≥ differ
    t = torch.randint(0, 8, (5, 1, 1, 1), generator=g).float()
    for b in (t, 3.0, x.flip(0)):
        got = indicator(compare, x, b)
        assert got.dtype == torch.float32 and got.shape == x.shape
        assert torch.equal(got, compare(x, b).float())
    # Broadcasting both ways, and an explicit dtype.
    row = torch.arange(4.0).view(1, 4)
    assert torch.equal(indicator(compare, row.t(), row, torch.float64), compare(row.t(), row).double())


def test_within_is_half_open_for_floats_and_integers() -> None:
    v = torch.tensor([-1.0, -0.0, 0.0, 2.5, 3.999, 4.0, 7.0])
    assert within(v, 0, 4).tolist() == [0, 1, 1, 1, 1, 0, 0]
    i = torch.tensor([-3, 0, 3, 4])
    assert within(i, 0, 4, torch.float32).tolist() == [0.0, 1.0, 1.0, 0.0]
    assert within(i, 0, 4, torch.bool).tolist() == [False, True, True, False]
    assert mask_dtype(torch.zeros(1, dtype=torch.float16)) == torch.float16
    assert mask_dtype(torch.zeros(1, dtype=torch.uint8)) == torch.bool


def test_shift_crop_masks_integer_and_float_images_alike() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(1, 256, (4, 3, 8, 8), generator=g).to(torch.uint8)  # no zeros: the fill is visible
    top, left = torch.tensor([-2, 0, 1, 3]), torch.tensor([0, -3, 2, 1])
    flip = torch.tensor([True, False, True, False])
    a = geometry.shift_crop(x, top, left, 8, flip)
    b = geometry.shift_crop(x.float(), top, left, 8, flip)
    assert a.dtype == torch.uint8 and torch.equal(a.float(), b)
    assert (a[0, :, :2] == 0).all() and (a[0, :, 2:] > 0).all()  # two rows above the image are zero
    assert (a[1, :, :, :3] == 0).all() and (a[1, :, :, 3:] > 0).all()
