"""Cutouts: pytti's sizes and border modes, area averaging, augmentations folded into the grid, masks that line up."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vj.engine.guidance import cutouts as cutouts_module
from vj.engine.guidance.cutouts import BORDER_MODES, Cutouts, check_accumulation, cut_like, make_cutouts


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def ramps(height, width):
    """A 3-channel image: x position (0 at the first pixel centre, 1 at the last), y position, and a constant 0.5."""
    x = (torch.arange(width) / (width - 1)).expand(height, width)
    y = (torch.arange(height)[:, None] / (height - 1)).expand(height, width)
    return torch.stack([x, y, torch.full((height, width), 0.5)])[None]


def pixel_units(grid, height, width):
    """Grid coordinates in pixel-centre units (first pixel centre 0, last one extent - 1), as numpy arrays."""
    x = ((grid[..., 0] + 1) * width / 2 - 0.5).double().numpy()
    y = ((grid[..., 1] + 1) * height / 2 - 0.5).double().numpy()
    return x, y


def reads(position, extent, mode):
    """The hand rule: which source position (pixel-centre units) a sample at `position` shows."""
    last = extent - 1
    if mode == "mirror":
        folded = np.mod(position, 2 * last)
        return np.minimum(folded, 2 * last - folded)
    if mode == "wrap":
        return np.clip(np.mod(position + 0.5, extent) - 0.5, 0, last)
    return np.clip(position, 0, last)  # smear, and black inside the image


def test_the_hand_rule():
    """Pixel -1 of an 8-pixel row shows pixel 1 mirrored, 7 wrapped, 0 smeared; pixel 8 shows 6, 0 and 7."""
    assert reads(np.array([-1.0, 8.0]), 8, "mirror").tolist() == [1, 6]
    assert reads(np.array([-1.0, 8.0]), 8, "wrap").tolist() == [7, 0]
    assert reads(np.array([-3.0, 10.0]), 8, "smear").tolist() == [0, 7]


def test_shapes_range_and_gradient():
    image = torch.rand(1, 3, 40, 56, generator=seeded(1)).requires_grad_()
    cuts = make_cutouts(image, 6, 16, generator=seeded(0))
    assert isinstance(cuts, Cutouts)
    assert cuts.images.shape == (6, 3, 16, 16) and cuts.grid.shape == (6, 16, 16, 2)
    assert cuts.images.min() >= 0 and cuts.images.max() <= 1
    assert cut_like(image[:, :1], cuts.grid).shape == (6, 1, 16, 16)
    cuts.images.sum().backward()
    assert image.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["smear", "mirror", "wrap", "black"])
def test_border_modes_fill_what_sticks_out(mode):
    height, width, size = 24, 32, 16  # images at most 2 * size: one bilinear sample per crop pixel, exact on a ramp
    image = ramps(height, width)
    options = dict(count=12, size=size, cut_pow=1.0, border=0.5, generator=seeded(3), augment=False)
    cuts = make_cutouts(image, border_mode=mode, **options)
    options["generator"] = seeded(3)  # the same crops, unfolded: black leaves the grid as drawn
    x, y = pixel_units(make_cutouts(image, border_mode="black", **options).grid, height, width)
    outside = (x < -0.5) | (x > width - 0.5) | (y < -0.5) | (y > height - 0.5)
    assert outside.mean() > 0.1
    expect_x = reads(x, width, mode) / (width - 1)
    expect_y = reads(y, height, mode) / (height - 1)
    expect_c = np.full(x.shape, 0.5)
    if mode == "black":
        expect_x, expect_y, expect_c = (np.where(outside, 0.0, e) for e in (expect_x, expect_y, expect_c))
    got = cuts.images.double().numpy()
    np.testing.assert_allclose(got[:, 0], expect_x, atol=1e-4)
    np.testing.assert_allclose(got[:, 1], expect_y, atol=1e-4)
    np.testing.assert_allclose(got[:, 2], expect_c, atol=1e-6)


def test_clamp_keeps_crops_inside_and_piles_them_at_the_edges():
    """pytti's clamp: positions drawn over the widened range are clamped, so no crop sticks out, many touch an edge."""
    height, width, size = 24, 32, 16
    cuts = make_cutouts(
        ramps(height, width), 40, size, cut_pow=1.0, border=0.5, border_mode="clamp", generator=seeded(3), augment=False
    )
    x, _ = pixel_units(cuts.grid, height, width)
    half_step = (x[:, 0, 1] - x[:, 0, 0]) / 2
    left, right = x[:, 0, 0] - half_step + 0.5, x[:, 0, -1] + half_step + 0.5  # crop edges, pixel-edge units
    assert left.min() >= -1e-4 and right.max() <= width + 1e-4
    assert (np.abs(left) < 1e-4).sum() + (np.abs(right - width) < 1e-4).sum() >= 10
    ramp_steps = np.diff(cuts.images[:, 0].double().numpy(), axis=-1)
    assert np.abs(ramp_steps - ramp_steps.mean(axis=(1, 2), keepdims=True)).max() < 1e-5  # nothing flattened


def test_large_crops_are_area_averaged():
    image = torch.rand(1, 3, 64, 64, generator=seeded(4))
    cuts = make_cutouts(image, 3, 8, cut_pow=0.0, generator=seeded(0), augment=False)  # cut_pow 0: whole image
    area = F.avg_pool2d(image, 8).expand(3, -1, -1, -1)
    torch.testing.assert_close(cuts.images, area, atol=1e-5, rtol=0)
    point_samples = F.grid_sample(image.expand(3, -1, -1, -1), cuts.grid, align_corners=False)
    assert (point_samples - area).abs().max() > 0.1  # what sampling without averaging would give


@pytest.mark.parametrize("mode", BORDER_MODES)
def test_cut_like_repeats_the_plain_crops(mode):
    image = torch.rand(1, 3, 48, 40, generator=seeded(5))
    cuts = make_cutouts(image, 8, 12, border_mode=mode, generator=seeded(6), augment=False)
    assert torch.equal(cut_like(image, cuts.grid), cuts.images)


@pytest.mark.parametrize("mode", BORDER_MODES)
def test_masks_line_up_with_augmented_crops(mode, monkeypatch):
    """A mask equal to one channel, cut with the grid, equals that channel of the crops before colour augmentation."""
    image = torch.rand(1, 3, 48, 40, generator=seeded(7))
    monkeypatch.setattr(cutouts_module, "_recolour", lambda images, rand, randn: images)
    cuts = make_cutouts(image, 32, 12, border_mode=mode, generator=seeded(8))
    torch.testing.assert_close(cut_like(image[:, 1:2], cuts.grid), cuts.images[:, 1:2], atol=1e-6, rtol=0)
    plain = make_cutouts(image, 32, 12, border_mode=mode, generator=seeded(8), augment=False)
    assert (cuts.grid - plain.grid).abs().amax(dim=(1, 2, 3)).gt(1e-3).float().mean() > 0.5


def test_augmentations():
    image = torch.rand(1, 3, 64, 64, generator=seeded(9)) * 0.5 + 0.25
    cuts = make_cutouts(image, 64, 16, border_mode="black", generator=seeded(10))
    row = cuts.grid[:, 8]  # each crop's middle row, source coordinates
    step = row[:, 9] - row[:, 8]
    assert (step[:, 0] < 0).any() and (step[:, 0] > 0).any()  # some crops are flipped
    assert (step[:, 1].abs() > 1e-3).any()  # some are rotated
    bend = (row[:, 2:] - 2 * row[:, 1:-1] + row[:, :-2]).abs().amax(dim=(1, 2))
    assert (bend > 1e-5).any() and (bend < 1e-6).any()  # some, not all, are in perspective
    assert cuts.images.min() >= 0 and cuts.images.max() <= 1
    recoloured = (cuts.images - cut_like(image, cuts.grid)).abs()
    assert recoloured.amax(dim=(1, 2, 3)).min() > 0  # noise on every crop
    inside = (cuts.grid.abs() <= 1).all(-1)
    dark = (cuts.images.mean(dim=1) < 0.125) & inside  # the image itself is >= 0.25 inside
    erased = dark.float().mean(dim=(1, 2))
    assert (erased > 0.05).float().mean() > 0.3  # black rectangles on many crops


def test_sizes_follow_pytti():
    """side = min(H, W) * clip(N(0.8, 0.3), size / min(H, W), 1) ** cut_pow."""
    height, width, size = 64, 96, 16
    image = torch.rand(1, 3, height, width, generator=seeded(11))

    def sides(cut_pow, count=2000):
        grid = make_cutouts(image, count, size, cut_pow=cut_pow, generator=seeded(12), augment=False).grid
        x, _ = pixel_units(grid, height, width)
        return (x[:, 0, -1] - x[:, 0, 0]) * size / (size - 1)

    linear = sides(1.0) / height
    assert np.median(linear) == pytest.approx(0.8, abs=0.02)
    assert np.mean(linear > 1 - 1e-5) == pytest.approx(0.2525, abs=0.03)  # P(N(0.8, 0.3) > 1)
    assert linear.min() >= size / height - 1e-5
    means = [sides(p).mean() for p in (0.5, 1.0, 2.0, 4.0)]
    assert means == sorted(means, reverse=True) and means[-1] < 0.6 * means[0]


def test_seeded_generators_reproduce():
    image = torch.rand(1, 3, 40, 40, generator=seeded(13))
    a, b = (make_cutouts(image, 8, 16, border_mode="mirror", generator=seeded(14)) for _ in range(2))
    c = make_cutouts(image, 8, 16, border_mode="mirror", generator=seeded(15))
    assert torch.equal(a.images, b.images) and torch.equal(a.grid, b.grid)
    assert not torch.equal(a.grid, c.grid)


def test_unknown_border_mode():
    with pytest.raises(ValueError, match="border_mode"):
        make_cutouts(torch.rand(1, 3, 16, 16), 2, 8, border_mode="reflect")


def test_check_accumulation():
    for steps in (1, 2, 4, 8):
        check_accumulation(8, steps)
    for steps in (0, -2, 3, 16):
        with pytest.raises(ValueError, match="gradient_accumulation_steps") as info:
            check_accumulation(8, steps)
        assert "\n" not in str(info.value)
